package sshsession

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

// hostile are command strings that break naive quoting.
var hostile = []string{
	"",
	"plain",
	"it's",
	"'",
	"''",
	`'\''`,
	`"double" and \backslash\ and \'`,
	"$(touch /tmp/bioxen-pwned) `touch /tmp/bioxen-pwned2` ${HOME} $$ $0 $@",
	"a\nb\n\nc; echo injected",
	"tab\there; semi; && || | & > < >> *  ? [a] ~ # !x",
	"unicode ✓ ünïcödé \x01\x7f",
	"'; echo injected; '",
	"\"; echo injected; \"",
	"end with backslash\\",
}

func TestShellQuote(t *testing.T) {
	for _, h := range hostile {
		q, err := ShellQuote(h)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", "printf %s "+q).Output()
		if err != nil || string(out) != h {
			t.Fatalf("ShellQuote(%q) = %s: sh printed %q, %v", h, q, out, err)
		}
	}
	if _, err := ShellQuote("a\x00b"); core.CodeOf(err) != core.ErrInvalid {
		t.Fatalf("NUL: %v", err)
	}
}

func TestRemoteKillWrap(t *testing.T) {
	w, err := RemoteKillWrap("echo 'hi'", 1500*time.Millisecond)
	if err != nil || w != `exec timeout -s KILL 2 sh -c 'echo '\''hi'\'''` {
		t.Fatalf("got %s, %v", w, err)
	}
	if w, _ := RemoteKillWrap("x", time.Nanosecond); !strings.HasPrefix(w, "exec timeout -s KILL 1 sh -c ") {
		t.Fatalf("rounding: %s", w)
	}
	if w, _ := RemoteKillWrap("x", 3*time.Second); !strings.HasPrefix(w, "exec timeout -s KILL 3 ") {
		t.Fatalf("whole seconds: %s", w)
	}
	for _, bad := range []struct {
		cmd string
		d   time.Duration
	}{{"a\x00b", time.Second}, {"x", 0}, {"x", -time.Second}} {
		if _, err := RemoteKillWrap(bad.cmd, bad.d); core.CodeOf(err) != core.ErrInvalid {
			t.Fatalf("RemoteKillWrap(%q, %v): %v", bad.cmd, bad.d, err)
		}
	}
	// The wrapped command, run by a POSIX shell as sshd runs it, executes cmd
	// exactly: each hostile string is printed back unchanged.
	if _, err := exec.LookPath("timeout"); err != nil {
		t.Skip("timeout(1) not installed")
	}
	for _, h := range hostile {
		q, _ := ShellQuote(h)
		w, err := RemoteKillWrap("printf %s "+q, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, shell := range []string{"sh", "bash"} {
			if _, err := exec.LookPath(shell); err != nil {
				continue
			}
			out, err := exec.Command(shell, "-c", w).Output()
			if err != nil || string(out) != h {
				t.Fatalf("%s -c %s: %q, %v", shell, w, out, err)
			}
		}
	}
	// The timer works: a 1 s wrapper kills sleep 30.
	w, _ = RemoteKillWrap("sleep 30", time.Second)
	start := time.Now()
	err = exec.Command("sh", "-c", w).Run()
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("wrapper did not kill: %v after %v", err, time.Since(start))
	}
}
