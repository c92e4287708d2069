// Package xapi is libbioxen's client for XAPI, the management API of
// XCP-ng and XenServer, over XML-RPC (POST / on https or http).
//
// A Client logs in with session.login_with_password, prepends the session
// to every Call, logs in again once when XAPI answers SESSION_INVALID,
// follows HOST_IS_SLAVE to the pool master (on the same URL scheme: never
// from https to http), and bounds every call with a deadline (the
// context's, and Options.CallTimeout except for long operations). TLS is
// verified by default; Options.CAFile trusts a CA, Options.Fingerprint
// pins the SHA-256 of the host's (self-signed) certificate, and
// Options.Insecure turns verification off explicitly.
//
// Every error is a *core.Error. XAPI failures carry a *Failure (the
// ErrorDescription) in their chain, TLS trust failures a *TLSError,
// XML-RPC faults a *Fault, undecodable responses ErrMalformed. The
// password never appears in errors, logs or the String/GoString of any
// value of this package, even when a server echoes it back (a text that
// contains a password shorter than 4 bytes is replaced whole, since
// masking each occurrence would show where its characters are); errors
// quote at most a short prefix of what a server sent. A response is read
// up to 256 MiB, with at most 512 levels of nesting, 2 Mi values, 4 KiB
// in a tag and 64 KiB of attributes (ErrResponseLimit).
//
// On top of Call, Provision/Launch create a VM from a template the way
// `xe vm-install` does, and VM's methods start it, wait for its IP,
// shut it down and destroy it with its disks.
package xapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"libbioxen/core"
	"libbioxen/xapi/internal/wire"
)

const redacted = "***"

// Secret is a string that formats as "***" with every fmt verb and in
// JSON or text encodings.
type Secret string

func (Secret) String() string   { return redacted }
func (Secret) GoString() string { return `"` + redacted + `"` }

// Format implements fmt.Formatter.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Defaults used when an Options field is zero.
const (
	DefaultCallTimeout    = 60 * time.Second
	DefaultCleanupTimeout = 2 * time.Minute
	DefaultOriginator     = "libbioxen"
	DefaultSSHPortKey     = "bioxen-ssh-port"
	defaultMaxRedirects   = 3
	maxResponse           = 256 << 20
)

// Options configure a Client.
type Options struct {
	// URL of the host: "https://host", "http://host:port" or a bare
	// "host[:port]" (https). XML-RPC is posted to its path ("/" if empty).
	URL      string
	Username string
	Password Secret
	// Originator is sent at login; XAPI keeps a pool of 500 sessions per
	// originator. Default "libbioxen".
	Originator string

	// CAFile is a PEM file of CAs to trust instead of the system roots.
	CAFile string
	// Fingerprint pins the SHA-256 of the server's leaf certificate (hex,
	// any case, colons optional; several separated by commas, e.g. one per
	// pool member). Chain and host name are then not checked.
	Fingerprint string
	// Insecure turns TLS verification off. It cannot be combined with
	// CAFile or Fingerprint.
	Insecure bool

	// CallTimeout bounds every call, within its context's deadline, except
	// the long operations (see Call), which it bounds only when the
	// context has no deadline. Default 60s.
	CallTimeout time.Duration
	// CleanupTimeout bounds the removal of a half-created VM after a failed
	// Provision or Launch, with the wait for a task that the caller's
	// deadline cut off: together they end by CleanupTimeout past that
	// deadline (or from the failure, when it came earlier). Default 2 min.
	CleanupTimeout time.Duration
	// AllowLoopbackIP makes WaitIP accept 127.0.0.0/8 guest addresses
	// (the simulator's guests); real guests' loopback addresses are skipped.
	AllowLoopbackIP bool
	// SSHPortKey is the VM other_config key WaitIP reads the guest's SSH
	// port from (the simulator publishes it there). Default
	// "bioxen-ssh-port"; absent means 22.
	SSHPortKey string
}

