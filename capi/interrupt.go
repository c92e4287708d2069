package main

/*
#include <stdint.h>
#include "bioxen.h"
#include "shim.h"
*/
import "C"

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"libbioxen/core"
)

// Interrupt fds (bioxen_set_interrupt_fd): a thread names a self-pipe that
// its signal handler writes signal numbers to (Python's signal wakeup fd).
// A watcher goroutine reads a duplicate of it and, on SIGINT, triggers the
// core.Interrupt that the thread's blocking calls run with. The chunk runs
// on the calling thread as before: handing it to another goroutine would
// cost thread wake-ups (120 µs per call measured here).

type watcher struct {
	in core.Interrupt
	f  *os.File // the duplicate being read; closing it ends the watcher
}

var watchers = struct {
	sync.Mutex
	next uint64
	m    map[uint64]*watcher
}{next: 1, m: map[uint64]*watcher{}}

//export bioxenGoSetInterruptFd
func bioxenGoSetInterruptFd(fd C.int, old C.uint64_t, out *C.uint64_t) (status C.int) {
	defer guard(&status)
	*out = 0
	if fd < -1 {
		return fail(core.Errorf(core.ErrInvalid, "set_interrupt_fd", "fd %d is not a file descriptor (-1 removes the setting)", fd))
	}
	var w *watcher
	if fd >= 0 {
		f, err := dupSelfPipe(int(fd))
		if err != nil {
			return fail(err)
		}
		w = &watcher{f: f}
	}
	watchers.Lock()
	if prev := watchers.m[uint64(old)]; prev != nil {
		delete(watchers.m, uint64(old))
		prev.f.Close()
	}
	if w != nil {
		id := watchers.next
		watchers.next++
		watchers.m[id] = w
		*out = C.uint64_t(id)
		go w.watch(id)
	}
	watchers.Unlock()
	return C.BIOXEN_OK
}

// dupSelfPipe checks that fd is a pipe or socket and returns a
// close-on-exec, non-blocking duplicate of it (so the runtime's poller
// waits for it without holding a thread).
func dupSelfPipe(fd int) (*os.File, error) {
	const op = "set_interrupt_fd"
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, core.Wrap(core.ErrInvalid, op, "fd is not an open file descriptor", err)
	}
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFIFO && t != unix.S_IFSOCK {
		return nil, core.Errorf(core.ErrInvalid, op, "fd %d is not a pipe or socket (a signal handler's self-pipe)", fd)
	}
	// The write end of a pipe was accepted, and its watcher ended at once
	// (EBADF on the first read): Ctrl-C then silently did nothing.
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil && fl&unix.O_ACCMODE == unix.O_WRONLY {
		return nil, core.Errorf(core.ErrInvalid, op, "fd %d is open for writing only: give the read end of the self-pipe", fd)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, core.Wrap(core.ErrGeneric, op, "duplicating the fd", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, core.Wrap(core.ErrGeneric, op, "making the fd non-blocking", err)
	}
	return os.NewFile(uintptr(dup), "interrupt fd"), nil
}

// watch reads signal numbers until the duplicate is closed or every writer
// is gone, triggering the Interrupt on SIGINT (once per read: one ^C is one
// byte, and two in one read are one interrupt, not an escalation).
func (w *watcher) watch(id uint64) {
	buf := make([]byte, 64)
	for {
		n, err := w.f.Read(buf)
		for _, b := range buf[:n] {
			if b == byte(syscall.SIGINT) {
				w.in.Trigger()
				break
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				core.Logf(core.LevelDebug, "interrupt fd watcher %d stops: %v", id, err)
			}
			watchers.Lock()
			if watchers.m[id] == w {
				delete(watchers.m, id)
				w.f.Close()
			}
			watchers.Unlock()
			return
		}
	}
}

// threadInterrupt is the Interrupt of the calling thread's interrupt fd,
// or nil when it has none.
func threadInterrupt() *core.Interrupt {
	id := uint64(C.bioxen__interrupt_id())
	if id == 0 {
		return nil
	}
	watchers.Lock()
	defer watchers.Unlock()
	if w := watchers.m[id]; w != nil {
		return &w.in
	}
	return nil
}

// Call handles (bioxen_call) of async calls, in handles.calls: interrupting
// one stops that call only. A handle lives until the call's done callback
// is called.

func addCall(interrupt func()) uint64 {
	handles.Lock()
	defer handles.Unlock()
	h := newHandle()
	handles.calls[h] = interrupt
	return h
}

func dropCall(h uint64) {
	handles.Lock()
	delete(handles.calls, h)
	handles.Unlock()
}

func setCallOut(out *C.bioxen_call, h uint64) {
	if out != nil {
		*out = C.bioxen_call(h)
	}
}

//export bioxenGoCallInterrupt
func bioxenGoCallInterrupt(h C.bioxen_call) (status C.int) {
	defer guard(&status)
	handles.RLock()
	interrupt := handles.calls[uint64(h)]
	handles.RUnlock()
	if interrupt == nil {
		return fail(core.Errorf(core.ErrBadHandle, "call_interrupt", "no running call with handle %d (finished, or never started)", uint64(h)))
	}
	interrupt()
	return C.BIOXEN_OK
}
