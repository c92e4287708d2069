package luaproc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"libbioxen/core"
)

// TestHoldFileFollowsNoLink: holdFile (the host's side of a K frame)
// takes hold of a path with no symbolic link in any component, creates a
// missing file only when asked, and refuses an existing one with "x".
func TestHoldFileFollowsNoLink(t *testing.T) {
	if !openat2Works() {
		t.Skip("openat2 or /proc is not usable here")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		how  int64
		want error
	}{
		{file, 0, nil},
		{file, holdCreate | holdUpdate, nil},
		{filepath.Join(dir, "link"), 0, unix.ELOOP},
		{filepath.Join(dir, "link"), holdCreate, unix.ELOOP},
		{filepath.Join(dir, "dirlink", "f"), 0, unix.ELOOP},
		{filepath.Join(dir, "missing"), 0, unix.ENOENT},
		{file, holdCreate | holdExcl, unix.EEXIST},
		{"f", 0, unix.EINVAL},
		{file + "\x00x", 0, unix.EINVAL},
		{"/" + strings.Repeat("a", 4096), 0, unix.EINVAL},
	} {
		h, err := holdFile(c.path, c.how)
		if !errors.Is(err, c.want) || (err == nil) != (h.fd >= 0) || h.restore {
			t.Errorf("holdFile(%q, %d) = %+v, %v; want %v", c.path, c.how, h, err, c.want)
		}
		if err != nil {
			continue
		}
		// What the driver opens: the very file, read through /proc.
		data, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), h.fd))
		h.release()
		if rerr != nil || string(data) != "data" {
			t.Errorf("holdFile(%q): read %q, %v", c.path, data, rerr)
		}
	}
	// A missing file is created, empty, when the mode creates it.
	made := filepath.Join(dir, "new")
	h, err := holdFile(made, holdCreate)
	if err != nil {
		t.Fatal(err)
	}
	h.release()
	if fi, err := os.Lstat(made); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("created %v, %v", fi, err)
	}
}

// TestHoldFileUnderAUmask: a file made under a umask that takes the
// owner's write bit away (0277: mode 0400) could not be opened for
// writing through /proc, where fopen by name writes it. It is made
// readable and writable by its owner while held, and gets its mode when
// released. A file that exists keeps its mode.
func TestHoldFileUnderAUmask(t *testing.T) {
	if !openat2Works() {
		t.Skip("openat2 or /proc is not usable here")
	}
	dir := t.TempDir()
	old := unix.Umask(0o277)
	defer unix.Umask(old)
	mode := func(p string) os.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	made := filepath.Join(dir, "new")
	h, err := holdFile(made, holdCreate)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(made); m != 0o600 || !h.restore || h.mode != 0o400 {
		t.Errorf("held: mode %o, to be %o", m, h.mode)
	}
	h.release()
	if m := mode(made); m != 0o400 {
		t.Errorf("released: mode %o, want 400", m)
	}
	h, err = holdFile(made, holdCreate)
	if err != nil || h.restore || mode(made) != 0o400 {
		t.Errorf("an existing file: %+v, %v, mode %o", h, err, mode(made))
	}
	h.release()
	// Under umask 0777 the file ends with mode 0, as fopen makes it.
	unix.Umask(0o777)
	none := filepath.Join(dir, "none")
	if h, err = holdFile(none, holdCreate); err != nil {
		t.Fatal(err)
	}
	h.release()
	if m := mode(none); m != 0 {
		t.Errorf("umask 0777: mode %o, want 0", m)
	}
}

