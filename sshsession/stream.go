package sshsession

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"libbioxen/core"
)

// StreamStderrCap is how many bytes of stderr a Stream buffers: the most
// recent ones are kept, older ones are dropped (and counted) when nobody
// reads Stderr fast enough.
const StreamStderrCap = 64 << 10

// Stream is a long-lived remote process on its own exec channel, e.g. an
// interpreter that speaks a protocol over stdin and stdout.
//
// Stdout is the channel's stdout passed through as is: one goroutine at a
// time may read it (single-reader rule). It is flow-controlled by the SSH
// channel window, so memory stays bounded (the window, 2 MiB) and a remote
// process that writes faster than Stdout is read blocks. Stderr is drained
// continuously by one background goroutine into a bounded buffer (the last
// StreamStderrCap bytes; see StderrDropped), so unread stderr can never
// stall the channel; any number of goroutines may read it.
//
// End of stream: Stdout and Stderr return io.EOF when the remote process
// closed them and the process ended normally (or Close was called), and an
// ErrEngine error wrapping ErrConnLost when the connection died, promptly:
// the connection's death (peer gone, or a keepalive unanswered for one
// interval) ends every channel on it at once. A Stream never moves to a new
// connection; start a new one (Start reconnects).
//
// The command is not wrapped in RemoteKillWrap (a stream has no deadline);
// it is prefixed with an echo of the session's process group id to stderr
// (stripped; see "Killing" in the package documentation), so Signal and Close reach the whole remote
// process group even on root logins. A remote process learns of a lost
// connection through EOF on its stdin and EPIPE/SIGPIPE on its stdout;
// wrap the command with RemoteKillWrap yourself to give it a hard lifetime.
type Stream struct {
	Stdin  io.WriteCloser // closing it sends EOF to the remote process
	Stdout io.Reader
	Stderr io.Reader

	c    *Conn
	l    *link
	sess *ssh.Session

	done chan struct{} // closed when the remote process has ended (or the channel is gone)
	exit ExitInfo      // set before done is closed
	err  error         // likewise

	stderr    *tailBuffer
	filter    *pgidFilter
	closing   atomic.Bool
	closeOnce sync.Once
}

const streamOp = "ssh stream"

// Start runs cmd on its own exec channel and returns it as a Stream. ctx
// bounds only the start (reconnecting if needed, opening the channel,
// sending the exec request), not the process's lifetime: end that with
// Stream.Close.
func (c *Conn) Start(ctx context.Context, cmd string) (*Stream, error) {
	if strings.TrimSpace(cmd) == "" {
		return nil, core.Errorf(core.ErrInvalid, streamOp, "empty command")
	}
	if strings.IndexByte(cmd, 0) >= 0 {
		return nil, core.Errorf(core.ErrInvalid, streamOp, "command contains a NUL byte")
	}
	if ctx.Err() != nil {
		return nil, ctxError(streamOp, ctx, "command not started")
	}
	l, sess, err := c.newSession(ctx, streamOp)
	if err != nil {
		return nil, err
	}
	in, err1 := sess.StdinPipe()
	out, err2 := sess.StdoutPipe()
	errp, err3 := sess.StderrPipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		sess.Close()
		return nil, core.Wrap(core.ErrEngine, streamOp, "session pipes", err)
	}
	tail := newTailBuffer(StreamStderrCap)
	prefix, filter := pgidHeader(tail)
	if err := c.startCmd(ctx, streamOp, l, sess, prefix+cmd); err != nil {
		sess.Close()
		return nil, err
	}
	s := &Stream{c: c, l: l, sess: sess, done: make(chan struct{}), stderr: tail, filter: filter}
	s.Stdin = &streamWriter{w: in, s: s}
	s.Stdout = &streamReader{r: out, s: s}
	s.Stderr = s.stderr
	go s.wait()
	go func() {
		io.Copy(filter, errp)
		filter.flush()
		s.stderr.closeWith(s.endErr())
	}()
	return s, nil
}

func (s *Stream) wait() {
	err := s.sess.Wait()
	s.exit = exitInfo(err)
	switch {
	case s.closing.Load():
	case s.exit.ExitMissing && s.c.linkDied(s.l):
		s.err = s.c.lostError(streamOp, s.l)
	case err != nil && !isExitErr(err):
		s.err = core.Wrap(core.ErrEngine, streamOp, "remote process", s.c.peerErr(err))
	}
	close(s.done)
}

// endErr is what a reader gets once the channel reported EOF: io.EOF for a
// normal end, the connection-lost error when the connection died first.
// The end of the process (exit report, then channel close) normally follows
// the EOF at once; a process that closed its output but goes on running
// gets io.EOF after a short wait.
func (s *Stream) endErr() error {
	if s.closing.Load() {
		return io.EOF
	}
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	select {
	case <-s.done:
	case <-s.l.dead:
		// The channels are dropped with the connection: done follows at once
		// and tells whether the exit was reported before the loss.
		t.Reset(time.Second)
		select {
		case <-s.done:
		case <-t.C:
			if s.closing.Load() {
				return io.EOF
			}
			return s.c.lostError(streamOp, s.l)
		}
	case <-t.C:
		return io.EOF
	}
	if s.err != nil && !s.closing.Load() {
		return s.err
	}
	return io.EOF
}

