// Command capi is libbioxen's C ABI, built with -buildmode=c-shared into
// libbioxen.so. It only translates between C and the Go core: handles to
// VMs, C strings and buffers to Go slices, core errors to status codes and
// thread-local messages. include/bioxen.h is the contract.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include -O2
#include <stdlib.h>
#include <string.h>
#include "bioxen.h"
#include "shim.h"
*/
import "C"

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unsafe"

	"libbioxen/core"
	_ "libbioxen/embedded"
	_ "libbioxen/luaproc"
	_ "libbioxen/xcpng"
)

func main() {}

// Handles: one counter for VMs, sessions and calls that never reuses a value, so a
// stale handle is BIOXEN_E_BADHANDLE rather than someone else's object.
// (This is why github.com/mattn/go-pointer, named in the design card, is
// not used: it hands C a pointer-sized key to a Go value, which C could
// keep past its release and have mistaken for a later value; no Go pointer
// crosses the boundary here, and callbacks get the caller's own user data
// back untouched.)
var handles = struct {
	sync.RWMutex
	next     uint64
	vms      map[uint64]*core.VM
	sessions map[uint64]*sessionEntry
	calls    map[uint64]func() // running async calls (bioxen_call): what interrupts each
}{next: 1, vms: map[uint64]*core.VM{}, sessions: map[uint64]*sessionEntry{}, calls: map[uint64]func(){}}

type sessionEntry struct {
	s  *core.Session
	vm uint64 // the VM handle it belongs to; closing the VM closes it

	// Guarded by listenerMu: the gate of the host's listener (nil: none),
	// and whether the session was closed (no listener may be set then).
	listener *gate
	closed   bool
}

var listenerMu sync.Mutex

// close closes the session of handle h, whose entry has left the
// handle table: its listener is removed (calls under way end first), then
// the session. A close made from inside a listener call of the session
// (or, vm set, of a session of its VM) cannot wait for the session's chunk,
// which is the one calling: the session is then closed in the background,
// once that call returns.
func (e *sessionEntry) close(h uint64) {
	listenerMu.Lock()
	g := e.listener
	e.listener, e.closed = nil, true
	listenerMu.Unlock()
	g.retire()
	if inListenerOf(h, e.vm) {
		go e.s.Close()
		return
	}
	e.s.Close()
}

func newHandle() uint64 {
	h := handles.next
	handles.next++
	return h
}

func lookup(h C.bioxen_vm) (*core.VM, C.int) {
	handles.RLock()
	vm := handles.vms[uint64(h)]
	handles.RUnlock()
	if vm == nil {
		return nil, fail(core.Errorf(core.ErrBadHandle, "", "no VM with handle %d (closed or never opened)", uint64(h)))
	}
	return vm, C.BIOXEN_OK
}

func lookupSession(h C.bioxen_session) (*core.Session, C.int) {
	e, st := lookupSessionEntry(h, "")
	if e == nil {
		return nil, st
	}
	return e.s, C.BIOXEN_OK
}

// lookupSessionEntry is lookupSession's table entry; op names the call in
// the error.
func lookupSessionEntry(h C.bioxen_session, op string) (*sessionEntry, C.int) {
	handles.RLock()
	e := handles.sessions[uint64(h)]
	handles.RUnlock()
	if e == nil {
		return nil, fail(core.Errorf(core.ErrBadHandle, op, "no session with handle %d (closed or never opened)", uint64(h)))
	}
	return e, C.BIOXEN_OK
}

// fail records err as the calling thread's message and returns its code.
func fail(err error) C.int {
	msg := err.Error()
	if len(msg) == 0 {
		msg = "error"
	}
	// A C copy: C code then reads only C memory (memory checkers cannot
	// follow Go's heap).
	cs := C.CString(msg)
	C.bioxen__set_err(cs, C.size_t(len(msg)))
	C.free(unsafe.Pointer(cs))
	return C.int(core.CodeOf(err))
}

