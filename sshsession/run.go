package sshsession

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"libbioxen/core"
)

// DefaultOutputCap is how many bytes of stdout and of stderr Run keeps when
// Limits leaves the cap at 0.
const DefaultOutputCap = 1 << 20

// KillGrace is how long Run and Stream.Close wait, after sending the KILL
// signal, for the server to report that the remote process ended before
// closing the channel anyway.
const KillGrace = 3 * time.Second

// Limits bounds one Run.
type Limits struct {
	// MaxStdout and MaxStderr are the bytes kept of each stream (0:
	// DefaultOutputCap; negative: none). Output past the cap is read and
	// discarded, so the remote process never blocks on a full pipe; the
	// result reports the truncation and the total size.
	MaxStdout int
	MaxStderr int
	// Timeout, when positive, bounds the call in addition to ctx's deadline.
	Timeout time.Duration
	// NoKillWrap sends the command exactly as is: no RemoteKillWrap, no
	// process-group echo (for hosts without timeout(1) or without a POSIX
	// login shell). On the deadline only the KILL signal request is sent,
	// which OpenSSH refuses for root logins; and nothing kills the remote
	// process when the connection is lost.
	NoKillWrap bool
}

// ExitInfo says how a remote process ended. Exactly one of these holds:
// it exited (ExitStatus >= 0, Signal ""), a signal killed it (ExitStatus -1,
// Signal set), or the server reported neither (ExitStatus -1, ExitMissing).
type ExitInfo struct {
	ExitStatus  int    // exit status; -1 when killed by a signal or not reported
	Signal      string // signal name without "SIG" (e.g. "KILL") when a signal killed it
	SignalMsg   string // the server's message for the signal, if any
	ExitMissing bool   // the channel closed without exit-status or exit-signal
}

// ExecResult is the outcome of Run. A non-zero exit status or a death by
// signal is reported here, not as an error.
type ExecResult struct {
	ExitInfo
	Stdout          []byte
	Stderr          []byte
	StdoutTruncated bool  // more stdout arrived than MaxStdout; the rest was discarded
	StderrTruncated bool  // likewise for stderr
	StdoutTotal     int64 // stdout bytes received, kept or not
	StderrTotal     int64
	Duration        time.Duration // from the exec request to the end
}

// Run runs cmd on its own exec channel (session.Run semantics: the remote
// login shell runs cmd with stdin as its standard input, followed by EOF)
// and returns its exit status and captured output.
//
// When ctx (or Limits.Timeout) has a deadline, cmd is sent wrapped with
// RemoteKillWrap(cmd, time left + 1 s): should the connection die, the
// remote process group still gets SIGKILL one or two seconds after the
// deadline. When the deadline passes, Run kills the remote process group:
// a "signal" request for KILL (OpenSSH delivers it with killpg to the
// session's process group, except for root logins, where it refuses it)
// and a kill of every process of the SSH session from a second exec
// channel (see "Killing" in the package documentation: the command is
// prefixed with an echo of the session leader's pid to stderr, stripped
// from the result). It then waits up to KillGrace for the
// exit report, closes the channel and returns the partial result with an
// ErrTimeout error (a cancelled ctx: the same, with context.Canceled as the
// cause).
//
// Errors: ErrInvalid for an empty command or one with a NUL byte; ErrClosed
// after Close; ErrEngine wrapping ErrConnLost when the connection dies
// during the call (the result holds the output received so far), or
// reconnection errors from ensure.
func (c *Conn) Run(ctx context.Context, cmd string, stdin []byte, lim Limits) (*ExecResult, error) {
	const op = "ssh run"
	if strings.TrimSpace(cmd) == "" {
		return nil, core.Errorf(core.ErrInvalid, op, "empty command")
	}
	if strings.IndexByte(cmd, 0) >= 0 {
		return nil, core.Errorf(core.ErrInvalid, op, "command contains a NUL byte")
	}
	if lim.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lim.Timeout)
		defer cancel()
	}
	if ctx.Err() != nil {
		return nil, ctxError(op, ctx, "command not started")
	}
	remote := cmd
	if dl, ok := ctx.Deadline(); ok && !lim.NoKillWrap {
		w, err := RemoteKillWrap(cmd, time.Until(dl)+time.Second)
		if err != nil {
			return nil, err
		}
		remote = w
	}
	l, sess, err := c.newSession(ctx, op)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	stdout := &capture{max: capOf(lim.MaxStdout)}
	stderr := &capture{max: capOf(lim.MaxStderr)}
	sess.Stdout, sess.Stderr = stdout, stderr
	var filter *pgidFilter
	if !lim.NoKillWrap {
		var prefix string
		prefix, filter = pgidHeader(stderr)
		remote = prefix + remote
		sess.Stderr = filter
	}
	in, err := sess.StdinPipe()
	if err != nil {
		return nil, core.Wrap(core.ErrEngine, op, "stdin pipe", err)
	}
	start := time.Now()
	if err := c.startCmd(ctx, op, l, sess, remote); err != nil {
		return nil, err
	}
	go func() {
		// Ends when all is written or the channel closes.
		if len(stdin) > 0 {
			in.Write(stdin)
		}
		in.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	result := func(waitErr error) *ExecResult {
		if filter != nil {
			filter.flush()
		}
		r := &ExecResult{ExitInfo: exitInfo(waitErr), Duration: time.Since(start)}
		r.Stdout, r.StdoutTruncated, r.StdoutTotal = stdout.snapshot()
		r.Stderr, r.StderrTruncated, r.StderrTotal = stderr.snapshot()
		return r
	}
	select {
	case werr := <-done:
		res := result(werr)
		if res.ExitMissing && c.linkDied(l) {
			return res, c.lostError(op, l)
		}
		if werr != nil && !isExitErr(werr) {
			return res, core.Wrap(core.ErrEngine, op, "remote command", c.peerErr(werr))
		}
		return res, nil
	case <-ctx.Done():
		go c.sendKill(l, sess, filter) // bounded by KillGrace
		t := time.NewTimer(KillGrace)
		defer t.Stop()
		var werr error
		got := false
		select {
		case werr = <-done:
			got = true
		case <-t.C:
		case <-l.dead:
		}
		sess.Close()
		res := result(werr)
		if !got {
			res.ExitInfo = ExitInfo{ExitStatus: -1, ExitMissing: true}
		}
		return res, ctxError(op, ctx, "remote command killed (SIGKILL to its process group)")
	}
}

