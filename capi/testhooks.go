package main

/*
#include <stdlib.h>
#include "bioxen.h"
*/
import "C"

import "unsafe"

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
