package sshsession

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"libbioxen/core"
)

// Conn is one persistent SSH connection to one host (a VM), shared by any
// number of concurrent Run and Start calls, each on its own channel (the
// server's MaxSessions, 10 by default in OpenSSH, caps how many are open at
// once).
//
// Liveness: a background goroutine sends a keepalive@openssh.com request
// every KeepaliveInterval; a reply missing for one interval, or the TCP
// connection ending, marks the connection dead and closes it, which ends
// every channel on it (reads return an ErrConnLost error promptly).
//
// Reconnection is automatic and lazy: Run and Start call ensure() first,
// which, when the connection is dead, dials again with the Config's
// backoff (attempt 1 at once, then Initial, 2·Initial, ... up to Max,
// Attempts in all; host-key, authentication and configuration errors are
// not retried). Nothing reconnects in the background, and a Stream never
// moves to the new connection: it fails with ErrConnLost and the caller
// starts a new one. Redial forces a new connection now.
type Conn struct {
	cfg      Config // normalized; Password and KeyPassphrase cleared
	addr     string
	password func() string // nil: no password auth
	signers  []ssh.Signer

	closeCtx    context.Context // cancelled by Close: aborts dials and backoff waits
	closeCancel context.CancelFunc

	dialMu sync.Mutex // one (re)dial at a time

	mu     sync.Mutex
	cur    *link
	closed bool

	wg sync.WaitGroup // the goroutines watching each link
}

// link is one underlying SSH connection.
type link struct {
	client *ssh.Client
	dead   chan struct{} // closed when the connection ended
	once   sync.Once
	cause  error // why it ended; read after <-dead
}

// kill marks l dead (first cause wins) and closes the connection, which
// ends all of its channels.
func (l *link) kill(cause error) {
	l.once.Do(func() {
		l.cause = cause
		close(l.dead)
	})
	l.client.Close()
}

func (l *link) isDead() bool {
	select {
	case <-l.dead:
		return true
	default:
		return false
	}
}

// Dial checks cfg, reads the key files and connects once (no retry: a bad
// address, host key or credential fails at once). ctx bounds the attempt
// together with cfg.DialTimeout.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	n, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	signers, err := loadKeyFiles(&n)
	if err != nil {
		return nil, err
	}
	c := &Conn{addr: n.Addr(), signers: signers}
	if n.Password != "" {
		pw := n.Password
		c.password = func() string { return pw }
	}
	if c.password == nil && len(signers) == 0 && (n.NoAgent || n.AgentSocket == "") {
		return nil, core.Errorf(core.ErrInvalid, "ssh dial",
			"no authentication method for %s@%s: set Config.Password or Config.KeyFiles, or run an ssh-agent (SSH_AUTH_SOCK)", n.User, c.addr)
	}
	n.Password, n.KeyPassphrase = "", ""
	c.cfg = n
	c.closeCtx, c.closeCancel = context.WithCancel(context.Background())
	l, err := c.dial(ctx)
	if err != nil {
		c.closeCancel()
		return nil, err
	}
	if err := c.install(l); err != nil {
		return nil, err
	}
	return c, nil
}

// String names the connection; it never shows a secret.
func (c *Conn) String() string { return fmt.Sprintf("sshsession.Conn(%s@%s)", c.cfg.User, c.addr) }

// Config returns the connection's normalized configuration, without its
// secrets.
func (c *Conn) Config() Config { return c.cfg }

// Alive reports whether the connection is open and not known to be dead.
// It does not touch the network (see Ping).
func (c *Conn) Alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closed && c.cur != nil && !c.cur.isDead()
}

// Close closes the connection and every channel on it and stops the
// keepalive goroutines, waiting for them. Idempotent; later calls of any
// method fail with ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	l := c.cur
	c.mu.Unlock()
	c.closeCancel()
	if l != nil {
		l.kill(c.errClosed())
	}
	c.wg.Wait()
	return nil
}

func (c *Conn) errClosed() error {
	return core.Errorf(core.ErrClosed, "ssh", "connection to %s is closed", c.addr)
}

// Ping sends one keepalive request and waits for the reply (or ctx). It
// does not reconnect.
func (c *Conn) Ping(ctx context.Context) error {
	l, err := c.current()
	if err != nil {
		return err
	}
	reply := make(chan error, 1)
	go func() {
		_, _, err := l.client.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	select {
	case err := <-reply:
		if err != nil {
			return c.lostError("ping", l)
		}
		return nil
	case <-l.dead:
		return c.lostError("ping", l)
	case <-ctx.Done():
		return ctxError("ping", ctx, "no keepalive reply")
	}
}

// current returns the live link without reconnecting.
func (c *Conn) current() (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, c.errClosed()
	}
	if c.cur == nil || c.cur.isDead() {
		return nil, core.Wrap(core.ErrConnection, "ssh", "connection to "+c.addr+" is dead", ErrConnLost)
	}
	return c.cur, nil
}

