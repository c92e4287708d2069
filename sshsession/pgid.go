package sshsession

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// The process-group header and the group kill: see "Killing" in doc.go.

// pgidHeader makes the prefix and the filter that strips its line.
func pgidHeader(downstream io.Writer) (prefix string, f *pgidFilter) {
	b := make([]byte, 8)
	rand.Read(b)
	tok := "bioxen-pgid-" + hex.EncodeToString(b) + ":"
	return "echo " + tok + "$$ >&2; ", &pgidFilter{w: downstream, token: []byte(tok), known: make(chan struct{})}
}

// pgidFilter passes stderr through to w, except the header line, which it
// looks for among the first few lines (a login shell's rc file may print
// before it).
type pgidFilter struct {
	w       io.Writer
	token   []byte
	mu      sync.Mutex
	pending []byte
	lines   int
	done    bool
	pgid    int
	known   chan struct{} // closed when the search ended (pgid set or not)
}

const (
	pgidMaxLines = 16
	pgidMaxBytes = 8 << 10
)

func (f *pgidFilter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		_, err := f.w.Write(p)
		return len(p), err
	}
	f.pending = append(f.pending, p...)
	var out []byte
	for !f.done {
		i := bytes.IndexByte(f.pending, '\n')
		if i < 0 {
			if len(f.pending) > pgidMaxBytes {
				f.finish()
			}
			break
		}
		line := f.pending[:i]
		if bytes.HasPrefix(line, f.token) {
			if n, err := strconv.Atoi(string(line[len(f.token):])); err == nil && n > 1 {
				f.pgid = n
			}
			f.pending = f.pending[i+1:]
			f.finish()
			break
		}
		out = append(out, f.pending[:i+1]...)
		f.pending = f.pending[i+1:]
		if f.lines++; f.lines >= pgidMaxLines {
			f.finish()
		}
	}
	if f.done {
		out = append(out, f.pending...)
		f.pending = nil
	}
	if len(out) > 0 {
		if _, err := f.w.Write(out); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// finish ends the search; the caller holds f.mu and flushes f.pending.
func (f *pgidFilter) finish() {
	if !f.done {
		f.done = true
		close(f.known)
	}
}

// flush ends the search at the end of the stream, passing on what is held.
func (f *pgidFilter) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return
	}
	f.finish()
	if len(f.pending) > 0 {
		f.w.Write(f.pending)
		f.pending = nil
	}
}

// waitPgid returns the remote process group id, waiting up to d for the
// header; 0 when unknown.
func (f *pgidFilter) waitPgid(d time.Duration) int {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.known:
	case <-t.C:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pgid
}

// killGroup sends sig to the remote session whose leader is pgid (all its
// processes) from a second exec channel on l, waiting at most d.
func (c *Conn) killGroup(l *link, pgid int, sig string, d time.Duration) error {
	if pgid <= 1 || !rfcSignals[sig] {
		return fmt.Errorf("refusing to signal process group %d with %q", pgid, sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	sess, err := c.openSession(ctx, "ssh kill", l)
	if err != nil {
		return err
	}
	defer sess.Close()
	// pgid is the login shell's pid: the session leader, so it is the
	// session id as well. pkill -s reaches the whole session, including
	// process groups made inside it (a nested timeout(1) makes one); plain
	// kill on the process group where pkill (procps) is missing.
	cmd := fmt.Sprintf("if command -v pkill >/dev/null 2>&1; then pkill --signal %s -s %d; else kill -s %s -- -%d; fi",
		sig, pgid, sig, pgid)
	if err := c.startCmd(ctx, "ssh kill", l, sess, cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendKill is the kill used on a deadline and by Stream.Close: the KILL
// signal request, plus kill -s KILL on the process group when it is known.
func (c *Conn) sendKill(l *link, sess *ssh.Session, f *pgidFilter) {
	sess.Signal(ssh.SIGKILL)
	if f == nil {
		return
	}
	if pgid := f.waitPgid(KillGrace / 2); pgid > 1 {
		c.killGroup(l, pgid, "KILL", KillGrace)
	}
}
