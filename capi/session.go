package main

/*
#include <stdlib.h>
#include "bioxen.h"
#include "shim.h"
*/
import "C"

import (
	"context"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"libbioxen/core"
)

// sessionOpenHook, set by tests only, runs between making a session and
// registering its handle (where bioxen_vm_close can race the open).
var sessionOpenHook func()

//export bioxenGoSessionOpen
func bioxenGoSessionOpen(vmh C.bioxen_vm, out *C.bioxen_session) (status C.int) {
	defer guard(&status)
	if out == nil {
		return fail(core.Errorf(core.ErrInvalid, "session_open", "session_out is NULL"))
	}
	*out = 0
	vm, st := lookup(vmh)
	if vm == nil {
		return st
	}
	s, err := vm.NewSession()
	if err != nil {
		return fail(err)
	}
	if sessionOpenHook != nil {
		sessionOpenHook()
	}
	handles.Lock()
	if handles.vms[uint64(vmh)] != vm {
		// bioxen_vm_close ran meanwhile and collected the VM's sessions
		// before this one existed: it must not outlive the VM.
		handles.Unlock()
		s.Close()
		return fail(core.Errorf(core.ErrClosed, "session_open", "VM %d was closed while the session was being opened", uint64(vmh)))
	}
	h := newHandle()
	handles.sessions[h] = &sessionEntry{s: s, vm: uint64(vmh)}
	handles.Unlock()
	*out = C.bioxen_session(h)
	core.Logf(core.LevelDebug, "opened session %d on VM %d", h, uint64(vmh))
	return C.BIOXEN_OK
}

//export bioxenGoSessionClose
func bioxenGoSessionClose(h C.bioxen_session) (status C.int) {
	defer guard(&status)
	if h == 0 {
		return C.BIOXEN_OK
	}
	handles.Lock()
	e := handles.sessions[uint64(h)]
	delete(handles.sessions, uint64(h))
	handles.Unlock()
	if e == nil {
		return fail(core.Errorf(core.ErrBadHandle, "session_close", "no session with handle %d (closed or never opened)", uint64(h)))
	}
	e.close(uint64(h))
	return C.BIOXEN_OK
}

//export bioxenGoSessionSend
func bioxenGoSessionSend(h C.bioxen_session, input *C.char, n C.size_t) (status C.int) {
	defer guard(&status)
	if input == nil && n > 0 {
		return fail(core.Errorf(core.ErrInvalid, "session_send", "input is NULL"))
	}
	s, st := lookupSession(h)
	if s == nil {
		return st
	}
	var data []byte
	if n > 0 {
		var err error
		if data, err = cCopy(input, n, s.Limits().MaxSourceBytes, "session_send", "input"); err != nil {
			return fail(err)
		}
	}
	if err := s.Send(data); err != nil {
		return fail(err)
	}
	return C.BIOXEN_OK
}

//export bioxenGoSessionRead
func bioxenGoSessionRead(h C.bioxen_session, streams C.int, timeoutMS C.int64_t, out **C.char, outLen *C.size_t) (status C.int) {
	defer guard(&status)
	if out == nil || outLen == nil {
		return fail(core.Errorf(core.ErrInvalid, "session_read", "data_out or len_out is NULL"))
	}
	*out, *outLen = nil, 0
	if streams&^(C.BIOXEN_STDOUT|C.BIOXEN_STDERR) != 0 || streams == 0 {
		return fail(core.Errorf(core.ErrInvalid, "session_read", "streams must be BIOXEN_STDOUT, BIOXEN_STDERR or both"))
	}
	s, st := lookupSession(h)
	if s == nil {
		return st
	}
	data, err := s.Read(core.Stream(streams), millis(timeoutMS))
	if err != nil {
		return fail(err)
	}
	*out, *outLen = cbytes(data)
	return C.BIOXEN_OK
}

//export bioxenGoSessionExecute
func bioxenGoSessionExecute(h C.bioxen_session, code *C.char, n C.size_t, timeoutMS C.int64_t, flags C.int, out **C.bioxen_result) (status C.int) {
	defer guard(&status)
	if out == nil {
		return fail(core.Errorf(core.ErrInvalid, "session_execute", "result_out is NULL"))
	}
	// Before any other check: on every failure *result_out is NULL (a
	// NULL code left the caller's garbage there, which it then freed).
	*out = nil
	if code == nil {
		return fail(core.Errorf(core.ErrInvalid, "session_execute", "code is NULL"))
	}
	if err := checkFlags(flags, "session_execute"); err != nil {
		return fail(err)
	}
	s, st := lookupSession(h)
	if s == nil {
		return st
	}
	src, err := cCopy(code, n, s.Limits().MaxSourceBytes, "session_execute", "code")
	if err != nil {
		return fail(err)
	}
	res, err := s.Execute(context.Background(), src, blockingOpts(timeoutMS, flags))
	if err != nil {
		return fail(err)
	}
	*out = newResult(res)
	return C.BIOXEN_OK
}