// String describes the options without the password.
func (o Options) String() string {
	return fmt.Sprintf("xapi.Options{URL: %q, Username: %q, Password: %s, CAFile: %q, Fingerprint: %q, Insecure: %v}",
		o.URL, o.Username, redacted, o.CAFile, o.Fingerprint, o.Insecure)
}

// GoString is String, so that %#v does not print the password either.
func (o Options) GoString() string { return o.String() }

type credentials struct {
	user     string
	password Secret
}

// Client talks to one XAPI pool. It is safe for concurrent use.
type Client struct {
	opts  Options // Password cleared; see creds
	creds *credentials
	httpc *http.Client
	pins  map[string]bool

	mu      sync.Mutex
	base    *url.URL
	session string

	loginMu sync.Mutex
}

// New checks the options and builds a Client. It does not connect: Login
// (or the first Call) does.
// maxRefLen bounds the session reference a server may hand out (XAPI's
// are "OpaqueRef:" and a UUID, 46 bytes).
const maxRefLen = 1024

func New(opts Options) (*Client, error) {
	const op = "xapi.New"
	if opts.URL == "" {
		return nil, core.Errorf(core.ErrInvalid, op, "no XAPI URL given")
	}
	raw := opts.URL
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, core.Errorf(core.ErrInvalid, op, "bad XAPI URL %q: want http(s)://host[:port]", core.RedactUserinfo(opts.URL, "***"))
	}
	if u.User != nil {
		return nil, core.Errorf(core.ErrInvalid, op, "the XAPI URL must not carry credentials (%s)", core.RedactUserinfo(opts.URL, "***"))
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery, u.Fragment = "", ""
	if opts.Username == "" {
		return nil, core.Errorf(core.ErrInvalid, op, "no XAPI user name given")
	}
	if opts.Insecure && (opts.CAFile != "" || opts.Fingerprint != "") {
		return nil, core.Errorf(core.ErrInvalid, op, "Insecure cannot be combined with a CA file or a fingerprint")
	}
	if opts.CAFile != "" && opts.Fingerprint != "" {
		return nil, core.Errorf(core.ErrInvalid, op, "give either a CA file or a fingerprint, not both")
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.CleanupTimeout <= 0 {
		opts.CleanupTimeout = DefaultCleanupTimeout
	}
	if opts.Originator == "" {
		opts.Originator = DefaultOriginator
	}
	if opts.SSHPortKey == "" {
		opts.SSHPortKey = DefaultSSHPortKey
	}
	c := &Client{creds: &credentials{user: opts.Username, password: opts.Password}, base: u}
	opts.Password = ""
	c.opts = opts

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case opts.Insecure:
		tlsCfg.InsecureSkipVerify = true
	case opts.Fingerprint != "":
		c.pins = map[string]bool{}
		for _, fp := range strings.Split(opts.Fingerprint, ",") {
			n, ok := normalizeFingerprint(fp)
			if !ok {
				return nil, core.Errorf(core.ErrInvalid, op, "bad TLS fingerprint %q: want 64 hex digits (SHA-256)", strings.TrimSpace(fp))
			}
			c.pins[n] = true
		}
		// The pin replaces chain and name verification.
		tlsCfg.InsecureSkipVerify = true
		tlsCfg.VerifyConnection = c.verifyPin
	case opts.CAFile != "":
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, core.Wrap(core.ErrFileNotFound, op, "cannot read the CA file", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, core.Errorf(core.ErrInvalid, op, "no PEM certificate in CA file %s", opts.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   30 * time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// No gzip: the response limit counts the bytes read, and Go's
		// transparent decompression made 199 KiB on the wire a 200 MiB
		// answer (found by review, red team).
		DisableCompression: true,
	}
	c.httpc = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return c, nil
}

func normalizeFingerprint(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "="); i >= 0 {
		s = s[i+1:] // "SHA256 Fingerprint=AB:CD…" (openssl x509 -fingerprint)
	} else if len(s) > 7 && strings.EqualFold(s[:7], "sha256:") {
		s = s[7:]
	}
	s = strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(s))
	if len(s) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", false
	}
	return s, true
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	parts := make([]string, 0, 32)
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func (c *Client) verifyPin(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return &TLSError{Reason: "no certificate presented"}
	}
	sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
	if c.pins[hex.EncodeToString(sum[:])] {
		return nil
	}
	return &TLSError{Reason: "certificate fingerprint does not match the pinned one", Fingerprint: fingerprint(cs.PeerCertificates[0].Raw)}
}