// TestHeldAnswer: the host's one-line answer to a K frame.
func TestHeldAnswer(t *testing.T) {
	if got, want := string(heldAnswer(7, os.Getpid(), 12, nil)), fmt.Sprintf("K 7 %d 12\n", os.Getpid()); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got := string(heldAnswer(8, os.Getpid(), -1, unix.ENOENT))
	msg := hex.EncodeToString([]byte("No such file or directory"))
	if want := "K 8 - 2 " + msg + "\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestHeldClosedAfterTheInterpreterIsGone: a call that ends without the
// driver's next frame (past its deadline, cancelled, out of CPU time,
// broken) may end while the driver has the answer to its K frame and has
// not opened /proc/<pid>/fd/<n> yet. The host closed n, then killed the
// interpreter: in between, a descriptor the host opened meanwhile (a file
// another VM holds, one of the host's own) took number n, and the open led
// to it. The held descriptors are closed once the interpreter is gone.
// (Here the driver is stopped with a descriptor held for it, and the
// output queued after an interrupt is handed to Output between the loop's
// end and the kill.)
func TestHeldClosedAfterTheInterpreterIsGone(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openSandboxed(t, interp, core.Options{AllowedPaths: []string{t.TempDir()}})
		mustExec(t, e, "return 1", execOpts{})
		pid := e.Pid()
		held := -1
		var late []string
		req := &core.Request{Code: []byte("print('start') while true do end"), ChunkName: "=input"}
		req.Output = func(s core.Stream, p []byte) {
			if held < 0 && strings.Contains(string(p), "start") {
				fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Error(err)
					return
				}
				held = fd
				e.held = append(e.held, heldFile{fd: fd}) // as a K frame's answer
				unix.Kill(pid, unix.SIGSTOP)
				e.Interrupt() // output from now on is handed on at the end
				go func() {
					// raw output, with no frame after the K answer
					time.Sleep(200 * time.Millisecond)
					if f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/1", pid), os.O_WRONLY, 0); err == nil {
						f.WriteString("late\n")
						f.Close()
					}
				}()
				return
			}
			if strings.Contains(string(p), "late") {
				late = append(late, string(p))
				if _, err := unix.FcntlInt(uintptr(held), unix.F_GETFD, 0); err != nil && unix.Kill(pid, 0) == nil {
					t.Errorf("the held descriptor was closed while the interpreter ran: %v", err)
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := e.Exec(ctx, req); err == nil {
			t.Fatal("the call ended before its deadline")
		}
		if held < 0 || len(late) == 0 {
			t.Fatalf("held %d, late output %q", held, late)
		}
		if len(e.held) != 0 {
			t.Errorf("still held: %v", e.held)
		}
	})
}

// TestHeldUnusableFallsBackToNames: an interpreter that may not open
// /proc/<host pid>/fd (a security module's policy; mocked here by
// answering with a pid that does not exist, since no such policy can be
// set up on this machine) opens files by name, as where the host cannot
// hold them, rather than failing every open with "Permission denied".
func TestHeldUnusableFallsBackToNames(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		if interp == "luajit" {
			t.Skip("LuaJIT opens through its own /proc/self/fd")
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		e := openSandboxed(t, interp, core.Options{AllowedPaths: []string{dir}})
		e.holdPID = 1<<31 - 1
		code := strings.ReplaceAll(`local f = assert(io.open(DIR .. "/a.txt")) local s = f:read("*a") f:close()
			local w = assert(io.open(DIR .. "/b.txt", "w")) w:write("new") w:close()
			return s, dofile ~= nil`, "DIR", strconv.Quote(dir))
		for i := 0; i < 2; i++ {
			r := mustExec(t, e, code, execOpts{})
			if string(r.Values) != `["data",true]` {
				t.Fatalf("call %d: %s %q", i, r.Values, r.ErrorMessage)
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "b.txt")); err != nil || string(b) != "new" {
			t.Errorf("b.txt: %q %v", b, err)
		}
	})
}

// TestHostHoldsOnlyInsideThePolicy: the host takes hold of a path for a K
// frame only where the driver's own check lets it open: a K frame that
// did not come from that check (forged by a trusted chunk here, as a
// desynchronized stream could let a sandboxed one) made the host create
// a file anywhere it could write. The chunk writes the frame to the
// driver's frame pipe itself.
func TestHostHoldsOnlyInsideThePolicy(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		outside := filepath.Join(t.TempDir(), "forged")
		e := openEngine(t, interp, core.Limits{})
		code := strings.ReplaceAll(`local p = PATH
			local f = assert(io.open("/dev/fd/4", "w"))
			f:write("K 999 1 ", #p, "\n", p) f:close()
			return 1`, "PATH", strconv.Quote(outside))
		mustExec(t, e, code, execOpts{})
		if r := mustExec(t, e, "return 2", execOpts{}); string(r.Values) != "[2]" {
			t.Fatalf("the call after: %s %q", r.Values, r.ErrorMessage)
		}
		if _, err := os.Lstat(outside); !os.IsNotExist(err) {
			t.Errorf("the host made %s (%v)", outside, err)
		}
	})
	pol := &policy{allowed: []string{"/a"}, readOnly: []string{"/r"}, modules: []string{"/m"}}
	for _, c := range []struct {
		path string
		how  int64
		want bool
	}{
		{"/a/x", holdCreate | holdUpdate, true},
		{"/a", 0, true},
		{"/ab/x", 0, false},
		{"/r/x", 0, true},
		{"/r/x", holdCreate, false},
		{"/r/x", holdUpdate, false},
		{"/m/x", 0, true},
		{"/m/x", holdCreate, false},
		{"/etc/passwd", 0, false},
		{"/dev/null", 0, true}, // the driver's probe
		{"/dev/null", holdUpdate, false},
	} {
		if got := pol.mayHold(c.path, c.how); got != c.want {
			t.Errorf("mayHold(%q, %d) = %v", c.path, c.how, got)
		}
	}
	if (*policy)(nil).mayHold("/a/x", 0) {
		t.Error("a trusted VM's host held a path")
	}
}
