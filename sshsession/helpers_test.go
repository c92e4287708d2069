package sshsession

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
	"libbioxen/sshsession/sshtest"
)

// keyConfig is a Config for root with the server's client key, its host key
// in a known_hosts file, no agent and a fast keepalive.
func keyConfig(t testing.TB, s *sshtest.Server) Config {
	return Config{
		Host:              s.Host,
		Port:              s.Port,
		User:              "root",
		KeyFiles:          []string{s.ClientKeyFile},
		NoAgent:           true,
		KnownHostsFile:    s.WriteKnownHosts("known_hosts"),
		DialTimeout:       10 * time.Second,
		KeepaliveInterval: 5 * time.Second,
		Reconnect:         Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, Attempts: 5},
	}
}

func dial(t testing.TB, cfg Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func run(t testing.TB, c *Conn, cmd string) *ExecResult {
	t.Helper()
	res, err := c.Run(ctxT(t, 20*time.Second), cmd, nil, Limits{})
	if err != nil {
		t.Fatalf("Run(%q): %v", cmd, err)
	}
	return res
}

func wantCode(t testing.TB, err error, code core.Code, target error) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %v error, got nil", code)
	}
	if got := core.CodeOf(err); got != code {
		t.Fatalf("want code %v, got %v: %v", code, got, err)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("want errors.Is(%v), got %v", target, err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutinesSettle waits until the goroutine count is back to at most base.
func goroutinesSettle(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d goroutines, want <= %d\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// sshtestStart starts a test sshd with no ambient ssh-agent in the way.
func sshtestStart(t testing.TB) *sshtest.Server {
	t.Setenv("SSH_AUTH_SOCK", "")
	return sshtest.Start(t)
}
