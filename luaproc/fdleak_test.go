//go:build linux

package luaproc

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"libbioxen/core"
)

// TestHostDescriptorsNotInherited: a descriptor the host holds without
// close-on-exec (a C host's pipe) must not reach the interpreter or its
// children, where it kept the pipe open: the host's reader of the pipe
// never saw EOF while the VM lived.
func TestHostDescriptorsNotInherited(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		var p [2]int
		if err := syscall.Pipe(p[:]); err != nil { // no O_CLOEXEC, as a C host's
			t.Fatal(err)
		}
		defer syscall.Close(p[0])
		wclosed := false
		defer func() {
			if !wclosed {
				syscall.Close(p[1])
			}
		}()
		e := openEngine(t, interp, core.Limits{})
		// A child the chunk leaves running, and a restarted interpreter.
		mustExec(t, e, `os.execute("sleep 30 </dev/null >/dev/null 2>&1 &")`, execOpts{})
		if err := syscall.Kill(e.Pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, err := execCode(e, "return 1", execOpts{}); err == nil {
			t.Fatal("no error after the interpreter was killed")
		}
		mustExec(t, e, `os.execute("sleep 30 </dev/null >/dev/null 2>&1 &")`, execOpts{})
		pipe, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", p[1]))
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", e.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", e.Pid(), fd.Name())); l == pipe {
				t.Errorf("the interpreter has the host's pipe as its fd %s", fd.Name())
			}
		}
		syscall.Close(p[1])
		wclosed = true
		// The read end reports EOF at once unless someone else holds the
		// write end.
		ts := syscall.NsecToTimespec(int64(5e9))
		fd := []pollFd{{fd: int32(p[0]), events: pollIn}}
		if n, err := ppoll(fd, &ts); err != nil || n != 1 {
			t.Fatalf("the host's pipe is still open elsewhere (poll: %d, %v)", n, err)
		}
		var b [1]byte
		if n, err := syscall.Read(p[0], b[:]); n != 0 || err != nil {
			t.Errorf("read %d, %v; want EOF", n, err)
		}
	})
}

// TestStartWithADescriptorNearTheLimit: the child's file list ran to the
// highest open descriptor plus fdSlack, and Go's fork moves its error pipe
// to the first number after the list: past the soft RLIMIT_NOFILE that
// failed with EBADF, so a host with a descriptor near its limit (or
// under valgrind, whose descriptors lie above the limit it shows: the C
// tests failed so) could start no interpreter.
func TestStartWithADescriptorNearTheLimit(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	high := 200
	if err := syscall.Dup3(0, high, syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(high)
	low := old
	low.Cur = uint64(high + 30)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		mustExec(t, e, "return 1", execOpts{})
	})
}