// guard turns a panic into BIOXEN_ERROR; every export defers it.
func guard(status *C.int) {
	if r := recover(); r != nil {
		*status = fail(core.Errorf(core.ErrGeneric, "", "internal error: %v\n%s", r, debug.Stack()))
	}
}

func goString(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// maxOptionsSize bounds the size a caller may give bioxen_vm_options.
const maxOptionsSize = 4096

// optionsLayouts are the sizes of the older bioxen_vm_options layouts this
// library reads: each ends after the last field a version added (rounded
// up to the struct's alignment, as sizeof is).
var optionsLayouts = func() []uintptr {
	var o C.bioxen_vm_options
	align := unsafe.Alignof(o)
	end := func(off, n uintptr) uintptr { return (off + n + align - 1) / align * align }
	return []uintptr{
		end(unsafe.Offsetof(o.max_output_bytes), unsafe.Sizeof(o.max_output_bytes)),
		end(unsafe.Offsetof(o.package_cpath), unsafe.Sizeof(o.package_cpath)),
		end(unsafe.Offsetof(o.allowed_paths), unsafe.Sizeof(o.allowed_paths)),
		end(unsafe.Offsetof(o.config_json), unsafe.Sizeof(o.config_json)),
		end(unsafe.Offsetof(o.module_roots), unsafe.Sizeof(o.module_roots)),
		end(unsafe.Offsetof(o.cpu_limit_ms), unsafe.Sizeof(o.cpu_limit_ms)),
	}
}()

func isOptionsLayout(size uintptr) bool {
	for _, n := range optionsLayouts {
		if n == size {
			return true
		}
	}
	return false
}

//export bioxenGoVMOpen
func bioxenGoVMOpen(o *C.bioxen_vm_options, out *C.bioxen_vm) (status C.int) {
	defer guard(&status)
	if out == nil {
		return fail(core.Errorf(core.ErrInvalid, "open", "vm_out is NULL"))
	}
	*out = 0
	var opts core.Options
	if o != nil {
		// size 0 (a caller that did not set it) is under the oldest
		// layout too: read as this version's layout, it made the library
		// read past the struct of a program built with an older header.
		size := uintptr(o.size)
		if size < unsafe.Offsetof(o.max_output_bytes)+unsafe.Sizeof(o.max_output_bytes) {
			return fail(core.Errorf(core.ErrInvalid, "open", "options size %d is smaller than the oldest layout", size))
		}
		if size < unsafe.Sizeof(*o) && !isOptionsLayout(size) {
			// A size that ends inside a field or between the fields of one
			// version would drop settings silently.
			return fail(core.Errorf(core.ErrInvalid, "open", "options size %d is not a bioxen_vm_options size", size))
		}
		if known := unsafe.Sizeof(*o); size > known {
			// A newer header's layout: accepted when the fields this
			// library does not know are all zero (their defaults), so that
			// no setting is silently dropped; a size like SIZE_MAX is not
			// read at all.
			if size > maxOptionsSize {
				return fail(core.Errorf(core.ErrInvalid, "open", "options size %d is not a bioxen_vm_options size", size))
			}
			for _, b := range unsafe.Slice((*byte)(unsafe.Pointer(o)), size)[known:] {
				if b != 0 {
					return fail(core.Errorf(core.ErrInvalid, "open", "options of size %d set fields this library (%d bytes) does not know", size, known))
				}
			}
		}
		has := func(off, n uintptr) bool { return off+n <= size }
		opts.Engine = goString(o.engine)
		opts.Interpreter = goString(o.interpreter)
		opts.Name = goString(o.name)
		opts.Persistent = o.persistent != 0
		opts.Limits.MaxSourceBytes = int(o.max_source_bytes)
		opts.Limits.MaxOutputBytes = int(o.max_output_bytes)
		if has(unsafe.Offsetof(o.package_cpath), unsafe.Sizeof(o.package_cpath)) {
			opts.PackagePath = goString(o.package_path)
			opts.PackageCPath = goString(o.package_cpath)
		}
		if has(unsafe.Offsetof(o.allowed_paths), unsafe.Sizeof(o.allowed_paths)) {
			opts.Trusted = o.trusted != 0
			if p := goString(o.allowed_paths); p != "" {
				opts.AllowedPaths = strings.Split(p, ":")
			}
		}
		if has(unsafe.Offsetof(o.config_json), unsafe.Sizeof(o.config_json)) && o.config_json != nil {
			opts.EngineConfig = []byte(C.GoString(o.config_json))
		}
		if has(unsafe.Offsetof(o.module_roots), unsafe.Sizeof(o.module_roots)) {
			if p := goString(o.module_roots); p != "" {
				opts.ModuleRoots = strings.Split(p, ":")
			}
		}
		if has(unsafe.Offsetof(o.cpu_limit_ms), unsafe.Sizeof(o.cpu_limit_ms)) {
			opts.Limits.MaxMemoryBytes = int64(o.max_memory_bytes)
			if o.cpu_limit_ms < 0 {
				return fail(core.Errorf(core.ErrInvalid, "open", "cpu_limit_ms is negative"))
			}
			opts.Limits.MaxCPUTime = time.Duration(o.cpu_limit_ms) * time.Millisecond
		}
	}
	vm, err := core.Open(opts)
	if err != nil {
		return fail(err)
	}
	handles.Lock()
	h := newHandle()
	handles.vms[h] = vm
	handles.Unlock()
	*out = C.bioxen_vm(h)
	core.Logf(core.LevelDebug, "opened VM %d (%s engine)", h, vm.Options().Engine)
	return C.BIOXEN_OK
}

//export bioxenGoVMClose
func bioxenGoVMClose(h C.bioxen_vm) (status C.int) {
	defer guard(&status)
	if h == 0 {
		return C.BIOXEN_OK
	}
	handles.Lock()
	vm := handles.vms[uint64(h)]
	delete(handles.vms, uint64(h))
	sessions := map[uint64]*sessionEntry{}
	for sh, e := range handles.sessions {
		if e.vm == uint64(h) {
			sessions[sh] = e
			delete(handles.sessions, sh)
		}
	}
	handles.Unlock()
	if vm == nil {
		return fail(core.Errorf(core.ErrBadHandle, "close", "no VM with handle %d (closed or never opened)", uint64(h)))
	}
	for sh, e := range sessions {
		e.close(sh)
	}
	if inListenerOf(0, uint64(h)) {
		// Called from a listener of one of the VM's sessions, whose chunk
		// holds the VM until the listener returns: waiting here would wait
		// for ourselves. The listeners are removed (above); the VM closes
		// in the background.
		go func() {
			if err := vm.Close(); err != nil {
				core.Logf(core.LevelWarn, "closing VM %d: %v", uint64(h), err)
			}
		}()
		return C.BIOXEN_OK
	}
	if err := vm.Close(); err != nil {
		return fail(err)
	}
	core.Logf(core.LevelDebug, "closed VM %d", uint64(h))
	return C.BIOXEN_OK
}

// checkFlags refuses exec flags this library does not know: a program
// built for a later library that sets a new flag gets BIOXEN_E_INVALID,
// not a call that ignores the flag.
func checkFlags(flags C.int, op string) error {
	if flags&^C.BIOXEN_EXEC_PRINT_RESULTS != 0 {
		return core.Errorf(core.ErrInvalid, op, "unknown flags %#x (the only flag is BIOXEN_EXEC_PRINT_RESULTS)", int(flags))
	}
	return nil
}

// execOpts builds a call's options: timeoutMS <= 0 is no limit, and so is
// a timeout too long for time.Duration (maxMillis, about 292 years).
func execOpts(timeoutMS C.int64_t, flags C.int) core.ExecOptions {
	eo := core.ExecOptions{PrintResults: flags&C.BIOXEN_EXEC_PRINT_RESULTS != 0}
	if d := millis(timeoutMS); d < forever {
		eo.Timeout = d
	}
	return eo
}

// blockingOpts are execOpts for a blocking call, which the calling
// thread's interrupt fd (bioxen_set_interrupt_fd) can stop.
func blockingOpts(timeoutMS C.int64_t, flags C.int) core.ExecOptions {
	eo := execOpts(timeoutMS, flags)
	eo.Interrupt = threadInterrupt()
	return eo
}

// maxMillis is the largest number of milliseconds a time.Duration holds.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// forever is what millis makes of a count past maxMillis.
const forever = time.Duration(math.MaxInt64)

// millis converts a C millisecond count without overflow: <= 0 is 0, a
// count of maxMillis or more saturates to forever (1<<62 ms once became 0).
func millis(ms C.int64_t) time.Duration {
	switch {
	case ms <= 0:
		return 0
	case int64(ms) >= maxMillis:
		return forever
	}
	return time.Duration(ms) * time.Millisecond
}

// cView returns the n bytes at p without copying them (they are read
// during the call only), after checking n against limit: ErrTooLarge
// rather than a length truncated to an int (size_t is wider).
func cView(p *C.char, n C.size_t, limit int, op, what string) ([]byte, error) {
	if p == nil {
		return nil, core.Errorf(core.ErrInvalid, op, "%s is NULL", what)
	}
	if limit < 0 || uint64(n) > uint64(limit) {
		return nil, core.Errorf(core.ErrTooLarge, op, "%s is %d bytes, over the limit of %d bytes", what, uint64(n), limit)
	}
	if n == 0 {
		return []byte{}, nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)), nil
}

