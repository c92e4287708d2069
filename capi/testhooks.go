package main

/*
#include <stdio.h>
#include <stdlib.h>
#include "bioxen.h"

static void bioxen__test_done(void *ud, int status, bioxen_result *r, const char *msg) {
  (void)ud; (void)status; (void)msg;
  bioxen_result_free(r);
}
static bioxen_exec_done_fn bioxen__test_done_fn(void) { return bioxen__test_done; }

static int bioxen__test_rec_status = -1;
static char bioxen__test_rec_msg[256];
static void bioxen__test_record(void *ud, int status, bioxen_result *r, const char *msg) {
  (void)ud;
  bioxen__test_rec_status = status;
  snprintf(bioxen__test_rec_msg, sizeof bioxen__test_rec_msg, "%s", msg ? msg : "(null)");
  bioxen_result_free(r);
}
static bioxen_exec_done_fn bioxen__test_record_fn(void) { return bioxen__test_record; }
static int bioxen__test_rec_get_status(void) { return bioxen__test_rec_status; }
static const char *bioxen__test_rec_get_msg(void) { return bioxen__test_rec_msg; }
*/
import "C"

import (
	"time"
	"unsafe"

	"libbioxen/core"
)

// Go-typed entry points for capi_test.go (cgo cannot be used in _test.go
// files). They call the exported functions exactly as C does.

type testResult struct {
	stdout, stderr, values, message string
	rc, success, truncated          int
}

func testOpen(engine, interp string, persistent bool) (uint64, int) {
	var o C.bioxen_vm_options
	o.size = C.size_t(unsafe.Sizeof(o))
	if engine != "" {
		o.engine = C.CString(engine)
		defer C.free(unsafe.Pointer(o.engine))
	}
	if interp != "" {
		o.interpreter = C.CString(interp)
		defer C.free(unsafe.Pointer(o.interpreter))
	}
	if persistent {
		o.persistent = 1
	}
	var h C.bioxen_vm
	st := bioxenGoVMOpen(&o, &h)
	return uint64(h), int(st)
}

func testExec(h uint64, code string, timeoutMS int64, flags int) (*testResult, int) {
	cs := C.CString(code)
	defer C.free(unsafe.Pointer(cs))
	var r *C.bioxen_result
	st := bioxenGoVMExec(C.bioxen_vm(h), cs, C.size_t(len(code)), C.int64_t(timeoutMS), C.int(flags), &r)
	if r == nil {
		return nil, int(st)
	}
	defer C.bioxen_result_free(r)
	return &testResult{
		stdout:    C.GoStringN(r.stdout_data, C.int(r.stdout_len)),
		stderr:    C.GoStringN(r.stderr_data, C.int(r.stderr_len)),
		values:    C.GoStringN(r.values_json, C.int(r.values_len)),
		message:   C.GoStringN(r.error_message, C.int(r.error_len)),
		rc:        int(r.return_code),
		success:   int(r.success),
		truncated: int(r.truncated),
	}, int(st)
}

func testClose(h uint64) int { return int(bioxenGoVMClose(C.bioxen_vm(h))) }

func testErrmsg() string { return C.GoString(C.bioxen_errmsg()) }

func testLive() int { return int(bioxenGoLiveHandles()) }

func testSessionOpen(vm uint64) (uint64, int) {
	var h C.bioxen_session
	st := bioxenGoSessionOpen(C.bioxen_vm(vm), &h)
	return uint64(h), int(st)
}

func testSessionSend(h uint64, input string) int {
	cs := C.CString(input)
	defer C.free(unsafe.Pointer(cs))
	return int(bioxenGoSessionSend(C.bioxen_session(h), cs, C.size_t(len(input))))
}

func testSessionRead(h uint64, streams int, timeoutMS int64) (string, int) {
	var p *C.char
	var n C.size_t
	st := bioxenGoSessionRead(C.bioxen_session(h), C.int(streams), C.int64_t(timeoutMS), &p, &n)
	if p == nil {
		return "", int(st)
	}
	defer C.free(unsafe.Pointer(p))
	return C.GoStringN(p, C.int(n)), int(st)
}

func testSessionWait(h uint64) int {
	var idle C.int
	bioxenGoSessionWait(C.bioxen_session(h), 20000, &idle)
	return int(idle)
}

func testSessionClose(h uint64) int { return int(bioxenGoSessionClose(C.bioxen_session(h))) }

func testOpenConfig(engine, config string) (uint64, int) {
	var o C.bioxen_vm_options
	o.size = C.size_t(unsafe.Sizeof(o))
	o.engine = C.CString(engine)
	defer C.free(unsafe.Pointer(o.engine))
	o.config_json = C.CString(config)
	defer C.free(unsafe.Pointer(o.config_json))
	o.persistent = 1
	var h C.bioxen_vm
	st := bioxenGoVMOpen(&o, &h)
	return uint64(h), int(st)
}

// The length-checking hooks pass the bytes of code with a length n that
// may claim far more than there is: the library must refuse n before
// reading past the bytes.

func testExecN(h uint64, code string, n uint64) int {
	cs := C.CString(code)
	defer C.free(unsafe.Pointer(cs))
	var r *C.bioxen_result
	st := bioxenGoVMExec(C.bioxen_vm(h), cs, C.size_t(n), 0, 0, &r)
	C.bioxen_result_free(r)
	return int(st)
}