// ensure returns a live link, reconnecting (with backoff) when the current
// one is dead.
func (c *Conn) ensure(ctx context.Context) (*link, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.errClosed()
	}
	l := c.cur
	c.mu.Unlock()
	if l != nil && !l.isDead() {
		return l, nil
	}
	if c.cfg.Reconnect.Attempts < 0 {
		return nil, core.Wrap(core.ErrConnection, "ssh", "connection to "+c.addr+" is dead and automatic reconnection is off", ErrConnLost)
	}
	return c.reconnect(ctx, c.cfg.Reconnect.Attempts, l)
}

// Redial drops the current connection (ending its channels) and connects
// again with the Config's backoff (at least one attempt).
func (c *Conn) Redial(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.errClosed()
	}
	old := c.cur
	c.mu.Unlock()
	if old != nil {
		old.kill(core.Wrap(core.ErrEngine, "ssh", "connection to "+c.addr+" was replaced by Redial", ErrConnLost))
	}
	_, err := c.reconnect(ctx, max(1, c.cfg.Reconnect.Attempts), old)
	return err
}

func (c *Conn) reconnect(ctx context.Context, attempts int, old *link) (*link, error) {
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	cur, closed := c.cur, c.closed
	c.mu.Unlock()
	if closed {
		return nil, c.errClosed()
	}
	if cur != nil && cur != old && !cur.isDead() {
		return cur, nil // another caller reconnected meanwhile
	}
	delay := c.cfg.Reconnect.Initial
	var last error
	n := 0
	for n < attempts {
		if n > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			case <-c.closeCtx.Done():
				t.Stop()
			}
			delay = min(2*delay, c.cfg.Reconnect.Max)
		}
		if ctx.Err() != nil || c.closeCtx.Err() != nil {
			break
		}
		n++
		l, err := c.dial(ctx)
		if err == nil {
			if err := c.install(l); err != nil {
				return nil, err
			}
			core.Logf(core.LevelInfo, "ssh: %s: reconnected (attempt %d)", c.addr, n)
			return l, nil
		}
		last = err
		core.Logf(core.LevelDebug, "ssh: %s: reconnect attempt %d failed: %v", c.addr, n, err)
		if permanent(err) {
			break
		}
	}
	if c.closeCtx.Err() != nil {
		return nil, c.errClosed()
	}
	if last == nil || (ctx.Err() != nil && !permanent(last)) {
		return nil, ctxError("ssh reconnect", ctx, fmt.Sprintf("reconnecting to %s (%d attempt(s))", c.addr, n))
	}
	return nil, core.Wrap(core.CodeOf(last), "ssh",
		fmt.Sprintf("connection to %s was lost; reconnecting failed after %d attempt(s)", c.addr, n), last)
}

// permanent reports errors that retrying cannot fix.
func permanent(err error) bool {
	switch core.CodeOf(err) {
	case core.ErrInvalid, core.ErrTimeout, core.ErrClosed:
		return true
	}
	return errors.Is(err, ErrAuth) || errors.Is(err, ErrHostKeyUnknown) ||
		errors.Is(err, ErrHostKeyChanged) || errors.Is(err, ErrHostKeyRevoked)
}

// install makes l the current link and starts its watchers.
func (c *Conn) install(l *link) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		l.kill(c.errClosed())
		return c.errClosed()
	}
	old := c.cur
	c.cur = l
	c.wg.Add(2)
	c.mu.Unlock()
	if old != nil && old != l {
		old.kill(core.Wrap(core.ErrEngine, "ssh", "connection to "+c.addr+" was replaced", ErrConnLost))
	}
	go c.watch(l)
	go c.keepalive(l)
	return nil
}

// watch marks l dead when its connection ends for any reason.
// peerErr is err, whose text the server may have written (a disconnect
// or channel-open message, an exit signal's), with the password redacted
// and clipped to core.MaxPeerText: a hostile server can echo it.
func (c *Conn) peerErr(err error) error {
	pw := ""
	if c.password != nil {
		pw = c.password()
	}
	return core.PeerError(err, pw)
}

func (c *Conn) watch(l *link) {
	defer c.wg.Done()
	err := l.client.Wait()
	select {
	case <-l.dead:
	default:
		core.Logf(core.LevelInfo, "ssh: %s: connection ended: %v", c.addr, c.peerErr(err))
	}
	l.kill(fmt.Errorf("%w: %v", ErrConnLost, c.peerErr(err)))
}

