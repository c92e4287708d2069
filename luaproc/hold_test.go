package luaproc

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
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
		if !errors.Is(err, c.want) || (err == nil) != (h.fd >= 0) || h.mode != 0 {
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
	if m := mode(made); m != 0o600 || h.mode != 0o400 {
		t.Errorf("held: mode %o, to be %o", m, h.mode)
	}
	h.release()
	if m := mode(made); m != 0o400 {
		t.Errorf("released: mode %o, want 400", m)
	}
	h, err = holdFile(made, holdCreate)
	if err != nil || h.mode != 0 || mode(made) != 0o400 {
		t.Errorf("an existing file: %+v, %v, mode %o", h, err, mode(made))
	}
	h.release()
}

// TestHeldAnswer: the host's one-line answer to a K frame.
func TestHeldAnswer(t *testing.T) {
	if got, want := string(heldAnswer(7, 12, nil)), fmt.Sprintf("K 7 %d 12\n", os.Getpid()); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got := string(heldAnswer(8, -1, unix.ENOENT))
	msg := hex.EncodeToString([]byte("No such file or directory"))
	if want := "K 8 - 2 " + msg + "\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