func capOf(n int) int {
	switch {
	case n == 0:
		return DefaultOutputCap
	case n < 0:
		return 0
	}
	return n
}

func isExitErr(err error) bool {
	var ee *ssh.ExitError
	var em *ssh.ExitMissingError
	return errors.As(err, &ee) || errors.As(err, &em)
}

// exitInfo decodes the error of ssh.Session.Wait.
func exitInfo(err error) ExitInfo {
	var ee *ssh.ExitError
	var em *ssh.ExitMissingError
	switch {
	case err == nil:
		return ExitInfo{}
	case errors.As(err, &ee):
		if ee.Signal() != "" {
			return ExitInfo{ExitStatus: -1, Signal: ee.Signal(), SignalMsg: ee.Msg()}
		}
		return ExitInfo{ExitStatus: ee.ExitStatus()}
	case errors.As(err, &em):
		return ExitInfo{ExitStatus: -1, ExitMissing: true}
	}
	return ExitInfo{ExitStatus: -1, ExitMissing: true}
}

// linkDied reports whether l is dead or dies within a moment: a lost
// connection closes the channels a little before the link's watcher sees
// the end.
func (c *Conn) linkDied(l *link) bool {
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	select {
	case <-l.dead:
		return true
	case <-t.C:
		return false
	}
}

// newSession opens a session channel on the current connection. A
// connection that broke while idle is often seen to be dead only when the
// channel cannot be opened: then it reconnects (with the Config's policy)
// and tries once more. Nothing ran on the dead connection, so that is safe.
func (c *Conn) newSession(ctx context.Context, op string) (*link, *ssh.Session, error) {
	l, err := c.ensure(ctx)
	if err != nil {
		return nil, nil, err
	}
	sess, err := c.openSession(ctx, op, l)
	if err != nil && l.isDead() && ctx.Err() == nil && c.cfg.Reconnect.Attempts >= 0 {
		if l, err = c.ensure(ctx); err != nil {
			return nil, nil, err
		}
		sess, err = c.openSession(ctx, op, l)
	}
	if err != nil {
		return nil, nil, err
	}
	return l, sess, nil
}

// openSession opens a session channel, giving up when ctx ends or the link
// dies (a late session is closed in the background).
func (c *Conn) openSession(ctx context.Context, op string, l *link) (*ssh.Session, error) {
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := l.client.NewSession()
		ch <- opened{s, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			if l.isDead() || c.linkDied(l) {
				return nil, c.lostError(op, l)
			}
			return nil, core.Wrap(core.ErrEngine, op, "cannot open a session channel on "+c.addr, c.peerErr(o.err))
		}
		return o.s, nil
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.s != nil {
				o.s.Close()
			}
		}()
		return nil, ctxError(op, ctx, "opening a session channel")
	}
}

// startCmd sends the exec request, bounded by ctx.
func (c *Conn) startCmd(ctx context.Context, op string, l *link, sess *ssh.Session, cmd string) error {
	ch := make(chan error, 1)
	go func() { ch <- sess.Start(cmd) }()
	select {
	case err := <-ch:
		if err != nil {
			if l.isDead() || c.linkDied(l) {
				return c.lostError(op, l)
			}
			return core.Wrap(core.ErrEngine, op, "the server refused the exec request", errors.New(strings.ReplaceAll(err.Error(), cmd, "<command>")))
		}
		return nil
	case <-ctx.Done():
		sess.Close()
		return ctxError(op, ctx, "starting the command")
	}
}

// capture keeps the first max bytes written to it and counts the rest.
type capture struct {
	mu    sync.Mutex
	buf   []byte
	max   int
	total int64
}

func (w *capture) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total += int64(len(p))
	if room := w.max - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *capture) snapshot() ([]byte, bool, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.buf...), w.total > int64(len(w.buf)), w.total
}