// String describes the client without secrets.
func (c *Client) String() string {
	return fmt.Sprintf("xapi.Client{url: %s, user: %q, password: %s}", c.URL(), c.creds.user, redacted)
}

// GoString is String.
func (c *Client) GoString() string { return c.String() }

// URL is the XAPI endpoint in use (the pool master's after a redirect).
func (c *Client) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.String()
}

// Session is the current session ref ("" before login).
func (c *Client) Session() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Options returns the options the client was built with, without the
// password.
func (c *Client) Options() Options { return c.opts }

// longCalls are the methods that may rightly run for minutes: they wait
// for XAPI to copy disks, boot or stop a VM, or for events. Only the
// caller's deadline bounds them.
var longCalls = map[string]bool{
	"VM.clone": true, "VM.copy": true, "VM.provision": true, "VM.start": true, "VM.clean_shutdown": true,
	"VM.hard_shutdown": true, "VM.destroy": true, "VDI.destroy": true, "event.from": true,
}

// withDeadline bounds a call of method: by ctx's deadline, and by
// Options.CallTimeout too unless it is one of the longCalls. A server
// that stops answering then fails a login or a lookup within CallTimeout,
// not at the end of a whole provisioning's deadline (minutes).
func (c *Client) withDeadline(ctx context.Context, method string) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	if dl, ok := ctx.Deadline(); ok && (longCalls[method] || time.Until(dl) <= c.opts.CallTimeout) {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.CallTimeout)
}

// rpc performs one XML-RPC round trip and unwraps XAPI's result envelope.
func (c *Client) rpc(ctx context.Context, base *url.URL, method string, params []any) (any, error) {
	op := "xapi " + method
	body, err := wire.Encoder{}.EncodeCall(method, params)
	if err != nil {
		return nil, core.Wrap(core.ErrInvalid, op, "cannot encode the call", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String(), bytes.NewReader(body))
	if err != nil {
		return nil, core.Wrap(core.ErrInvalid, op, "cannot build the request", err)
	}
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("User-Agent", "libbioxen-xapi/1")
	start := time.Now()
	resp, err := c.httpc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, op, base.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil, core.Errorf(core.ErrConnection, op, "XAPI at %s answered HTTP %d", base.Host, resp.StatusCode)
	}
	v, err := wire.Decoder{Redact: c.redact}.DecodeResponse(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		if ctx.Err() != nil {
			return nil, c.transportError(ctx, op, base.Host, err)
		}
		var fault *Fault
		if errors.As(err, &fault) {
			return nil, core.Wrap(core.ErrEngine, op, "XML-RPC fault from "+base.Host, err)
		}
		return nil, core.Wrap(core.ErrEngine, op, "bad XML-RPC response from "+base.Host, err)
	}
	if core.LogEnabled(core.LevelDebug) {
		core.Logf(core.LevelDebug, "xapi: %s on %s took %s", method, base.Host, time.Since(start).Round(time.Microsecond))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, core.Errorf(core.ErrEngine, op, "response from %s is not an XAPI result (no Status)", base.Host)
	}
	switch m["Status"] {
	case "Success":
		return m["Value"], nil
	case "Failure":
		return nil, c.failure(op, m["ErrorDescription"])
	}
	return nil, core.Errorf(core.ErrEngine, op, "response from %s is not an XAPI result (Status %s)", base.Host, c.quoteServer(AsString(m["Status"])))
}

// failure is the error for an XAPI ErrorDescription (a failed call's,
// or a failed task's error_info): [code, params...], an empty or missing
// code being INTERNAL_ERROR, scrubbed and classified.
func (c *Client) failure(op string, desc any) error {
	f := &Failure{}
	for i, s := range AsStrings(desc) {
		if i == 0 {
			f.Code = s
		} else {
			f.Params = append(f.Params, s)
		}
	}
	if f.Code == "" {
		f.Code = "INTERNAL_ERROR"
	}
	c.scrub(f)
	return core.Wrap(CodeFor(f.Code), op, describe(f), f)
}

