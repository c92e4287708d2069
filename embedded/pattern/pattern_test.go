package pattern

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// describe runs one Find and renders the result like "1-3 'b' @2", or
// "nil", or "error: msg".
func describe(s, pat string, init int, anchor bool) string {
	var m Matcher
	ok, err := m.Find(Compile(pat, anchor), s, init)
	if err != nil {
		return "error: " + err.Error()
	}
	if !ok {
		return "nil"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d-%d", m.Start(), m.End())
	for i := 0; i < m.NumCaptures(); i++ {
		c, err := m.Capture(i)
		switch {
		case err != nil:
			fmt.Fprintf(&b, " error: %v", err)
		case c.Position:
			fmt.Fprintf(&b, " @%d", c.Start)
		default:
			fmt.Fprintf(&b, " '%s'", s[c.Start:c.End])
		}
	}
	return b.String()
}

func TestFind(t *testing.T) {
	cases := []struct {
		s, pat string
		want   string
	}{
		// literals and '.'
		{"hello", "ll", "2-4"},
		{"hello", "lo", "3-5"},
		{"hello", "xyz", "nil"},
		{"hello", "", "0-0"},
		{"", "", "0-0"},
		{"", "a", "nil"},
		{"hello", "h.l", "0-3"},
		{"a\x00b", ".", "0-1"},
		{"a\x00b", "%z", "1-2"},
		{"a\x00b", "%Z+", "0-1"},

		// classes, C locale
		{"x1 y", "%a", "0-1"},
		{"x1 y", "%d", "1-2"},
		{"x1 y", "%s", "2-3"},
		{"x1\ty", "%c", "2-3"},
		{"\x7f", "%c", "0-1"},
		{"ab,c", "%p", "2-3"},
		{"aB", "%u", "1-2"},
		{"Ab", "%l", "1-2"},
		{"__a1", "%w+", "2-4"},
		{"fF9g", "%x+", "0-3"},
		{" ~", "%g", "1-2"},
		{"é", "%a", "nil"}, // bytes, not runes
		{"é", "%A%A", "0-2"},
		{"a1 ", "%A", "1-2"},
		{"1a ", "%D", "1-2"},
		{" a", "%S", "1-2"},
		{"a,", "%P", "0-1"},
		{"aB", "%U", "0-1"},
		{"Ab", "%L", "0-1"},
		{"a_", "%W", "1-2"},
		{"fg", "%X", "1-2"},
		{"x ", "%G", "1-2"},
		{"a\x01", "%C", "0-1"},
		{"a.b", "%.", "1-2"},
		{"50%", "%%", "2-3"},
		{"q", "%q", "0-1"}, // not a class: the letter itself

		// sets
		{"xyzb", "[abc]", "3-4"},
		{"xyzb", "[a-c]", "3-4"},
		{"abc", "[^ab]", "2-3"},
		{"a]b", "[]]", "1-2"},
		{"]a", "[^]]", "1-2"},
		{"a-b", "[a-]", "0-1"},
		{"-", "[a-]", "0-1"},
		{"a-", "[%a-]+", "0-2"},
		{"x]", "[%]]", "1-2"},
		{"1a", "[%d]", "0-1"},
		{"1a", "[^%d]", "1-2"},
		{"b", "[c-a]", "nil"}, // empty range
		{"^", "[%^]", "0-1"},
		{"a^", "[b^]", "1-2"},

		// quantifiers
		{"aaab", "a*", "0-3"},
		{"baaa", "a*", "0-0"},
		{"baaa", "a+", "1-4"},
		{"aaab", "a-b", "0-4"},
		{"aaab", "a-", "0-0"},
		{"ab", "a?b", "0-2"},
		{"b", "a?b", "0-1"},
		{"<a><b>", "<.->", "0-3"},
		{"<a><b>", "<.*>", "0-6"},
		{"aaa", "a*a", "0-3"},
		{"aaa", "a-a", "0-1"},
		{"x = 1", "%s*=%s*", "1-4"},
		{"ab", "a**", "nil"},   // the second '*' is a literal '*'
		{"a*", "a**", "0-2"},   //
		{"+", "+", "0-1"},      // a quantifier with nothing to repeat is a literal
		{"a-b", "a%-b", "0-3"}, //

		// anchors
		{"aab", "^a", "0-1"},
		{"bab", "^a", "nil"},
		{"a^b", "a^b", "0-3"},
		{"ab$", "b$", "nil"},
		{"ab", "b$", "1-2"},
		{"a$b", "$b", "1-3"},
		{"a$b", "a$b", "0-3"},
		{"", "^$", "0-0"},
		{"x", "^$", "nil"},

		// captures
		{"key = value", "(%w+)%s*=%s*(%w+)", "0-11 'key' 'value'"},
		{"hello", "()ll()", "2-4 @2 @4"},
		{"abc", "((a)(b))", "0-2 'ab' 'a' 'b'"},
		{"abc", "(a)()(b)", "0-2 'a' @1 'b'"},
		{"abc", "()", "0-0 @0"},
		{"  x  ", "^%s*(.-)%s*$", "0-5 'x'"},
		{"abc", "(a", "0-1 error: unfinished capture"},

		// back references
		{"abcabc", "(abc)%1", "0-6 'abc'"},
		{"abcab", "(abc)%1", "nil"},
		{`say "hi" 'x'`, `(["'])(.-)%1`, `4-8 '"' 'hi'`},
		{"aa", "()%1", "nil"}, // a position capture matches nothing

		// %b
		{"f(a(b)c)d", "%b()", "1-8"},
		{"f(a(b)c", "%b()", "3-6"},
		{"''x'", "%b''", "0-2"},
		{"x", "%b()", "nil"},

		// %f
		{"THE (quick) fox", "%f[%a]%a+", "0-3"},
		{"the end", "%f[%a]%a+$", "4-7"},
		{"the end", "%f[%z]", "7-7"},
		{"the end", "%f[%Z]", "0-0"},
		{"aXb", "%f[%u]", "1-1"},
		{"ab", "%f[^a]", "1-1"},

		// errors, raised when matching reaches them
		{"abc", "%", "error: malformed pattern (ends with '%')"},
		{"abc", "a%", "error: malformed pattern (ends with '%')"},
		{"abc", "[a", "error: malformed pattern (missing ']')"},
		{"abc", "[]", "error: malformed pattern (missing ']')"},
		{"abc", "[^]", "error: malformed pattern (missing ']')"},
		{"abc", "[%", "error: malformed pattern (missing ']')"},
		{"abc", "[a-", "error: malformed pattern (missing ']')"},
		{"abc", "%f", "error: missing '[' after '%f' in pattern"},
		{"abc", "%fa", "error: missing '[' after '%f' in pattern"},
		{"abc", "%f[a", "error: malformed pattern (missing ']')"},
		{"abc", "%b", "error: malformed pattern (missing arguments to '%b')"},
		{"abc", "%b(", "error: malformed pattern (missing arguments to '%b')"},
		{"abc", "%1", "error: invalid capture index %1"},
		{"abc", "(%1)", "error: invalid capture index %1"},
		{"abc", "(a)%2", "error: invalid capture index %2"},
		{"abc", "%0", "error: invalid capture index %0"},
		{"abc", "a)", "error: invalid pattern capture"},
		{"abc", strings.Repeat("(", 33) + "a", "error: too many captures"},
		{strings.Repeat("a", 300), strings.Repeat("a?", 200), "error: pattern too complex"},
		{strings.Repeat("a", 300), strings.Repeat("a?", 199), "0-199"},
		{"abc", strings.Repeat("a?", 200), "0-1"}, // recursion only where a? matched
		{"xyz", "a[", "nil"}, // never reached
		{"xyz", "x)", "error: invalid pattern capture"},
		{"", "a)", "nil"},
	}
	for _, c := range cases {
		if got := describe(c.s, c.pat, 0, true); got != c.want {
			t.Errorf("Find(%q, %q) = %s, want %s", c.s, c.pat, got, c.want)
		}
	}
}

func TestInitAndAnchor(t *testing.T) {
	cases := []struct {
		s, pat string
		init   int
		anchor bool
		want   string
	}{
		{"abab", "ab", 1, true, "2-4"},
		{"abab", "ab", 4, true, "nil"},
		{"abab", "", 4, true, "4-4"},
		{"abab", "", 5, true, "nil"}, // past the end
		{"abab", "", -1, true, "nil"},
		{"abab", "^ab", 1, true, "nil"},
		{"abab", "^ab", 2, true, "2-4"},
		{"abab", "%a", 3, true, "3-4"},
		{"a^b", "^b", 0, false, "1-3"}, // gmatch: '^' is a character
		{"ab", "^b", 0, false, "nil"},
		{"abab", "^(b)", 1, true, "1-2 'b'"},
	}
	for _, c := range cases {
		if got := describe(c.s, c.pat, c.init, c.anchor); got != c.want {
			t.Errorf("Find(%q, %q, %d, anchor=%v) = %s, want %s", c.s, c.pat, c.init, c.anchor, got, c.want)
		}
	}
}

func TestCaptureAPI(t *testing.T) {
	var m Matcher
	if ok, err := m.Find(Compile("b+", true), "abbc", 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if c, err := m.Capture(0); err != nil || c != (Capture{Start: 1, End: 3}) {
		t.Errorf("Capture(0) without captures = %+v, %v; want the whole match", c, err)
	}
	if _, err := m.Capture(1); err == nil || err.Error() != "invalid capture index %2" {
		t.Errorf("Capture(1) = %v", err)
	}
	var pe *Error
	if _, err := m.Find(Compile("%", true), "x", 0); !errors.As(err, &pe) {
		t.Errorf("a malformed pattern gives %T, want *Error", err)
	}
}

func TestNoAllocations(t *testing.T) {
	s := strings.Repeat("key = value, ", 100)
	for _, pat := range []string{"(%w+)%s*=%s*(%w+)", "%a+", "value", "%f[%w]%w+", "(.-),"} {
		p := Compile(pat, true)
		var m Matcher
		allocs := testing.AllocsPerRun(20, func() {
			for pos := 0; pos < len(s); pos = m.End() + 1 {
				if ok, _ := m.Find(p, s, pos); !ok {
					break
				}
			}
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocations per scan", pat, allocs)
		}
	}
}

// A catastrophic pattern stops soon after its context is cancelled. The
// machine may be shared (a busy loop here sometimes sees its thread
// descheduled for tens of milliseconds): the best of a few tries counts.
func TestContextStopsMatching(t *testing.T) {
	s := strings.Repeat("a", 100_000)
	p := Compile(strings.Repeat("a*", 30)+"b", true)
	best := time.Hour
	for try := 0; try < 5 && best > 10*time.Millisecond; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		m := Matcher{Context: ctx}
		start := time.Now()
		ok, err := m.Find(p, s, 0)
		best = min(best, time.Since(start)-20*time.Millisecond)
		cancel()
		if ok || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Find = %v, %v; want the context's error", ok, err)
		}
		// The matcher is reusable afterwards.
		m.Context = nil
		if ok, err := m.Find(Compile("a+", true), "baa", 0); !ok || err != nil || m.End() != 3 {
			t.Fatalf("after a stop: %v %v %d", ok, err, m.End())
		}
	}
	if best > 10*time.Millisecond {
		t.Errorf("Find returned %v after the deadline (best of 5)", best)
	}
}

// countingContext's Err fails from its n-th call on.
type countingContext struct {
	context.Context
	calls, n int
}

var errStop = errors.New("stop")

func (c *countingContext) Err() error {
	c.calls++
	if c.calls >= c.n {
		return errStop
	}
	return nil
}

// The matcher polls regularly and stops at the first poll that fails.
func TestPolling(t *testing.T) {
	s := strings.Repeat("a", 10_000)
	for _, pat := range []string{strings.Repeat("a*", 10) + "b", strings.Repeat("a-", 10) + "b", "(a*)*b", strings.Repeat("(a?)", 30) + "b"} {
		ctx := &countingContext{Context: context.Background(), n: 50}
		m := Matcher{Context: ctx}
		if _, err := m.Find(Compile(pat, true), s, 0); err != errStop {
			t.Errorf("%q: %v, want the context's error", pat, err)
		}
		if ctx.calls != ctx.n {
			t.Errorf("%q: Err called %d times, want %d", pat, ctx.calls, ctx.n)
		}
	}
}

func FuzzFind(f *testing.F) {
	f.Add("hello world", "(%w+) (%w+)", 0)
	f.Add("f(a(b)c)d", "%b()%f[%a]", 1)
	f.Fuzz(func(t *testing.T, s, pat string, init int) {
		if init < 0 || init > len(s) || len(s) > 64 || len(pat) > 16 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		m := Matcher{Context: ctx}
		ok, err := m.Find(Compile(pat, true), s, init)
		if ok && (m.Start() < init || m.End() < m.Start() || m.End() > len(s)) {
			t.Fatalf("bad match %d-%d", m.Start(), m.End())
		}
		_ = err
	})
}
