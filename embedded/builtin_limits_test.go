package embedded

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"libbioxen/core"
)

// execCounted runs code on vm (30 s timeout, an error fails the test) and
// returns its values and what the process allocated meanwhile.
func execCounted(t *testing.T, vm *core.VM, code string) (string, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{Timeout: 30 * time.Second})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("%s: %v", code, err)
	}
	return string(res.Values), after.TotalAlloc - before.TotalAlloc
}

// TestGsubReplacementCapped: the cap on gsub's result held only between
// matches, so one match's expansion was unbounded: 2048 "%0" of a 1 MiB
// match asked for 2 GiB (51 s, 6 GB of heap, then the error). The
// expansion is counted before it is written: the error comes at once.
func TestGsubReplacementCapped(t *testing.T) {
	vm := openVM(t, core.Options{})
	cases := []struct{ code, want string }{
		// 64 KiB times 8192: 512 MiB for one match.
		{`local s = string.rep("x", 2^16) return pcall(string.gsub, s, "^.*$", string.rep("%0", 2^13))`,
			`[false,"input:1: string.gsub: resulting string too large (limit 268435456 bytes)"]`},
		// Captures, and literal text between them.
		{`local s = string.rep("x", 2^16) return pcall(string.gsub, s, "^(.*)$", string.rep("<%1>", 2^13))`,
			`[false,"input:1: string.gsub: resulting string too large (limit 268435456 bytes)"]`},
		// Errors of the replacement string are as before.
		{`return pcall(string.gsub, "abc", "b", "%2")`, `[false,"input:1: invalid capture index %2"]`},
		{`return pcall(string.gsub, "abc", "b", "x%")`, `[false,"input:1: invalid use of '%' in replacement string"]`},
		{`return string.gsub("abc", "(b)()", "[%0|%1|%2|%%]")`, `["a[b|b|3|%]c",1]`},
	}
	for _, c := range cases {
		got, alloc := execCounted(t, vm, c.code)
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.code, got, c.want)
		}
		// The subject and the replacement string, not the 256 MiB the
		// result may grow to (once several times that in regrowth).
		if alloc > 96<<20 {
			t.Errorf("%s: allocated %d MiB", c.code, alloc>>20)
		}
	}
}

// TestFormatQuoteCapped: %q was checked against the cap after it had
// written its argument, escaped: up to four times the cap (a string of
// NULs), 2.4 GB of heap for one of 256 MiB. Its length is counted first.
func TestFormatQuoteCapped(t *testing.T) {
	vm := openVM(t, core.Options{})
	cases := []struct{ code, want string }{
		{`local s = string.rep("\0", 2^26 + 1) return pcall(string.format, "%q", s)`,
			`[false,"input:1: string.format: resulting string too large (limit 268435456 bytes)"]`},
		{`local s = string.rep("\0\0\n", 2^25) return pcall(string.format, "x%qy", s)`,
			`[false,"input:1: string.format: resulting string too large (limit 268435456 bytes)"]`},
		{`local s = string.rep("a", 2^26) return pcall(string.format, "%s%s%s%s%s", s, s, s, s, s)`,
			`[false,"input:1: string.format: resulting string too large (limit 268435456 bytes)"]`},
		{`return string.format("%q|%5s|%%|%q", 'a"b\\c\n\r\0d', "x", "")`, `["\"a\\\"b\\\\c\\\n\\r\\000d\"|    x|%|\"\""]`},
		{`local s = string.rep("\0", 2^22) return #string.format("%q", s)`, fmt.Sprint("[", 4<<22+2, "]")},
	}
	for i, c := range cases {
		got, alloc := execCounted(t, vm, c.code)
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.code, got, c.want)
		}
		if i < 2 && alloc > 160<<20 { // the argument, not 256 MiB and its regrowth
			t.Errorf("%s: allocated %d MiB", c.code, alloc>>20)
		}
	}
}

// TestRepCountOverflow: string.rep checked len(s) * n against the cap in
// int64, which wraps: 64 KiB times 2^48 + 32 passed as 2 MiB and made a
// 2 MiB string, and times 2^48 passed as 0 and reached strings.Repeat,
// whose panic became the error ("strings: Repeat output length overflow").
func TestRepCountOverflow(t *testing.T) {
	vm := openVM(t, core.Options{})
	const tooLarge = `"input:1: string.rep: resulting string too large (limit 268435456 bytes)"`
	for _, n := range []string{"2^48", "2^48 + 32", "2^62 + 1", "2^63 - 1024"} {
		code := `local s = string.rep("a", 2^16) local ok, r = pcall(string.rep, s, ` + n + `) return ok, ok and #r or r`
		if got, _ := execCounted(t, vm, code); got != "[false,"+tooLarge+"]" {
			t.Errorf("%s: got %s", code, got)
		}
	}
	if got, _ := execCounted(t, vm, `return #string.rep("abc", 2^20), #string.rep("a", 2^28)`); got != "[3145728,268435456]" {
		t.Errorf("got %s", got)
	}
}