// Login opens a session (session.login_with_password, version "1.0"),
// following HOST_IS_SLAVE to the pool master. Calling it again replaces
// the session.
func (c *Client) Login(ctx context.Context) error {
	ctx, cancel := c.withDeadline(ctx, "session.login_with_password")
	defer cancel()
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	return c.loginLocked(ctx)
}

func (c *Client) loginLocked(ctx context.Context) error {
	for redirects := 0; ; redirects++ {
		c.mu.Lock()
		base := c.base
		c.mu.Unlock()
		v, err := c.rpc(ctx, base, "session.login_with_password",
			[]any{c.creds.user, string(c.creds.password), "1.0", c.opts.Originator})
		if f := FailureOf(err); f != nil && f.Code == "HOST_IS_SLAVE" && redirects < defaultMaxRedirects {
			if rerr := c.redirect(base, f); rerr != nil {
				return rerr
			}
			continue
		}
		if err != nil {
			return err
		}
		ref := AsString(v)
		if !strings.HasPrefix(ref, "OpaqueRef:") {
			return core.Errorf(core.ErrEngine, "xapi session.login_with_password", "XAPI returned no session reference")
		}
		if len(ref) > maxRefLen {
			// It goes with every later call: a 200 MiB one was uploaded again each time.
			return core.Errorf(core.ErrEngine, "xapi session.login_with_password", "XAPI returned a session reference of %d bytes (a reference is ~46)", len(ref))
		}
		c.mu.Lock()
		c.session = ref
		c.mu.Unlock()
		core.Logf(core.LevelDebug, "xapi: logged in to %s as %s", base.Host, c.creds.user)
		return nil
	}
}

// redirect switches to the pool master named by a HOST_IS_SLAVE failure.
func (c *Client) redirect(from *url.URL, f *Failure) error {
	if len(f.Params) == 0 || f.Params[0] == "" {
		return core.Wrap(core.ErrEngine, "xapi", "HOST_IS_SLAVE without a master address", f)
	}
	to, err := masterURL(from, f.Params[0])
	if err != nil {
		return core.Wrap(core.ErrEngine, "xapi", "cannot follow HOST_IS_SLAVE to the pool master", fmt.Errorf("%w (%w)", err, f))
	}
	c.mu.Lock()
	if c.base == from {
		c.base, c.session = to, ""
	}
	c.mu.Unlock()
	core.Logf(core.LevelInfo, "xapi: %s is a pool member; using the master at %s", from.Host, to.Host)
	return nil
}

// masterURL builds the master's URL from HOST_IS_SLAVE's parameter: XAPI
// sends a bare address (the current scheme and port are kept); a
// host:port keeps the current scheme; a full URL (the simulator on
// loopback) is used as given but must have the current scheme: a client
// on https never follows a pool member's word to plain http, where the
// login would carry the password in clear text (ErrSchemeChange).
func masterURL(from *url.URL, addr string) (*url.URL, error) {
	addr = strings.TrimSpace(addr)
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" || u.User != nil || !validHost(u.Hostname()) {
			return nil, fmt.Errorf("bad master URL %s", quoteText(addr))
		}
		if u.Scheme != from.Scheme {
			return nil, fmt.Errorf("%w: the master's URL is %s, the client uses %s", ErrSchemeChange, quoteText(u.Scheme+"://"), from.Scheme)
		}
		u.RawQuery, u.Fragment = "", ""
		if u.Path == "" {
			u.Path = "/"
		}
		return u, nil
	}
	to := *from
	if ip := net.ParseIP(strings.Trim(addr, "[]")); ip != nil {
		to.Host = net.JoinHostPort(ip.String(), from.Port())
		if from.Port() == "" {
			to.Host = strings.Trim(addr, "[]")
			if ip.To4() == nil {
				to.Host = "[" + to.Host + "]"
			}
		}
		return &to, nil
	}
	if h, p, err := net.SplitHostPort(addr); err == nil {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 || !validHost(h) {
			return nil, fmt.Errorf("bad master address %s", quoteText(addr))
		}
		to.Host = net.JoinHostPort(h, p)
		return &to, nil
	}
	if !validHost(addr) {
		return nil, fmt.Errorf("bad master address %s", quoteText(addr))
	}
	to.Host = addr
	if from.Port() != "" {
		to.Host = net.JoinHostPort(addr, from.Port())
	}
	return &to, nil
}

