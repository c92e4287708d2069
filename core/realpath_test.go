package core

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRealPath: existing paths resolve as realpath(3); a file to be created
// resolves through its directory; a dangling link resolves to its target
// (relative or absolute, through chains), so a link inside an allowed
// directory cannot create a file outside it; a link loop is refused.
func TestRealPath(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(root, "in"), filepath.Join(root, "out")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "exists"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"dangling":  filepath.Join(out, "created"),
		"relative":  "../out/created2",
		"chain":     "dangling",
		"dirlink":   out,
		"loop1":     "loop2",
		"loop2":     "loop1",
		"toexists":  filepath.Join(out, "exists"),
		"nodirlink": filepath.Join(root, "nodir", "x"),
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(in, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ path, want string }{
		{filepath.Join(in, "new.txt"), filepath.Join(in, "new.txt")},
		{filepath.Join(in, "dangling"), filepath.Join(out, "created")},
		{filepath.Join(in, "relative"), filepath.Join(out, "created2")},
		{filepath.Join(in, "chain"), filepath.Join(out, "created")},
		{filepath.Join(in, "dirlink", "x"), filepath.Join(out, "x")},
		{filepath.Join(in, "toexists"), filepath.Join(out, "exists")},
		{filepath.Join(in, "loop1"), ""},
		{filepath.Join(in, "nodirlink"), filepath.Join(root, "nodir", "x")},
		{filepath.Join(root, "nodir", "y"), filepath.Join(root, "nodir", "y")},
	} {
		if got := RealPath(c.path); got != c.want {
			t.Errorf("RealPath(%s) = %q, want %q", c.path, got, c.want)
		}
	}
}