func testExecAsyncN(h uint64, code string, n uint64) int {
	cs := C.CString(code)
	defer C.free(unsafe.Pointer(cs))
	return int(bioxenGoVMExecAsync(C.bioxen_vm(h), cs, C.size_t(n), 0, 0, C.bioxen__test_done_fn(), 0, nil))
}

func testSessionExecuteN(h uint64, code string, n uint64) int {
	cs := C.CString(code)
	defer C.free(unsafe.Pointer(cs))
	var r *C.bioxen_result
	st := bioxenGoSessionExecute(C.bioxen_session(h), cs, C.size_t(n), 0, 0, &r)
	C.bioxen_result_free(r)
	return int(st)
}

func testSessionExecuteAsyncN(h uint64, code string, n uint64) int {
	cs := C.CString(code)
	defer C.free(unsafe.Pointer(cs))
	return int(bioxenGoSessionExecuteAsync(C.bioxen_session(h), cs, C.size_t(n), 0, 0, C.bioxen__test_done_fn(), 0, nil))
}

func testSessionSendN(h uint64, input string, n uint64) int {
	cs := C.CString(input)
	defer C.free(unsafe.Pointer(cs))
	return int(bioxenGoSessionSend(C.bioxen_session(h), cs, C.size_t(n)))
}

func testPackagesN(req string, n uint64) int {
	cs := C.CString(req)
	defer C.free(unsafe.Pointer(cs))
	var out *C.char
	var outLen C.size_t
	st := bioxenGoPackages(cs, C.size_t(n), &out, &outLen)
	C.free(unsafe.Pointer(out))
	return int(st)
}

func testExecFile(h uint64, path string, timeoutMS int64) int {
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	var r *C.bioxen_result
	st := bioxenGoVMExecFile(C.bioxen_vm(h), cs, C.int64_t(timeoutMS), &r)
	C.bioxen_result_free(r)
	return int(st)
}

func testSessionWaitMS(h uint64, timeoutMS int64) (idle, status int) {
	var i C.int
	st := bioxenGoSessionWait(C.bioxen_session(h), C.int64_t(timeoutMS), &i)
	return int(i), int(st)
}

func testMillis(ms int64) time.Duration { return millis(C.int64_t(ms)) }

func testExecTimeout(ms int64) time.Duration { return execOpts(C.int64_t(ms), 0).Timeout }

func testSetInterruptFd(fd int) int { return int(C.bioxen_set_interrupt_fd(C.int(fd))) }

func testWatchers() int {
	watchers.Lock()
	defer watchers.Unlock()
	return len(watchers.m)
}

// testOpenSized opens with options of size bytes (a newer header's layout
// when larger than this one's), the bytes past this layout set to extra.
func testOpenSized(size uintptr, extra byte) (uint64, int) {
	known := unsafe.Sizeof(C.bioxen_vm_options{})
	buf := C.calloc(1, C.size_t(max(size, known)))
	defer C.free(buf)
	o := (*C.bioxen_vm_options)(buf)
	o.size = C.size_t(size)
	if size > known {
		b := unsafe.Slice((*byte)(buf), size)
		for i := known; i < size; i++ {
			b[i] = extra
		}
	}
	var h C.bioxen_vm
	st := bioxenGoVMOpen(o, &h)
	return uint64(h), int(st)
}

// testSessionWaitIdle calls bioxen_session_wait with *idle_out set to 42.
func testSessionWaitIdle(h uint64) (idle, status int) {
	i := C.int(42)
	st := bioxenGoSessionWait(C.bioxen_session(h), 0, &i)
	return int(i), int(st)
}

// testOptionsSize is sizeof(bioxen_vm_options).
func testOptionsSize() uintptr { return unsafe.Sizeof(C.bioxen_vm_options{}) }

// testSessionExecuteNull calls bioxen_session_execute with code NULL and
// *result_out set to a non-NULL sentinel; it reports whether the call
// cleared it, and its status.
func testSessionExecuteNull(h uint64) (cleared bool, status int) {
	var sentinel C.bioxen_result
	r := &sentinel
	st := bioxenGoSessionExecute(C.bioxen_session(h), nil, 0, 0, 0, &r)
	return r == nil, int(st)
}

// testJSONNullRequest calls bioxen_packages, bioxen_remote and
// bioxen_vm_install_package (on vm) with a NULL request and the
// out-parameters set to sentinels; it reports, per call, whether both
// were cleared, and the statuses.
func testJSONNullRequest(vm uint64) (cleared [3]bool, status [3]int) {
	for i := range cleared {
		var sentinel C.char
		out, n := &sentinel, C.size_t(77)
		var st C.int
		switch i {
		case 0:
			st = bioxenGoPackages(nil, 0, &out, &n)
		case 1:
			st = bioxenGoRemote(nil, 0, &out, &n)
		case 2:
			st = bioxenGoVMInstallPackage(C.bioxen_vm(vm), nil, 0, &out, &n)
		}
		cleared[i], status[i] = out == nil && n == 0, int(st)
	}
	return cleared, status
}

// testDeliverPanic runs deliver with a function that panics and returns
// the status and message its done callback got.
func testDeliverPanic(value string) (int, string) {
	deliver(C.bioxen__test_record_fn(), 0, 0, func() (*core.Result, error) { panic(value) })
	return int(C.bioxen__test_rec_get_status()), C.GoString(C.bioxen__test_rec_get_msg())
}
