package main

import (
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A SIGINT byte on the thread's interrupt fd stops that thread's blocking
// exec (what Python's signal wakeup fd delivers on Ctrl-C); other signal
// numbers do not; -1 removes the setting and ends the watcher.
func TestInterruptFd(t *testing.T) {
	runtime.LockOSThread() // the setting is per thread
	defer runtime.UnlockOSThread()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	before := testWatchers()
	if st := testSetInterruptFd(int(r.Fd())); st != 0 {
		t.Fatalf("set_interrupt_fd: %d %s", st, testErrmsg())
	}
	r.Close() // the library reads its own duplicate
	h, st := testOpen("", "", true)
	if st != 0 {
		t.Fatalf("open: %d %s", st, testErrmsg())
	}
	defer testClose(h)

	// Write the byte until the call returns: one written before the call
	// holds the VM is ignored, as bytes between calls are.
	send := func(sig syscall.Signal, stop chan struct{}) {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				w.Write([]byte{byte(sig)})
			}
		}
	}
	stop := make(chan struct{})
	go send(syscall.SIGINT, stop)
	_, st = testExec(h, "x = 1 while true do end", 0, 0)
	close(stop)
	if st != 4 || !strings.Contains(testErrmsg(), "interrupted") {
		t.Fatalf("interrupted exec: status %d %q, want 4 (timeout) saying interrupted", st, testErrmsg())
	}
	if r, st := testExec(h, "return x", 0, 0); st != 0 || r.values != "[1]" {
		t.Fatalf("after the interrupt: %d %+v", st, r)
	}

	stop = make(chan struct{})
	go send(syscall.SIGCHLD, stop)
	r2, st := testExec(h, "local n = 0 for i = 1, 3e6 do n = n + 1 end return n", 0, 0)
	close(stop)
	if st != 0 || r2.values != "[3000000]" {
		t.Fatalf("with SIGCHLD bytes: %d %s %+v", st, testErrmsg(), r2)
	}

	if st := testSetInterruptFd(-1); st != 0 {
		t.Fatalf("set_interrupt_fd(-1): %d", st)
	}
	if n := testWatchers(); n != before {
		t.Fatalf("%d watchers after removing the setting, want %d", n, before)
	}
	if _, st := testExec(h, "return 1", 0, 0); st != 0 {
		t.Fatalf("exec without the setting: %d", st)
	}
}

// Anything but a pipe or socket is refused: bytes of a file would be read
// as signals.
func TestInterruptFdRefusesFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "notapipe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st := testSetInterruptFd(int(f.Fd())); st != 2 || !strings.Contains(testErrmsg(), "not a pipe or socket") {
		t.Fatalf("regular file: %d %q", st, testErrmsg())
	}
	if st := testSetInterruptFd(1 << 20); st != 2 {
		t.Fatalf("closed fd: %d %q", st, testErrmsg())
	}
	// The write end of the self-pipe is no use: nothing can be read from it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	before := testWatchers()
	if st := testSetInterruptFd(int(w.Fd())); st != 2 || !strings.Contains(testErrmsg(), "read end") {
		t.Fatalf("write end of a pipe: %d %q, want BIOXEN_E_INVALID", st, testErrmsg())
	}
	if n := testWatchers(); n != before {
		t.Fatalf("%d watchers after a refused fd, want %d", n, before)
	}
}

// A call handle is stale once the call has finished.
func TestCallInterruptStaleHandle(t *testing.T) {
	if st := int(bioxenGoCallInterrupt(1 << 40)); st != 3 || !strings.Contains(testErrmsg(), "no running call") {
		t.Fatalf("unknown call: %d %q", st, testErrmsg())
	}
}