//export bioxenGoSessionWait
func bioxenGoSessionWait(h C.bioxen_session, timeoutMS C.int64_t, idle *C.int) (status C.int) {
	defer guard(&status)
	if idle != nil {
		*idle = 0
	}
	s, st := lookupSession(h)
	if s == nil {
		return st
	}
	ok, err := s.Wait(millis(timeoutMS))
	if err != nil {
		return fail(err)
	}
	if idle != nil && ok {
		*idle = 1
	}
	return C.BIOXEN_OK
}

//export bioxenGoSessionStatus
func bioxenGoSessionStatus(h C.bioxen_session, busy, pending *C.int) (status C.int) {
	defer guard(&status)
	for _, p := range []*C.int{busy, pending} {
		if p != nil {
			*p = 0
		}
	}
	s, st := lookupSession(h)
	if s == nil {
		return st
	}
	if busy != nil {
		*busy = boolInt(s.Busy())
	}
	if pending != nil {
		*pending = boolInt(s.Pending())
	}
	return C.BIOXEN_OK
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

//export bioxenGoSessionInterrupt
func bioxenGoSessionInterrupt(h C.bioxen_session) (status C.int) {
	defer guard(&status)
	s, st := lookupSession(h)
	if s == nil {
		return st
	}
	s.Interrupt()
	return C.BIOXEN_OK
}

//export bioxenGoSessionSetListener
func bioxenGoSessionSetListener(h C.bioxen_session, fn C.bioxen_output_fn, ud C.uintptr_t) (status C.int) {
	defer guard(&status)
	e, st := lookupSessionEntry(h, "session_set_listener")
	if e == nil {
		return st
	}
	var g *gate
	listenerMu.Lock()
	if e.closed {
		listenerMu.Unlock()
		return fail(core.Errorf(core.ErrBadHandle, "session_set_listener", "session %d was closed", uint64(h)))
	}
	old := e.listener
	if fn == nil {
		e.s.SetListener(nil)
	} else {
		g = newGate()
		session, vm := C.uint64_t(h), C.uint64_t(e.vm)
		e.s.SetGatedListener(func(stream core.Stream, p []byte) bool {
			if len(p) == 0 {
				return true
			}
			if !g.enter() {
				return false // being removed: the session buffers it
			}
			defer g.exit()
			// A C copy, so the callback reads C memory only.
			cp := C.CBytes(p)
			C.bioxen__call_output(fn, ud, C.int(stream), (*C.char)(cp), C.size_t(len(p)), C.uint64_t(g.id), session, vm)
			C.free(cp)
			return true
		})
	}
	e.listener = g
	listenerMu.Unlock()
	// The old listener is not called after this returns (its userdata may
	// be freed then).
	old.retire()
	return C.BIOXEN_OK
}

//export bioxenGoVMExecAsync
func bioxenGoVMExecAsync(h C.bioxen_vm, code *C.char, n C.size_t, timeoutMS C.int64_t, flags C.int, fn C.bioxen_exec_done_fn, ud C.uintptr_t, callOut *C.bioxen_call) (status C.int) {
	defer guard(&status)
	setCallOut(callOut, 0)
	if code == nil || fn == nil {
		return fail(core.Errorf(core.ErrInvalid, "exec_async", "code or callback is NULL"))
	}
	if err := checkFlags(flags, "exec_async"); err != nil {
		return fail(err)
	}
	vm, st := lookup(h)
	if vm == nil {
		return st
	}
	src, err := cCopy(code, n, vm.Options().Limits.MaxSourceBytes, "exec_async", "code")
	if err != nil {
		return fail(err)
	}
	if err := core.CheckSource(src, vm.Options().Limits); err != nil {
		return fail(err)
	}
	eo := execOpts(timeoutMS, flags)
	in := &core.Interrupt{KeepEarly: true}
	eo.Interrupt = in
	// stop is closed by bioxen_call_interrupt: a call still waiting for
	// its turn leaves the line at once, as a blocking call waiting for the
	// VM does (it waited for the calls ahead of it, a loop's forever).
	stop := make(chan struct{})
	var stopOnce sync.Once
	call := addCall(func() {
		stopOnce.Do(func() { close(stop) })
		in.Trigger()
	})
	setCallOut(callOut, call)
	// The call's place in the VM's line is taken here, in the caller's
	// thread: each call runs on a goroutine of its own, and those reached
	// the VM in the scheduler's order.
	start := time.Now()
	turn := vmLines.enter(h)
	go deliver(fn, ud, call, func() (*core.Result, error) {
		// The timeout bounds the whole call, the wait for the calls ahead
		// included, as bioxen_vm_exec's covers its wait for the VM.
		var expired <-chan time.Time
		if eo.Timeout > 0 {
			t := time.NewTimer(eo.Timeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-turn:
		default:
			select {
			case <-turn:
			case <-expired:
				vmLines.abandon(h, turn)
				return nil, core.Errorf(core.ErrTimeout, "exec", "the call's timeout of %v passed while it waited for the VM's earlier async calls to finish; it did not run", eo.Timeout)
			case <-stop:
				vmLines.abandon(h, turn)
				return nil, core.Errorf(core.ErrTimeout, "exec", "interrupted: the call was stopped while it waited for the VM's earlier async calls to finish; it did not run")
			}
		}
		defer vmLines.leave(h) // before done: a slow done holds up nothing
		if eo.Timeout > 0 {
			if eo.Timeout -= time.Since(start); eo.Timeout <= 0 {
				return nil, core.Errorf(core.ErrTimeout, "exec", "the call's timeout passed while it waited for the VM's earlier async calls to finish; it did not run")
			}
		}
		return vm.Exec(context.Background(), src, eo)
	})
	return C.BIOXEN_OK
}

// vmLines keeps each VM's async calls in the order they were made: a call
// starts when the one before it on the same VM has finished.
var vmLines = asyncLines{m: map[C.bioxen_vm]*asyncLine{}}

type asyncLines struct {
	mu sync.Mutex
	m  map[C.bioxen_vm]*asyncLine // VMs with an async call queued or running
}

type asyncLine struct {
	waiting []chan struct{} // the turns of the calls behind the running one
}

// enter queues a call on h; the channel is closed when its turn comes.
func (q *asyncLines) enter(h C.bioxen_vm) <-chan struct{} {
	ch := make(chan struct{})
	q.mu.Lock()
	defer q.mu.Unlock()
	if l := q.m[h]; l != nil {
		l.waiting = append(l.waiting, ch)
		return ch
	}
	q.m[h] = &asyncLine{}
	close(ch)
	return ch
}

// abandon takes a call that gave up waiting out of h's line: its turn
// is passed on if it came meanwhile.
func (q *asyncLines) abandon(h C.bioxen_vm, turn <-chan struct{}) {
	q.mu.Lock()
	l := q.m[h]
	for i, ch := range l.waiting {
		if ch == turn {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			q.mu.Unlock()
			return
		}
	}
	q.mu.Unlock()
	q.leave(h) // not waiting any more: the turn is its own
}

// leave ends the running call on h and gives the next one its turn.
func (q *asyncLines) leave(h C.bioxen_vm) {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.m[h]
	if len(l.waiting) == 0 {
		delete(q.m, h)
		return
	}
	close(l.waiting[0])
	l.waiting[0] = nil
	l.waiting = l.waiting[1:]
}

//export bioxenGoSessionExecuteAsync
func bioxenGoSessionExecuteAsync(h C.bioxen_session, code *C.char, n C.size_t, timeoutMS C.int64_t, flags C.int, fn C.bioxen_exec_done_fn, ud C.uintptr_t, callOut *C.bioxen_call) (status C.int) {
	defer guard(&status)
	setCallOut(callOut, 0)
	if code == nil || fn == nil {
		return fail(core.Errorf(core.ErrInvalid, "session_execute_async", "code or callback is NULL"))
	}
	if err := checkFlags(flags, "session_execute_async"); err != nil {
		return fail(err)
	}
	s, st := lookupSession(h)
	if s == nil {
		return st
	}
	src, err := cCopy(code, n, s.Limits().MaxSourceBytes, "session_execute_async", "code")
	if err != nil {
		return fail(err)
	}
	// As bioxen_vm_exec_async: bad code is refused here, not through done.
	if err := core.CheckSource(src, s.Limits()); err != nil {
		return fail(err)
	}
	eo := execOpts(timeoutMS, flags)
	// Cancelling the call's context stops this chunk only: taken out of
	// the queue, or interrupted (state kept) when it runs. Queued here,
	// before returning, so that calls run in the order they were made
	// (queued from goroutines, they ran in the scheduler's order).
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := s.Submit(ctx, src, eo)
	if err != nil {
		cancel()
		return fail(err)
	}
	call := addCall(cancel)
	setCallOut(callOut, call)
	go deliver(fn, ud, call, func() (*core.Result, error) {
		defer cancel()
		return wait()
	})
	return C.BIOXEN_OK
}

// deliver runs fn and reports its outcome to a bioxen_exec_done_fn, exactly
// once, from this goroutine.
func deliver(done C.bioxen_exec_done_fn, ud C.uintptr_t, call uint64, fn func() (*core.Result, error)) {
	var status C.int = C.BIOXEN_OK
	var res *C.bioxen_result
	var msg *C.char
	func() {
		defer func() {
			// Not guard: its message goes to this OS thread's error slot,
			// and reading it back is a second cgo call, which this
			// goroutine may make from another thread.
			if r := recover(); r != nil {
				err := core.Errorf(core.ErrGeneric, "", "internal error: %v\n%s", r, debug.Stack())
				status, msg = C.int(core.CodeOf(err)), C.CString(err.Error())
			}
		}()
		r, err := fn()
		if err != nil {
			status = C.int(core.CodeOf(err))
			msg = C.CString(err.Error())
			return
		}
		res = newResult(r)
	}()
	dropCall(call) // before done: the handle is stale once the caller hears
	C.bioxen__call_done(done, ud, status, res, msg)
	if msg != nil {
		C.free(unsafe.Pointer(msg))
	}
}
