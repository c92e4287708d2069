//go:build linux

package packages

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// luarocks runs confined: it may write its tree, its own directory and
// /tmp, and read the system's directories, but nothing else of the user's
// (a hostile rock wrote outside the environment, or copied a file of the
// user's into it). The rule checked here on cat and touch, outside /tmp.
func TestLuarocksConfinement(t *testing.T) {
	if landlockABI() < 1 {
		t.Skip("the kernel has no Landlock")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Outside /tmp (which luarocks may use): next to the test.
	outside, err := os.MkdirTemp(wd, ".confinement-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(outside) })
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	own := t.TempDir()
	c := luarocksConfinement{rw: []string{own}, ro: systemReadDirs}
	run := func(name string, args ...string) error {
		return runConfined(exec.Command(name, args...), c)
	}
	if err := run("cat", secret); err == nil {
		t.Error("read a file outside the confinement")
	}
	if err := run("touch", filepath.Join(outside, "written")); err == nil {
		t.Error("wrote a file outside the confinement")
	}
	if err := run("touch", filepath.Join(own, "written")); err != nil {
		t.Errorf("cannot write its own directory: %v", err)
	}
	if err := run("sh", "-c", "echo ok > /dev/null"); err != nil {
		t.Errorf("cannot run a shell writing /dev/null: %v", err)
	}
	// The host's environment and command line (secrets) are not readable
	// through /proc, nor are other programs' shared memory files.
	for _, f := range []string{fmt.Sprintf("/proc/%d/environ", os.Getpid()), fmt.Sprintf("/proc/%d/cmdline", os.Getpid())} {
		if err := run("cat", f); err == nil {
			t.Errorf("read %s", f)
		}
	}
	if err := run("ls", "/dev/shm"); err == nil {
		t.Error("listed /dev/shm")
	}
	if err := run("head", "-c", "16", "/dev/urandom"); err != nil {
		t.Errorf("cannot read /dev/urandom: %v", err)
	}
	// The test's own thread is not confined.
	if _, err := os.ReadFile(secret); err != nil {
		t.Errorf("the caller was confined too: %v", err)
	}
}
