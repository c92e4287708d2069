package main

/*
#include <stdint.h>
#include "bioxen.h"
#include "shim.h"
*/
import "C"

import (
	"sync"
	"sync/atomic"
)

// A gate guards one callback the host registered (a session's listener,
// the log callback): once the callback is removed or its session closed,
// no call of it starts, and the function that removed it returns only when
// the calls already under way have ended, so that the host may free the
// callback's userdata right after. A call the removing thread is itself
// making (a callback that removes itself, or closes its own session) is
// not waited for: that would wait forever.
type gate struct {
	id       uint64
	mu       sync.Mutex
	idle     sync.Cond // signalled when inflight drops to 0
	inflight int
	retired  bool
}

var gateIDs atomic.Uint64

func newGate() *gate {
	g := &gate{id: gateIDs.Add(1)}
	g.idle.L = &g.mu
	return g
}

// enter reports whether the callback may be called now, and counts the
// call until exit.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.inflight++
	return true
}

func (g *gate) exit() {
	g.mu.Lock()
	g.inflight--
	if g.inflight == 0 {
		g.idle.Broadcast()
	}
	g.mu.Unlock()
}

// retire stops new calls and waits for those under way, except one the
// calling thread is making. nil is a no-op.
func (g *gate) retire() {
	if g == nil {
		return
	}
	self := 0
	if C.bioxen__in_callback(C.uint64_t(g.id), 0, 0) != 0 {
		self = 1
	}
	g.mu.Lock()
	g.retired = true
	for g.inflight > self {
		g.idle.Wait()
	}
	g.mu.Unlock()
}

// inListenerOf reports whether the calling thread is inside a listener
// call of session (non-zero) or of a session of vm (non-zero): a close
// that waited for that session's chunk would wait for itself.
func inListenerOf(session, vm uint64) bool {
	return C.bioxen__in_callback(0, C.uint64_t(session), C.uint64_t(vm)) != 0
}