// validHost accepts an IP address or a DNS name (letters, digits, '-',
// '.', '_'). A scrubbed address ("***") is not one.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// Logout ends the session (session.logout). It is a no-op without one; a
// session XAPI already forgot is not an error.
func (c *Client) Logout(ctx context.Context) error {
	ctx, cancel := c.withDeadline(ctx, "session.logout")
	defer cancel()
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	sess, base := c.session, c.base
	c.session = ""
	c.mu.Unlock()
	if sess == "" {
		return nil
	}
	_, err := c.rpc(ctx, base, "session.logout", []any{sess})
	if IsFailure(err, "SESSION_INVALID") || IsFailure(err, "HOST_IS_SLAVE") {
		return nil
	}
	return err
}

// Close logs out and releases idle connections.
func (c *Client) Close(ctx context.Context) error {
	err := c.Logout(ctx)
	c.httpc.CloseIdleConnections()
	return err
}

func (c *Client) ensureSession(ctx context.Context) (string, *url.URL, error) {
	c.mu.Lock()
	sess, base := c.session, c.base
	c.mu.Unlock()
	if sess != "" {
		return sess, base, nil
	}
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	sess, base = c.session, c.base
	c.mu.Unlock()
	if sess != "" {
		return sess, base, nil
	}
	if err := c.loginLocked(ctx); err != nil {
		return "", nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session, c.base, nil
}

// Call invokes an XAPI method with the session prepended to args (logging
// in first if needed) and returns the decoded Value: string (also for
// 64-bit ints and refs), bool, float64, time.Time, []any, map[string]any
// or "" for void. Integers in args are sent as strings, as XAPI expects.
//
// On SESSION_INVALID it logs in again once and retries; on HOST_IS_SLAVE it
// switches to the master and retries. The call is bounded by ctx's
// deadline and by Options.CallTimeout, except the long operations (VM.clone,
// VM.copy, VM.provision, VM.start, the shutdowns, the destroys, event.from), which
// ctx alone bounds (CallTimeout when ctx has no deadline).
func (c *Client) Call(ctx context.Context, method string, args ...any) (any, error) {
	ctx, cancel := c.withDeadline(ctx, method)
	defer cancel()
	relogged := false
	for redirects := 0; ; {
		sess, base, err := c.ensureSession(ctx)
		if err != nil {
			return nil, err
		}
		v, err := c.rpc(ctx, base, method, append([]any{sess}, args...))
		if f := FailureOf(err); f != nil && !pastGrace(ctx) {
			switch {
			case f.Code == "SESSION_INVALID" && !relogged:
				relogged = true
				c.mu.Lock()
				if c.session == sess {
					c.session = ""
				}
				c.mu.Unlock()
				core.Logf(core.LevelInfo, "xapi: session expired; logging in again")
				continue
			case f.Code == "HOST_IS_SLAVE" && redirects < defaultMaxRedirects:
				redirects++
				if rerr := c.redirect(base, f); rerr != nil {
					return nil, rerr
				}
				continue
			}
		}
		return v, err
	}
}

// CallNoSession invokes a method that takes no session argument (the
// login family, or the simulator's sim.* methods). No retries.
func (c *Client) CallNoSession(ctx context.Context, method string, args ...any) (any, error) {
	ctx, cancel := c.withDeadline(ctx, method)
	defer cancel()
	c.mu.Lock()
	base := c.base
	c.mu.Unlock()
	return c.rpc(ctx, base, method, args)
}
