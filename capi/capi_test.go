package main

import (
	"strings"
	"sync"
	"testing"
)

func TestExecTranslation(t *testing.T) {
	h, st := testOpen("", "", false)
	if st != 0 || h == 0 {
		t.Fatalf("open: %d %s", st, testErrmsg())
	}
	defer testClose(h)
	cases := []struct {
		code                   string
		flags                  int
		status                 int
		stdout, values, errPfx string
		rc                     int
	}{
		{"return 2 + 2", 1, 0, "4\n", "[4]", "", 0},
		{"return 2 + 2", 0, 0, "", "[4]", "", 0},
		{"print('a\\0b')", 0, 0, "a\x00b\n", "[]", "", 0},
		{"error('x')", 0, 0, "", "[]", "input:1: x", 1},
		{"", 0, 2, "", "", "", 0},
		{"return 1\x00", 0, 2, "", "", "", 0},
		// Unknown flag bits are refused, not ignored.
		{"return 1", 2, 2, "", "", "", 0},
		{"return 1", 99, 2, "", "", "", 0},
		{"return 1", -1, 2, "", "", "", 0},
	}
	for _, c := range cases {
		r, st := testExec(h, c.code, 0, c.flags)
		if st != c.status {
			t.Errorf("%q: status %d (%s), want %d", c.code, st, testErrmsg(), c.status)
			continue
		}
		if st != 0 {
			if r != nil || testErrmsg() == "" {
				t.Errorf("%q: failed call left result %v / empty message", c.code, r)
			}
			continue
		}
		if r.stdout != c.stdout || r.values != c.values || !strings.HasPrefix(r.message, c.errPfx) || r.rc != c.rc || r.success != boolToInt(c.rc == 0) {
			t.Errorf("%q: got %+v", c.code, r)
		}
	}
	if _, st := testExec(h, "while true do end", 30, 0); st != 4 {
		t.Errorf("timeout status %d", st)
	}
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestHandles(t *testing.T) {
	base := testLive()
	if _, st := testOpen("nope", "", false); st != 2 || !strings.Contains(testErrmsg(), "unknown engine") {
		t.Errorf("unknown engine: %d %q", st, testErrmsg())
	}
	h, _ := testOpen("", "", true)
	s, st := testSessionOpen(h)
	if st != 0 {
		t.Fatalf("session: %d %s", st, testErrmsg())
	}
	if testLive() != base+2 {
		t.Errorf("live handles %d, want %d", testLive(), base+2)
	}
	if st := testClose(h); st != 0 {
		t.Errorf("close: %d", st)
	}
	if testLive() != base {
		t.Errorf("closing the VM left %d handles", testLive()-base)
	}
	if st := testSessionClose(s); st != 3 {
		t.Errorf("session closed with its VM: status %d", st)
	}
	if st := testClose(h); st != 3 {
		t.Errorf("double close: %d", st)
	}
	if st := testClose(0); st != 0 {
		t.Errorf("close(0): %d", st)
	}
	nonPersistent, _ := testOpen("", "", false)
	defer testClose(nonPersistent)
	if _, st := testSessionOpen(nonPersistent); st != 2 {
		t.Errorf("session on a non-persistent VM: %d", st)
	}
}

func TestSessionTranslation(t *testing.T) {
	h, _ := testOpen("", "", true)
	defer testClose(h)
	s, _ := testSessionOpen(h)
	testSessionSend(s, "x = 1\nprint(x + 1)")
	testSessionWait(s)
	if out, st := testSessionRead(s, 1, 0); st != 0 || out != "2\n" {
		t.Errorf("read: %q %d", out, st)
	}
	if _, st := testSessionRead(s, 4, 0); st != 2 {
		t.Errorf("bad stream mask: %d", st)
	}
	if st := testSessionSend(s, "a\x00"); st != 2 {
		t.Errorf("NUL input: %d", st)
	}
}

func TestConcurrentCalls(t *testing.T) {
	h, _ := testOpen("", "", false)
	defer testClose(h)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				if _, st := testExec(h, "", 0, 0); st != 2 {
					t.Errorf("status %d", st)
				}
				if r, st := testExec(h, "return 1", 0, 0); st != 0 || r.values != "[1]" {
					t.Errorf("exec: %d %+v", st, r)
				}
			}
		}()
	}
	wg.Wait()
}