// ioErr maps an I/O error on the channel.
func (s *Stream) ioErr(err error) error {
	if s.closing.Load() {
		return core.Errorf(core.ErrClosed, streamOp, "stream closed")
	}
	if s.l.isDead() || s.c.linkDied(s.l) {
		return s.c.lostError(streamOp, s.l)
	}
	select {
	case <-s.done:
		return core.Wrap(core.ErrEngine, streamOp, "the remote process has ended", s.c.peerErr(err))
	default:
	}
	return core.Wrap(core.ErrEngine, streamOp, "channel I/O", s.c.peerErr(err))
}

// Wait waits for the remote process to end and returns how it ended. A
// non-zero status or a signal is reported in ExitInfo, not as an error; the
// error is for a lost connection (ErrConnLost). Drain Stdout first: a
// process blocked writing to it does not end.
func (s *Stream) Wait() (ExitInfo, error) {
	<-s.done
	return s.exit, s.err
}

// Done is closed when the remote process has ended (Wait will not block).
func (s *Stream) Done() <-chan struct{} { return s.done }

// StderrDropped is the number of stderr bytes dropped because the buffer
// was full.
func (s *Stream) StderrDropped() int64 { return s.stderr.droppedBytes() }

var rfcSignals = map[string]bool{"ABRT": true, "ALRM": true, "FPE": true, "HUP": true, "ILL": true,
	"INT": true, "KILL": true, "PIPE": true, "QUIT": true, "SEGV": true, "TERM": true, "USR1": true, "USR2": true}

// Signal sends sig to the remote session's process group (the command and
// its children): sig is one of the RFC 4254 names (ABRT ALRM FPE HUP ILL
// INT KILL PIPE QUIT SEGV TERM USR1 USR2), with or without "SIG". It runs
// `pkill --signal SIG -s <sid>` (or `kill -s SIG -- -<pgid>`) on a second
// exec channel when the session leader's pid is known (see "Killing" in the
// package documentation), else it sends an SSH "signal" request (which
// OpenSSH delivers with killpg, but refuses for root logins).
func (s *Stream) Signal(sig string) error {
	name := strings.TrimPrefix(strings.ToUpper(sig), "SIG")
	if !rfcSignals[name] {
		return core.Errorf(core.ErrInvalid, streamOp, "signal %q is not one SSH can send", sig)
	}
	select {
	case <-s.done:
		return core.Errorf(core.ErrInvalid, streamOp, "the remote process has already ended")
	default:
	}
	if pgid := s.filter.waitPgid(KillGrace / 2); pgid > 1 {
		if err := s.c.killGroup(s.l, pgid, name, KillGrace); err != nil && !isExitErr(err) {
			return s.ioErr(err)
		}
		return nil
	}
	if err := s.sess.Signal(ssh.Signal(name)); err != nil {
		return s.ioErr(err)
	}
	return nil
}

// Close kills the remote process group unless the process has ended (the
// KILL signal request and kill -s KILL on the group, as Run does on its
// deadline), closes the channel and waits up to KillGrace for the end to
// be confirmed.
// Readers then get io.EOF. Idempotent.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		select {
		case <-s.done:
		default:
			s.c.sendKill(s.l, s.sess, s.filter)
		}
		s.sess.Close()
		t := time.NewTimer(KillGrace)
		defer t.Stop()
		select {
		case <-s.done:
		case <-s.l.dead:
		case <-t.C:
		}
	})
	return nil
}

type streamReader struct {
	r   io.Reader
	s   *Stream
	end error
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.end != nil {
		return 0, r.end
	}
	n, err := r.r.Read(p)
	switch {
	case err == io.EOF:
		r.end = r.s.endErr()
		err = r.end
	case err != nil:
		r.end = r.s.ioErr(err)
		err = r.end
	}
	return n, err
}

type streamWriter struct {
	w io.WriteCloser
	s *Stream
}

func (w *streamWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		err = w.s.ioErr(err)
	}
	return n, err
}

func (w *streamWriter) Close() error {
	if err := w.w.Close(); err != nil && !errors.Is(err, io.EOF) {
		return w.s.ioErr(err)
	}
	return nil
}

// tailBuffer is a bounded pipe: writes never block; past max bytes the
// oldest unread bytes are dropped.
type tailBuffer struct {
	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte
	max     int
	dropped int64
	end     error
}

func newTailBuffer(max int) *tailBuffer {
	b := &tailBuffer{max: max}
	b.cond.L = &b.mu
	return b
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) > b.max {
		b.dropped += int64(len(p) - b.max)
		p = p[len(p)-b.max:]
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.dropped += int64(over)
		b.buf = b.buf[over:]
	}
	if cap(b.buf)-len(b.buf) < len(p) {
		nb := make([]byte, len(b.buf), b.max)
		copy(nb, b.buf)
		b.buf = nb
	}
	b.buf = append(b.buf, p...)
	b.cond.Broadcast()
	return n, nil
}

func (b *tailBuffer) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) == 0 && b.end == nil {
		b.cond.Wait()
	}
	if len(b.buf) > 0 {
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	return 0, b.end
}

func (b *tailBuffer) closeWith(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.end == nil {
		b.end = err
	}
	b.cond.Broadcast()
}

func (b *tailBuffer) droppedBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