// cCopy is cView's bytes copied into Go memory, for work that outlives
// the call (async calls, session input).
func cCopy(p *C.char, n C.size_t, limit int, op, what string) ([]byte, error) {
	b, err := cView(p, n, limit, op, what)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

//export bioxenGoVMExec
func bioxenGoVMExec(h C.bioxen_vm, code *C.char, n C.size_t, timeoutMS C.int64_t, flags C.int, out **C.bioxen_result) (status C.int) {
	defer guard(&status)
	if out == nil {
		return fail(core.Errorf(core.ErrInvalid, "exec", "result_out is NULL"))
	}
	*out = nil
	if code == nil {
		return fail(core.Errorf(core.ErrInvalid, "exec", "code is NULL"))
	}
	if err := checkFlags(flags, "exec"); err != nil {
		return fail(err)
	}
	vm, st := lookup(h)
	if vm == nil {
		return st
	}
	// The bytes are only read during the call, so no copy is needed.
	src, err := cView(code, n, vm.Options().Limits.MaxSourceBytes, "exec", "code")
	if err != nil {
		return fail(err)
	}
	res, err := vm.Exec(context.Background(), src, blockingOpts(timeoutMS, flags))
	if err != nil {
		return fail(err)
	}
	*out = newResult(res)
	return C.BIOXEN_OK
}

//export bioxenGoVMExecFile
func bioxenGoVMExecFile(h C.bioxen_vm, path *C.char, timeoutMS C.int64_t, out **C.bioxen_result) (status C.int) {
	defer guard(&status)
	if out == nil {
		return fail(core.Errorf(core.ErrInvalid, "exec_file", "result_out is NULL"))
	}
	*out = nil
	if path == nil {
		return fail(core.Errorf(core.ErrInvalid, "exec_file", "path is NULL"))
	}
	vm, st := lookup(h)
	if vm == nil {
		return st
	}
	res, err := vm.ExecFile(context.Background(), C.GoString(path), blockingOpts(timeoutMS, 0))
	if err != nil {
		return fail(err)
	}
	*out = newResult(res)
	return C.BIOXEN_OK
}

// newResult copies r into one C block: the struct's four buffers lie in a
// single allocation (stdout, stderr, values, message, each followed by a
// NUL), which bioxen_result_free releases with the struct.
func newResult(r *core.Result) *C.bioxen_result {
	vals := r.Values
	if len(vals) == 0 {
		vals = []byte("[]")
	}
	parts := [4][]byte{r.Stdout, r.Stderr, vals, []byte(r.ErrorMessage)}
	total := 0
	for _, p := range parts {
		total += len(p) + 1
	}
	block := unsafe.Slice((*byte)(C.malloc(C.size_t(total))), total)
	var ptrs [4]*C.char
	off := 0
	for i, p := range parts {
		copy(block[off:], p)
		block[off+len(p)] = 0
		ptrs[i] = (*C.char)(unsafe.Pointer(&block[off]))
		off += len(p) + 1
	}
	cr := (*C.bioxen_result)(C.calloc(1, C.size_t(unsafe.Sizeof(C.bioxen_result{}))))
	cr.stdout_data, cr.stdout_len = ptrs[0], C.size_t(len(parts[0]))
	cr.stderr_data, cr.stderr_len = ptrs[1], C.size_t(len(parts[1]))
	cr.values_json, cr.values_len = ptrs[2], C.size_t(len(parts[2]))
	cr.error_message, cr.error_len = ptrs[3], C.size_t(len(parts[3]))
	// core.normalizeResult keeps the code within a C int and success in
	// agreement with it.
	cr.return_code = C.int(r.ReturnCode)
	if r.Success {
		cr.success = 1
	}
	if r.Truncated {
		cr.truncated = 1
	}
	return cr
}

//export bioxenGoSetLog
func bioxenGoSetLog(fn C.bioxen_log_fn, ud C.uintptr_t, min C.int) (status C.int) {
	defer guard(&status)
	logMu.Lock()
	old := logGate
	logGate = nil
	if fn == nil {
		core.SetLogger(nil, 0)
	} else {
		g := newGate()
		logGate = g
		core.SetLogger(func(level int, msg string) {
			logLine(func() {
				if !g.enter() {
					return
				}
				defer g.exit()
				cmsg := C.CString(msg)
				C.bioxen__call_log(fn, ud, C.int(level), cmsg, C.uint64_t(g.id))
				C.free(unsafe.Pointer(cmsg))
			})
		}, int(min))
	}
	logMu.Unlock()
	// The old callback is not called after this returns (its userdata may
	// be freed then).
	old.retire()
	return C.BIOXEN_OK
}

// logGate is the gate of the log callback set (nil: none), guarded by logMu.
var (
	logMu   sync.Mutex
	logGate *gate
)

// Log lines are handed to the log callback by one thread of the library's
// own (logThread), while the line's caller waits, so lines keep their order
// and are delivered before the call that logged returns. Calling the
// callback on the caller's thread instead ran the host's code in the
// middle of the host's call: in Python a Ctrl-C that came during a
// blocking call from the main thread (a VM's start, an XCP-ng VM's boot, a
// close) ran its handler inside the log callback of that call, where the
// KeyboardInterrupt was swallowed ("Exception ignored on calling ctypes
// callback function") instead of raised when the call returned.
var logQueue = make(chan logItem)

type logItem struct {
	deliver func()
	done    chan struct{}
}

var logStart sync.Once

func logLine(deliver func()) {
	logStart.Do(func() { go logThread() })
	done := make(chan struct{})
	logQueue <- logItem{deliver, done}
	<-done
}

func logThread() {
	runtime.LockOSThread() // one thread: a host sees one foreign thread, not many
	for it := range logQueue {
		it.deliver()
		close(it.done)
	}
}

//export bioxenGoLiveHandles
func bioxenGoLiveHandles() C.int {
	handles.RLock()
	defer handles.RUnlock()
	return C.int(len(handles.vms) + len(handles.sessions) + len(handles.calls))
}

// cbytes copies b into C memory with a NUL after it; never NULL. The caller
// frees it with bioxen_free.
func cbytes(b []byte) (*C.char, C.size_t) {
	p := C.malloc(C.size_t(len(b) + 1))
	buf := unsafe.Slice((*byte)(p), len(b)+1)
	copy(buf, b)
	buf[len(b)] = 0
	return (*C.char)(p), C.size_t(len(b))
}
