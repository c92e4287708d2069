// Package fsrace is for tests of a sandbox's check-then-open races: it
// swaps a name between a regular file and a symbolic link, as another
// process with write access to an allowed directory could.
package fsrace

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// Race sets up a race for test t: a file named base in a new allowed
// directory, holding inside, that is swapped again and again with a
// symbolic link to a file outside it holding secret, until t ends. It
// returns the allowed directory, the swapped name and the file outside.
func Race(t testing.TB, base string, inside, secret []byte) (allowed, name, outside string) {
	t.Helper()
	allowed = t.TempDir()
	outside = filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	name = filepath.Join(allowed, base)
	if err := os.WriteFile(name, inside, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(SwapWithLink(name, outside, inside))
	return allowed, name, outside
}

// SwapWithLink makes name, again and again until the returned stop is
// called, a regular file holding content, then a symbolic link to target
// (each put in place by a rename, so name always exists). stop returns
// once the swapping has ended.
func SwapWithLink(name, target string, content []byte) (stop func()) {
	var done atomic.Bool
	ended := make(chan struct{})
	dir := filepath.Dir(name)
	go func() {
		defer close(ended)
		lnk, reg := filepath.Join(dir, "lnk.tmp"), filepath.Join(dir, "reg.tmp")
		for !done.Load() {
			os.Remove(lnk)
			if os.Symlink(target, lnk) == nil {
				os.Rename(lnk, name)
			}
			if os.WriteFile(reg, content, 0o600) == nil {
				os.Rename(reg, name)
			}
		}
	}()
	return func() { done.Store(true); <-ended }
}
