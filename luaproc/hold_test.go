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
		fd, err := holdFile(c.path, c.how)
		if !errors.Is(err, c.want) || (err == nil) != (fd >= 0) {
			t.Errorf("holdFile(%q, %d) = %d, %v; want %v", c.path, c.how, fd, err, c.want)
		}
		if err != nil {
			continue
		}
		// What the driver opens: the very file, read through /proc.
		data, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd))
		unix.Close(fd)
		if rerr != nil || string(data) != "data" {
			t.Errorf("holdFile(%q): read %q, %v", c.path, data, rerr)
		}
	}
	// A missing file is created, empty, when the mode creates it.
	made := filepath.Join(dir, "new")
	fd, err := holdFile(made, holdCreate)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if fi, err := os.Lstat(made); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("created %v, %v", fi, err)
	}
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
