package core

import (
	"context"
	"sync"
	"time"
)

// Interrupt lets another goroutine stop a call that runs on the caller's
// goroutine: give it to a call in ExecOptions.Interrupt and call Trigger,
// the way ^C stops a chunk in lua -i. A host that blocks in one call (a C
// thread, Python's main thread waiting in C, where Python cannot see
// Ctrl-C) hands Trigger to whatever sees the signal. One Interrupt may
// serve many calls, one after another; Trigger affects only the call
// running at the time, and does nothing between calls.
type Interrupt struct {
	// KeepEarly keeps a Trigger that comes while no call runs for the next
	// call, which then stops at once: for an Interrupt made for one call
	// (an async call's handle), which may be triggered before it starts.
	KeepEarly bool

	mu      sync.Mutex
	cur     *stopper // the call running with this Interrupt, if any
	pending bool     // KeepEarly: triggered while no call ran
}

// Trigger stops the call running with in, if any. The engine's own
// interrupt is used, which keeps the Lua state, when the engine has one
// and the call holds the VM; the call is cancelled otherwise, or when it
// has not stopped after InterruptGrace. It then ends with ErrTimeout
// "interrupted", whose text says whether the state was kept, unless it had
// finished anyway. A second Trigger during the same call cancels it
// outright (on the process engine that kills the interpreter and its
// state). A session's call interrupts the session (Session.Interrupt),
// dropping its queued input as a terminal's ^C does. Trigger returns at
// once.
func (in *Interrupt) Trigger() {
	in.mu.Lock()
	defer in.mu.Unlock()
	// Under in.mu: the call cannot end, and another begin, meanwhile.
	if st := in.cur; st != nil {
		st.interrupt()
	} else if in.KeepEarly {
		in.pending = true
	}
}

// set makes st the running call (nil: none); a kept Trigger stops it now.
func (in *Interrupt) set(st *stopper) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.cur = st
	if st != nil && in.pending {
		in.pending = false
		st.interrupt()
	}
}

// stopper is one call's side of an Interrupt.
type stopper struct {
	vm      *VM
	session *Session     // a session's Execute: interrupt the session while it waits or runs
	reply   chan execOut // the Execute's
	cancel  context.CancelFunc
	stopped bool // interrupted once (guarded by the Interrupt's mu)
}

func (st *stopper) interrupt() {
	if st.session != nil {
		// A Trigger before the Execute queued or ran did nothing: the
		// next one is then the first, not a second.
		if st.session.interruptExecute(st.reply, st.stopped) {
			st.stopped = true
		}
		return
	}
	if st.stopped {
		st.cancel() // a second Trigger: outright
		return
	}
	st.stopped = true
	st.vm.stopCall(st, st.cancel)
}

// stopCall stops the call of owner (a *sessionRun or a *stopper) whose
// context cancel cancels: with the engine's own interrupt, which keeps the
// Lua state, while that call holds the VM, and by cancelling it if it has
// not stopped after InterruptGrace (harmless once it has ended); at once
// by cancelling when the engine has no interrupt or the call still waits
// for another caller's (which must not be interrupted).
func (vm *VM) stopCall(owner any, cancel context.CancelFunc) {
	in, ok := vm.engine.(Interrupter)
	if !ok || !vm.interruptFor(owner, in) {
		cancel()
		return
	}
	time.AfterFunc(InterruptGrace, cancel)
}

// exec runs req (VM.Exec, VM.ExecFile) with eo's timeout, so that
// eo.Interrupt, when set, can stop it.
func (vm *VM) exec(ctx context.Context, req *Request, eo ExecOptions) (*Result, error) {
	in := eo.Interrupt
	if in == nil {
		return vm.run(ctx, req, eo.Timeout)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	st := &stopper{vm: vm}
	ctx, st.cancel = context.WithCancel(context.WithValue(ctx, ownerKey{}, st))
	defer st.cancel()
	in.set(st)
	res, err := vm.run(ctx, req, eo.Timeout)
	in.mu.Lock()
	in.cur = nil
	stopped := st.stopped
	in.mu.Unlock()
	if !stopped {
		return res, err
	}
	return vm.stoppedOutcome(res, err)
}

// stoppedOutcome gives a call that an Interrupt stopped one outcome on
// every engine, as Session.stoppedOutcome does for sessions: ErrTimeout
// "interrupted". A result that was complete before the stop took effect is
// kept, and so is an error that is not the stop's (the VM closed under the
// call, say).
func (vm *VM) stoppedOutcome(res *Result, err error) (*Result, error) {
	if (err == nil && res != nil && res.Success) || (err != nil && CodeOf(err) != ErrTimeout) {
		return res, err
	}
	if err != nil {
		return nil, Wrap(ErrTimeout, "exec", "interrupted", err)
	}
	kept := "the VM keeps its state"
	if !vm.opts.Persistent {
		kept = "the VM is usable"
	}
	return nil, Errorf(ErrTimeout, "exec", "interrupted: the chunk was stopped; %s", kept)
}
