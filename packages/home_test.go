package packages

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"libbioxen/core"
)

// A relative home was used as given: luarocks runs in a directory of its
// own, so it installed into that directory (removed afterwards) and the
// install reported success with nothing in the environment.
func TestRelativeHomeInstallsIntoTheHome(t *testing.T) {
	repo := buildRepo(t)
	u, err := NormalizeRepoURL(repo)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	m, err := Open(Config{Home: "home", DefaultRepos: []Repo{{Name: "r", URL: u}}})
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(m.Home()) {
		t.Errorf("Home() = %q, not absolute", m.Home())
	}
	env, err := m.Env("default", true)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := env.Install(context.Background(), "hello", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(inst) == 0 {
		t.Errorf("install reported nothing installed")
	}
	if _, err := os.Stat(filepath.Join("home", "envs", "default", "tree", "share", "lua", "5.1", "hello.lua")); err != nil {
		t.Errorf("hello.lua is not in the environment: %v", err)
	}
}

// package.path and package.cpath are ';'-separated templates in which '?'
// stands for the module name: a tree under a home holding either took
// installs that no require could ever find.
func TestHomeThatPackagePathCannotHoldIsRefused(t *testing.T) {
	for _, bad := range []string{"a;b", "a?b"} {
		m, err := Open(Config{Home: filepath.Join(t.TempDir(), bad)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Env("default", true); core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("home %q: Env: %v, want ErrInvalid", bad, err)
		}
		if _, err := os.Stat(filepath.Join(m.Home(), "envs", "default")); err == nil {
			t.Errorf("home %q: the environment was created", bad)
		}
	}
}

// os.WriteFile keeps the mode of a file that exists: a lock file written
// over one of mode 0644 stayed 0644, though lock files are written 0600.
func TestLockFileOverwrittenIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env.lock")
	if err := os.WriteFile(path, []byte("old, longer than the new content, which must replace it all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteLockFile(path, &LockFile{Format: 1}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if lf, err := ReadLockFile(path); err != nil || lf.Format != 1 || len(lf.Packages) != 0 {
		t.Errorf("read back: %+v, %v", lf, err)
	}
}

// repos.json was read with os.ReadFile: a FIFO there blocked Open (every
// package operation) until something wrote to it.
func TestReposFileMustBeRegular(t *testing.T) {
	home := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(home, "repos.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Open(Config{Home: home})
		done <- err
	}()
	select {
	case err := <-done:
		if core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("Open with a FIFO as repos.json: %v, want ErrInvalid", err)
		}
	case <-time.After(20 * time.Second):
		// Unblock the reader so the test ends.
		f, _ := os.OpenFile(filepath.Join(home, "repos.json"), os.O_WRONLY, 0)
		f.Write([]byte("[]"))
		f.Close()
		<-done
		t.Fatal("Open blocked on a FIFO as repos.json")
	}
}

// The entries of repos.json (a file a user may edit) were used unchecked:
// an unsupported scheme, a null entry or an empty URL became a server
// luarocks was given, and a plain path was handed to luarocks without the
// confinement's read access to it, so no install from it could work.
func TestReposFileEntriesAreChecked(t *testing.T) {
	for _, bad := range []string{`[{"name":"a","url":"ftp://x"}]`, `[null]`, `[{"name":"a","url":""}]`, `[{"name":"a\u0001","url":"/srv"}]`} {
		home := t.TempDir()
		os.WriteFile(filepath.Join(home, "repos.json"), []byte(bad), 0o600)
		if _, err := Open(Config{Home: home}); core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "repos.json") {
			t.Errorf("repos.json %s: %v, want ErrInvalid naming the file", bad, err)
		}
	}
	repo := buildRepo(t)
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, "repos.json"), []byte(`[{"name":"plain","url":"`+repo+`"}]`), 0o600)
	m, err := Open(Config{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	env, err := m.Env("default", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Install(context.Background(), "hello", ""); err != nil {
		t.Errorf("install from a plain path in repos.json: %v", err)
	}
}