// keepalive sends keepalive@openssh.com every interval and kills l when a
// reply does not arrive within the interval.
func (c *Conn) keepalive(l *link) {
	defer c.wg.Done()
	iv := c.cfg.KeepaliveInterval
	if iv < 0 {
		return
	}
	tick := time.NewTicker(iv)
	defer tick.Stop()
	for {
		select {
		case <-l.dead:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			// OpenSSH answers with SSH_MSG_REQUEST_FAILURE: any answer is proof of life.
			_, _, err := l.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		t := time.NewTimer(iv)
		select {
		case err := <-reply:
			t.Stop()
			if err != nil {
				l.kill(fmt.Errorf("%w: keepalive: %v", ErrConnLost, err))
				return
			}
		case <-t.C:
			core.Logf(core.LevelWarn, "ssh: %s: no keepalive reply within %v; connection marked dead", c.addr, iv)
			l.kill(fmt.Errorf("%w: no keepalive reply within %v", ErrConnLost, iv))
			return
		case <-l.dead:
			t.Stop()
			return
		}
	}
}

// dial makes one connection attempt.
func (c *Conn) dial(ctx context.Context) (*link, error) {
	return c.dialAlgos(ctx, true)
}

func (c *Conn) dialAlgos(ctx context.Context, pinAlgos bool) (*link, error) {
	const op = "ssh dial"
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	stopMerge := context.AfterFunc(c.closeCtx, cancel)
	defer stopMerge()

	hk, err := newHostKeyCheck(&c.cfg, c.addr)
	if err != nil {
		return nil, err
	}
	if !pinAlgos {
		hk.algos = nil
	}
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", c.addr)
	if err != nil {
		if c.closeCtx.Err() != nil {
			return nil, c.errClosed()
		}
		if ctx.Err() != nil || deadlinePassed(ctx) {
			return nil, ctxError(op, ctx, "connecting to "+c.addr)
		}
		return nil, core.Wrap(core.ErrConnection, op, "cannot connect to "+c.addr, err)
	}
	if dl, ok := dctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stopAbort := context.AfterFunc(dctx, func() { nc.Close() })
	methods, agentDone := c.authMethods()
	defer agentDone()
	cc := &ssh.ClientConfig{
		User:              c.cfg.User,
		Auth:              methods,
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algos,
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, c.addr, cc)
	aborted := !stopAbort()
	if err == nil && aborted {
		sc.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		nc.Close()
		switch {
		case hk.refused != nil:
			return nil, core.Wrap(core.ErrHostKey, op, "host key verification failed", hk.refused)
		case hk.other != nil:
			return nil, core.Wrap(core.ErrHostKey, op, "host key verification failed", hk.other)
		case pinAlgos && hk.algos != nil && strings.Contains(err.Error(), "no common algorithm for host key"):
			// The server has none of the key types known_hosts records for it:
			// get its key without pinning so the check reports the change.
			return c.dialAlgos(ctx, false)
		case isAuthError(err):
			return nil, core.Wrap(core.ErrAuth, op,
				fmt.Sprintf("authentication as %q at %s failed", c.cfg.User, c.addr),
				fmt.Errorf("%w: %v", ErrAuth, c.peerErr(err)))
		case c.closeCtx.Err() != nil:
			return nil, c.errClosed()
		case ctx.Err() != nil || deadlinePassed(ctx):
			return nil, ctxError(op, ctx, "SSH handshake with "+c.addr)
		case aborted || errors.Is(err, os.ErrDeadlineExceeded):
			return nil, core.Wrap(core.ErrConnection, op,
				fmt.Sprintf("SSH handshake with %s did not finish within %v", c.addr, c.cfg.DialTimeout), context.DeadlineExceeded)
		default:
			return nil, core.Wrap(core.ErrConnection, op, "SSH handshake with "+c.addr+" failed", c.peerErr(err))
		}
	}
	nc.SetDeadline(time.Time{})
	return &link{client: ssh.NewClient(sc, chans, reqs), dead: make(chan struct{})}, nil
}

// deadlinePassed reports whether ctx's deadline is over (a network
// deadline set from it may fire a moment before ctx.Err reports it).
func deadlinePassed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// ctxError turns the end of ctx into a timeout error for op.
func ctxError(op string, ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return core.Wrap(core.ErrTimeout, op, what+": the call was cancelled", ctx.Err())
	}
	return core.Wrap(core.ErrTimeout, op, what+": the call ran past its deadline", context.DeadlineExceeded)
}

// lostError is the error of a call whose connection died under it.
func (c *Conn) lostError(op string, l *link) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return c.errClosed()
	}
	select {
	case <-l.dead:
		if l.cause != nil && errors.Is(l.cause, ErrConnLost) {
			return core.Wrap(core.ErrConnection, op, "connection to "+c.addr+" lost", l.cause)
		}
	default:
	}
	return core.Wrap(core.ErrConnection, op, "connection to "+c.addr+" lost", ErrConnLost)
}
