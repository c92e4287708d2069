package xcpng

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"libbioxen/core"
	"libbioxen/luaproc"
	"libbioxen/sshsession"
	"libbioxen/xapi"
)

func init() { core.Register("xcpng", Open) }

// Engine is a Lua driver running in an XCP-ng VM. core.VM serialises Exec,
// InstallPackage and Close; the driver's frame reader runs on its own
// goroutine and may drop the driver (see remote) at any time.
type Engine struct {
	opts core.Options
	cfg  Config

	client *xapi.Client
	vm     *xapi.VM
	conn   *sshsession.Conn

	mu      sync.Mutex // guards drv, lost and lostDrv
	drv     *remote
	lost    error   // why the driver was dropped between calls; the next Exec returns it
	lostDrv *remote // the driver lost was about

	killers sync.WaitGroup // background kills of dropped drivers (each bounded, see killTimeout)
}

// String names the engine without a secret: the VM's name and its Config
// (passwords as ***). It reads only what Open set, so it is safe from any
// goroutine.
func (e *Engine) String() string {
	if e == nil {
		return "xcpng.Engine(nil)"
	}
	return fmt.Sprintf("xcpng.Engine{Name: %q, Config: %v}", e.opts.Name, e.cfg)
}

// GoString is String.
func (e *Engine) GoString() string { return e.String() }

// Format implements fmt.Formatter: every verb prints String (see
// xcpng.Config.Format), never the fields, which hold the passwords (cfg,
// and opts.EngineConfig).
func (e *Engine) Format(f fmt.State, verb rune) {
	core.FormatRedacted(f, verb, "*xcpng.Engine", e.String())
}

// remote is one interpreter running the driver over an exec channel.
//
// Its frames are read by one goroutine (readFrames) that hands them over
// one at a time, through an unbuffered channel, to the call waiting for
// them, so at most one frame (luaproc.MaxFrameSize) is held beyond the SSH
// channel's window. Between calls nothing may arrive: a byte from the
// driver while no call is active is a protocol error, and so is the end of
// the channel; either drops the driver at once, and the next Exec reports
// it. A stale frame is therefore never credited to a later call (short of
// one the driver sends in the instant the next request is being sent, which
// the host cannot tell from an answer to that request).
type remote struct {
	conn    *sshsession.Conn
	stream  *sshsession.Stream
	pid     int // the remote `timeout` process, leader of its process group
	frames  chan frameOrErr
	stderr  *tail // raw stderr of the current call (or the start), for error messages
	version string
	secrets []string // the passwords: the VM may echo them in what it sends

	stop     chan struct{} // closed when the driver is dropped: readers and writers give up
	stopOnce sync.Once
	settled  sync.Once     // the wait for the end of stderr (see settleStderr)
	killed   chan struct{} // closed when the background kill has finished
	killers  *sync.WaitGroup

	afterWrite func() // tests: runs after a write has returned, before it is reported

	mu      sync.Mutex
	active  bool  // a call (or the start) waits for frames
	stopped bool  // dropped; stop is (being) closed
	err     error // why it stopped, when the frame reader stopped it
}

type frameOrErr struct {
	f   luaproc.Frame
	err error
}

// pidLineMax bounds the first line of the driver's channel, the remote
// shell's pid: a longer line is a protocol error, not a reason to buffer.
const pidLineMax = 64

// dropGrace is how long a call that drops the driver (its deadline
// passed, the connection broke, the protocol was broken) waits for the
// remote interpreter to be killed before it returns anyway: Exec returns
// at most about dropGrace after its deadline. The kill goes on in the
// background, bounded by killTimeout (and sshsession.KillGrace).
const dropGrace = 500 * time.Millisecond

// writeSettle is how long a call that has its answer waits past its
// deadline for the news that its request was sent (see Exec).
const writeSettle = 100 * time.Millisecond

// killTimeout bounds the remote kill of a dropped driver's session.
// Closing its channel, done at the same time, is bounded by sshsession
// (Stream.Close: at most 2.5 × sshsession.KillGrace), so a dropped driver's
// goroutines are all gone within about killTimeout + sshsession.KillGrace.
const killTimeout = 5 * time.Second

// provisionTimeout bounds login, provisioning and the first connection,
// beyond the wait for the VM's address.
const provisionTimeout = 5 * time.Minute

// Open provisions and starts the VM and connects to it (the spec's five
// steps). Anything it created is removed again when a later step fails.
func Open(opts core.Options) (core.Engine, error) {
	cfg, err := ParseConfig(opts.EngineConfig)
	if err != nil {
		return nil, err
	}
	if cfg.VMName == "" {
		cfg.VMName = "bioxen-" + opts.Name
	}
	e := &Engine{opts: opts, cfg: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout+cfg.IPTimeout)
	defer cancel()
	if err := e.provision(ctx); err != nil {
		e.teardown(true, false)
		return nil, err
	}
	return e, nil
}

func (e *Engine) provision(ctx context.Context) error {
	client, err := xapi.New(xapi.Options{
		URL: e.cfg.Host, Username: e.cfg.Username, Password: xapi.Secret(e.cfg.Password),
		CAFile: e.cfg.TLSCAFile, Fingerprint: e.cfg.TLSFingerprint, Insecure: e.cfg.TLSInsecure,
		AllowLoopbackIP: e.cfg.AllowLoopbackIP, SSHPortKey: e.cfg.SSHPortKey,
	})
	if err != nil {
		return err
	}
	e.client = client
	if err := client.Login(ctx); err != nil {
		return err
	}
	core.Logf(core.LevelInfo, "xcpng VM %q: creating %q from template %q", e.opts.Name, e.cfg.VMName, e.cfg.Template)
	// Provisioning and VM.start (disk copies, the guest's boot) are
	// bounded by ctx, only the wait for the address by vm_ip_timeout. Once
	// the VM exists it is e.vm, so Open's teardown removes it on failure.
	vm, err := client.Provision(ctx, xapi.ProvisionSpec{
		Template: e.cfg.Template, Name: e.cfg.VMName,
		Description: "Lua VM of pylua_bioxen_vm_lib",
		OtherConfig: map[string]string{"bioxen-vm-id": e.opts.Name},
	})
	if err != nil {
		return err
	}
	e.vm = vm
	if err := vm.Start(ctx); err != nil {
		return err
	}
	ipCtx, cancel := context.WithTimeout(ctx, e.cfg.IPTimeout)
	defer cancel()
	if _, err := vm.WaitIP(ipCtx); err != nil {
		return err
	}
	core.Logf(core.LevelInfo, "xcpng VM %q: running at %s:%d", e.opts.Name, vm.IP, vm.SSHPort)
	conn, err := sshsession.Dial(ctx, sshsession.Config{
		Host: vm.IP, Port: vm.SSHPort, User: e.cfg.VMUser,
		Password: e.cfg.VMPassword, KeyFiles: e.cfg.VMKeyFiles,
		// The agent may hold keys for many hosts: a guest learns none
		// of them unless asked (as ssh's IdentitiesOnly).
		NoAgent:        !e.cfg.UseAgent,
		KnownHostsFile: e.cfg.KnownHosts, TrustOnFirstUse: e.cfg.TrustOnFirstUse,
		InsecureIgnoreHostKey: e.cfg.InsecureHostKey,
	})
	if err != nil {
		return err
	}
	e.conn = conn
	_, err = e.startDriver(ctx)
	return err
}

// luaVersion is the Lua version of the VM's interpreter, for package trees.
func (e *Engine) luaVersion() string {
	switch {
	case strings.Contains(e.cfg.Lua, "5.4"):
		return "5.4"
	case strings.Contains(e.cfg.Lua, "5.3"):
		return "5.3"
	}
	return "5.1"
}

// remoteTree is where packages are installed in the VM (per user).
const remoteTree = "$HOME/.bioxen/tree"

// startDriver starts the interpreter under a remote `timeout -s KILL`, so
// that a lost connection or a stuck call never leaves it running, with the
// frames on its fds 3 and 4 and its raw output on the channel's stderr;
// its end ends the channel (see the command).
// ctx bounds the whole start; on failure the channel is closed in the
// background and startDriver returns within dropGrace.
func (e *Engine) startDriver(ctx context.Context) (*remote, error) {
	lua, err := sshsession.ShellQuote(e.cfg.Lua)
	if err != nil {
		return nil, err
	}
	boot, err := sshsession.ShellQuote(luaproc.Bootstrap("/dev/fd/3", "/dev/fd/4"))
	if err != nil {
		return nil, err
	}
	v := e.luaVersion()
	paths := fmt.Sprintf(`%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;`, remoteTree, v, remoteTree, v)
	cpaths := fmt.Sprintf(`%s/lib/lua/%s/?.so;;`, remoteTree, v)
	suffix := ""
	if v != "5.1" {
		suffix = "_" + strings.ReplaceAll(v, ".", "_")
	}
	// When the interpreter ends, sh kills what is left of its process
	// group: children of os.execute inherit the channel's stdout (the
	// frames), and one left running in the background kept the channel
	// open, so a crashed interpreter went unnoticed until the call's
	// deadline. (A group kill, not pkill -s: kill(2) on a group also gets
	// a child forked meanwhile, and pkill would kill this sh first.)
	// The group kill ends the session with SIGKILL however the
	// interpreter ended, so sh first tells how on stderr (exitMarker).
	inner, err := sshsession.ShellQuote(fmt.Sprintf(`%s -e %s 3<&0 4>&1 0</dev/null 1>&2; echo "%s$?" >&2; kill -s KILL 0`, lua, boot, exitMarker))
	if err != nil {
		return nil, err
	}
	// Whole seconds, rounded up: `timeout 0` would mean no timeout at all.
	secs := int64(math.Ceil(e.cfg.MaxLifetime.Seconds()))
	if secs < 1 {
		secs = 1
	}
	cmd := fmt.Sprintf(`echo $$; LUA_PATH%s="%s" LUA_CPATH%s="%s" exec timeout -s KILL %d sh -c %s`,
		suffix, paths, suffix, cpaths, secs, inner)
	stream, err := e.conn.Start(ctx, cmd)
	if err != nil {
		return nil, err
	}
	out := bufio.NewReaderSize(stream.Stdout, 64<<10)
	r := &remote{conn: e.conn, stream: stream, frames: make(chan frameOrErr), stderr: newTail(64 << 10),
		stop: make(chan struct{}), killed: make(chan struct{}), killers: &e.killers,
		secrets: []string{e.cfg.Password, e.cfg.VMPassword}}
	go r.stderr.drain(stream.Stderr)
	failed := func(code core.Code, msg string, cause error) (*remote, error) {
		r.dropWait()
		if tail := r.stderrTail(); tail != "" {
			msg += " (its stderr: " + tail + ")"
		}
		return nil, core.Wrap(code, "xcpng", msg, cause)
	}
	r.pid, err = readPid(ctx, out, r.secrets...)
	if err != nil {
		return failed(ctxCode(ctx, core.ErrEngine), "the VM did not start the Lua driver", err)
	}
	r.active = true // the start waits for H
	go r.readFrames(out, e.onLost)
	if err := r.write(ctx, luaproc.BootstrapFrame()); err != nil {
		return failed(ctxCode(ctx, core.ErrConnection), "sending the driver to the VM", err)
	}
	select {
	case fe := <-r.frames:
		if fe.err != nil || fe.f.Tag != 'H' {
			return failed(core.ErrLuaNotFound, fmt.Sprintf("%s in the VM did not start", e.cfg.Lua), fe.err)
		}
		r.version = core.PeerText(string(fe.f.Payload), r.secrets...)
	case <-ctx.Done():
		return failed(core.ErrTimeout, "the Lua driver in the VM did not answer", ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := r.failure(); err != nil {
		// The frame reader dropped it already (output right after H).
		return nil, err
	}
	e.drv = r
	core.Logf(core.LevelDebug, "xcpng VM %q: driver running (%s, remote pid %d)", e.opts.Name, r.version, r.pid)
	return r, nil
}

// ctxCode is ErrTimeout when ctx has ended, else code.
func ctxCode(ctx context.Context, code core.Code) core.Code {
	if ctx.Err() != nil {
		return core.ErrTimeout
	}
	return code
}

// readPid reads the first line of the driver's channel, the pid the remote
// shell echoes, bounded by ctx and by pidLineMax bytes: a VM streaming
// bytes without a newline gets a *luaproc.ProtocolError, not our memory.
// The reading goroutine ends when the channel is closed. A line that is
// not a pid is shown as peer text, without the secrets (a VM echoing its
// password there had it in the error).
func readPid(ctx context.Context, r *bufio.Reader, secrets ...string) (int, error) {
	type res struct {
		line []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		line := make([]byte, 0, pidLineMax)
		for len(line) < pidLineMax {
			b, err := r.ReadByte()
			if err != nil {
				ch <- res{nil, err}
				return
			}
			if b == '\n' {
				ch <- res{line, nil}
				return
			}
			line = append(line, b)
		}
		ch <- res{nil, &luaproc.ProtocolError{Msg: fmt.Sprintf("the first line of the driver's channel is longer than %d bytes (it should be the remote shell's pid)", pidLineMax)}}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			return 0, x.err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(x.line)))
		if err != nil || pid <= 1 {
			return 0, &luaproc.ProtocolError{Msg: fmt.Sprintf("the first line of the driver's channel is %q, not the remote shell's pid", core.PeerText(string(x.line), secrets...))}
		}
		return pid, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// readFrames reads the driver's frames and hands them to the waiting call
// (see remote). It ends after handing over an error, when the driver is
// dropped, or when something arrives between calls: it then stops the
// driver and tells onLost why.
func (r *remote) readFrames(out *bufio.Reader, onLost func(*remote, error)) {
	for {
		_, perr := out.Peek(1)
		if _, ok := r.endedNormally(perr); ok {
			// Before taking r.mu: endedErr, below or in the call, waits
			// for the exit marker, which must not hold up begin or
			// shutdown.
			r.settleStderr()
		}
		r.mu.Lock()
		idle := !r.active && !r.stopped
		if idle {
			if perr != nil {
				r.stopWith(r.endedErr(perr))
			} else {
				r.stopWith(betweenCalls("a frame arrived while no call was active"))
			}
		}
		stopped, err := r.stopped, r.err
		r.mu.Unlock()
		if idle {
			r.shutdown()
			onLost(r, err)
			return
		}
		if stopped {
			return
		}
		fe := frameOrErr{err: perr}
		if perr == nil {
			fe.f, fe.err = luaproc.ReadFrame(out)
		}
		trailing := false
		if fe.err == nil && (fe.f.Tag == 'H' || fe.f.Tag == 'D') {
			// The last frame of the start or of a call: from now on
			// nothing may arrive until the next request. Bytes that came
			// with it are a protocol error (the frame itself still counts).
			r.mu.Lock()
			r.active = false
			if trailing = out.Buffered() > 0 && !r.stopped; trailing {
				r.stopWith(betweenCalls(fmt.Sprintf("bytes followed the %c frame", fe.f.Tag)))
				err = r.err
			}
			r.mu.Unlock()
		}
		select {
		case r.frames <- fe:
		case <-r.stop:
			return
		}
		if trailing {
			r.shutdown()
			onLost(r, err)
			return
		}
		if fe.err != nil {
			return
		}
	}
}

// stopWith marks r stopped because of err; the caller holds r.mu and then
// calls shutdown.
func (r *remote) stopWith(err error) {
	r.stopped = true
	r.err = err
}

// betweenCalls is the error of a driver that sent something while no call
// was waiting for it.
func betweenCalls(what string) error {
	return core.Wrap(core.ErrEngine, "exec",
		"the driver in the VM sent output between calls, so it was killed; the next call restarts it (globals are lost)",
		&luaproc.ProtocolError{Msg: what})
}

// endedErr is the error of a driver whose output ended (cause), with the
// tail of the interpreter's raw stderr.
//
// A cause that is a protocol error (a malformed frame) is the driver's
// fault, not the connection's: ErrEngine, as for the process engine. So is
// an interpreter that died while the connection lived (the channel ended
// normally, with its exit reported): ErrEngine naming how it ended, as the
// process engine reports a crash, not the ErrConnection of a lost
// connection.
func (r *remote) endedErr(cause error) error {
	code, msg := core.ErrConnection, "the Lua interpreter in the VM ended or the connection broke; the next call restarts it"
	var pe *luaproc.ProtocolError
	status, died := r.died(cause)
	switch {
	case errors.As(cause, &pe):
		code, msg = core.ErrEngine, "the Lua driver in the VM broke the protocol; the next call restarts it"
	case died:
		code, msg = core.ErrEngine, fmt.Sprintf("the Lua interpreter in the VM died (%s); the next call restarts it (globals are lost)", status)
	}
	if tail := r.stderrTail(); tail != "" {
		msg += ": " + tail
	}
	return core.Wrap(code, "exec", msg, core.PeerError(cause, r.secrets...))
}

// exitMarker starts the line sh writes to the channel's stderr when the
// interpreter has ended, followed by its exit status ($?; 128+n for
// signal n). It is taken out of the stderr shown.
const exitMarker = "bioxen-lua-exit:"

// stderrSettle bounds the wait for the rest of the channel's stderr (the
// exit marker) once its stdout has ended: both end with the channel, but
// are copied by different goroutines.
const stderrSettle = time.Second

// died tells whether the output ended (cause) because the interpreter
// ended while the connection lived, and how it ended. How is sh's exit
// marker when it came, else the session's end.
func (r *remote) died(cause error) (string, bool) {
	ei, ok := r.endedNormally(cause)
	if !ok {
		return "", false
	}
	r.settleStderr()
	if n, ok := r.stderr.exitStatus(); ok {
		if n > 128 {
			return "killed by signal " + syscall.Signal(n-128).String(), true
		}
		return fmt.Sprintf("exit status %d", n), true
	}
	if ei.Signal != "" {
		return "its session was killed by signal " + ei.Signal, true
	}
	return fmt.Sprintf("its session ended with exit status %d", ei.ExitStatus), true
}

// endedNormally reports whether the output ended (cause) with the channel
// while the connection lived: the channel ended normally (io.EOF; a lost
// connection is ErrConnLost) and the remote session's end was reported.
func (r *remote) endedNormally(cause error) (sshsession.ExitInfo, bool) {
	if !errors.Is(cause, io.EOF) || r.stream == nil {
		return sshsession.ExitInfo{}, false
	}
	select {
	case <-r.stream.Done():
	default:
		return sshsession.ExitInfo{}, false // output closed, process still running: not a death
	}
	ei, err := r.stream.Wait()
	if err != nil || ei.ExitMissing {
		return sshsession.ExitInfo{}, false
	}
	return ei, true
}

// settleStderr waits, once per driver, up to stderrSettle for the rest of
// the channel's stderr (the exit marker); later calls return at once.
func (r *remote) settleStderr() {
	r.settled.Do(func() {
		t := time.NewTimer(stderrSettle)
		defer t.Stop()
		select {
		case <-r.stderr.done:
		case <-t.C:
		}
	})
}

// stderrShown is how much of the end of the interpreter's raw stderr an
// error message shows.
const stderrShown = 2 << 10

// stderrTail is the end of the interpreter's raw stderr, for an error
// message: redacted (the VM may echo a password), made core.Printable,
// its last stderrShown bytes.
func (r *remote) stderrTail() string {
	s := strings.TrimSpace(r.stderr.String())
	for _, secret := range r.secrets {
		s = core.Redact(s, secret)
	}
	s = core.Printable(s)
	if len(s) > stderrShown {
		i := len(s) - stderrShown
		for i < len(s) && !utf8.RuneStart(s[i]) {
			i++
		}
		s = "…" + s[i:]
	}
	return s
}

// begin marks the start of a call; it fails when the driver was dropped.
func (r *remote) begin() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		if r.err != nil {
			return r.err
		}
		return core.Errorf(core.ErrConnection, "exec", "the Lua driver in the VM was stopped; the next call restarts it")
	}
	r.active = true
	// Error messages show the stderr of the failing call only, as the
	// process engine's do: what earlier calls wrote is not its doing.
	r.stderr.reset()
	return nil
}

// failure is why the frame reader stopped r (nil while it runs).
func (r *remote) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped && r.err == nil {
		return core.Errorf(core.ErrConnection, "xcpng", "the Lua driver in the VM was stopped")
	}
	return r.err
}

// write sends p on the driver's stdin, bounded by ctx and by the driver
// being dropped. A write still blocked then (a VM that stopped reading)
// ends when the channel is closed, which the drop does.
func (r *remote) write(ctx context.Context, p []byte) error {
	select {
	case err := <-r.writeAsync(p):
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.stop:
		return core.Errorf(core.ErrConnection, "xcpng", "the Lua driver in the VM was stopped")
	}
}

// writeAsync writes p from a goroutine; the result arrives on the channel.
func (r *remote) writeAsync(p []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := r.stream.Stdin.Write(p)
		if r.afterWrite != nil {
			r.afterWrite()
		}
		ch <- err
	}()
	return ch
}

// shutdown stops r: the frame reader and writers give up at once, and the
// remote session is killed and the channel closed in the background
// (bounded; see killTimeout). Idempotent; the returned channel is closed
// when the kill is done.
func (r *remote) shutdown() <-chan struct{} {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.stopOnce.Do(func() {
		close(r.stop)
		r.killers.Add(1)
		go func() {
			defer r.killers.Done()
			defer close(r.killed)
			r.kill()
		}()
	})
	return r.killed
}

// dropWait shuts r down and waits up to dropGrace for the kill.
func (r *remote) dropWait() {
	t := time.NewTimer(dropGrace)
	defer t.Stop()
	select {
	case <-r.shutdown():
	case <-t.C:
	}
}

// kill ends the remote interpreter's whole session and the channel.
func (r *remote) kill() {
	var wg sync.WaitGroup
	if r.pid > 1 && r.conn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
			defer cancel()
			// r.pid is the login shell's pid, so the session id too: pkill
			// -s reaches process groups made inside it (a nested
			// timeout(1) makes one), as Stream.Close does on a live
			// connection; after a lost connection this is the only kill.
			// Then `kill -s KILL --`, the POSIX form: dash (sh on Debian,
			// which runs this under Run's remote timeout) refuses
			// `kill -KILL --`, and the fallback then killed `timeout`
			// alone, leaving the interpreter running.
			_, _ = r.conn.Run(ctx, fmt.Sprintf("pkill --signal KILL -s %d 2>/dev/null || kill -s KILL -- -%d 2>/dev/null || kill -s KILL %d 2>/dev/null; true", r.pid, r.pid, r.pid), nil, sshsession.Limits{})
		}()
	}
	r.stream.Close()
	wg.Wait()
}

// onLost is told by r's frame reader that it dropped r between calls.
func (e *Engine) onLost(r *remote, err error) {
	e.mu.Lock()
	if e.drv == r {
		e.drv = nil
		e.lost, e.lostDrv = err, r
	}
	e.mu.Unlock()
	core.Logf(core.LevelWarn, "xcpng VM %q: %v", e.opts.Name, err)
}

// dropDriver drops the current driver, waiting up to dropGrace for the
// remote kill.
func (e *Engine) dropDriver() {
	e.mu.Lock()
	r := e.drv
	e.mu.Unlock()
	if r != nil {
		e.drop(r)
	}
}

// drop takes r out of service and waits up to dropGrace for its kill.
func (e *Engine) drop(r *remote) {
	e.mu.Lock()
	if e.drv == r {
		e.drv = nil
	}
	if e.lostDrv == r {
		e.lost, e.lostDrv = nil, nil
	}
	e.mu.Unlock()
	r.dropWait()
}

// Exec runs one chunk in the VM, restarting the driver (and reconnecting)
// first if it was lost. It returns at most about dropGrace after ctx's
// deadline (writeSettle more for a driver that answers a request it did not
// read): sending the chunk, waiting for the answer and starting the driver
// are all bounded by ctx, and the kill of a driver given up goes on in the
// background. A call answered before its deadline returns its result.
func (e *Engine) Exec(ctx context.Context, req *core.Request) (*core.Result, error) {
	e.mu.Lock()
	r, lost := e.drv, e.lost
	e.lost, e.lostDrv = nil, nil
	e.mu.Unlock()
	if lost != nil {
		return nil, lost
	}
	if r == nil {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		var err error
		r, err = e.startDriver(sctx)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	if err := r.begin(); err != nil {
		e.drop(r)
		return nil, err
	}
	lim := e.opts.Limits
	wrote := r.writeAsync(luaproc.AppendRequest(nil, req, lim))
	call := luaproc.NewCall(lim)
	call.Output = req.Output
	broken := func(err error) (*core.Result, error) {
		e.drop(r)
		return nil, core.Wrap(core.ErrConnection, "exec", "the connection to the VM broke; the next call reconnects", err)
	}
	timedOut := func() (*core.Result, error) {
		e.drop(r)
		return nil, core.Wrap(core.ErrTimeout, "exec", "the interpreter in the VM was killed; it restarts on the next call (globals are lost)", ctx.Err())
	}
	for {
		select {
		case err := <-wrote:
			if err != nil {
				return broken(err)
			}
			wrote = nil
		case fe := <-r.frames:
			if fe.err != nil {
				e.drop(r)
				return nil, r.endedErr(fe.err)
			}
			done, err := call.Apply(fe.f)
			if err != nil {
				e.drop(r)
				return nil, core.Wrap(core.ErrEngine, "exec", "the driver in the VM broke the protocol", err)
			}
			if !done {
				continue
			}
			if wrote != nil {
				// The answer may overtake the news that the request was
				// sent. The driver answered, so it read the request and
				// the news is due: the deadline passing meanwhile is no
				// reason to drop a driver whose call finished. Only a
				// driver that answered a request it did not read keeps
				// it waiting (writeSettle).
				var err error
				select {
				case err = <-wrote:
				case <-ctx.Done():
					t := time.NewTimer(writeSettle)
					defer t.Stop()
					select {
					case err = <-wrote:
					case <-t.C:
						return timedOut()
					}
				}
				if err != nil {
					return broken(err)
				}
			}
			return call.Result(), nil
		case <-r.stop:
			e.drop(r)
			return nil, r.failure() // never nil once stopped
		case <-ctx.Done():
			return timedOut()
		}
	}
}

// Close stops the interpreter, closes the connection, shuts the VM down and
// destroys it (with its disks) unless it is persistent, and logs out.
func (e *Engine) Close() error {
	e.teardown(!e.cfg.Persistent, true)
	return nil
}

// teardown stops the driver, closes the connection, shuts the VM down
// (cleanly first when clean) and destroys it when destroy. A failed Open
// does not shut down cleanly: Destroy's hard shutdown is enough for a VM
// that is thrown away, as xapi.Launch's cleanup does.
func (e *Engine) teardown(destroy, clean bool) {
	e.dropDriver()
	// The background kills are bounded (killTimeout); wait for them while
	// the connection is still up, so no goroutine outlives Close.
	e.killers.Wait()
	if e.conn != nil {
		e.conn.Close()
		e.conn = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if e.vm != nil {
		if clean {
			if err := e.vm.Shutdown(ctx, 60*time.Second); err != nil {
				core.Logf(core.LevelWarn, "xcpng VM %q: shutdown: %v", e.opts.Name, err)
			}
		}
		if destroy {
			if err := e.vm.Destroy(ctx); err != nil {
				core.Logf(core.LevelWarn, "xcpng VM %q: destroy: %v", e.opts.Name, err)
			}
		}
		e.vm = nil
	}
	if e.client != nil {
		_ = e.client.Close(ctx)
		e.client = nil
	}
}

// tail keeps the last bytes of the remote stderr for error messages.
type tail struct {
	mu   sync.Mutex
	buf  []byte
	max  int
	done chan struct{} // closed when drain has returned
}

func newTail(max int) *tail { return &tail{max: max, done: make(chan struct{})} }

func (t *tail) drain(r interface{ Read([]byte) (int, error) }) {
	defer close(t.done)
	b := make([]byte, 32<<10)
	for {
		n, err := r.Read(b)
		if n > 0 {
			t.mu.Lock()
			t.buf = append(t.buf, b[:n]...)
			if len(t.buf) > t.max {
				t.buf = t.buf[len(t.buf)-t.max:]
			}
			t.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// reset forgets what was kept.
func (t *tail) reset() {
	t.mu.Lock()
	t.buf = t.buf[:0]
	t.mu.Unlock()
}

// String is what was kept, without sh's exit marker line.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if i, j := markerLine(s); i >= 0 {
		s = s[:i] + s[j:]
	}
	return s
}

// exitStatus is the status in sh's exit marker line, if it came.
func (t *tail) exitStatus() (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	i, j := markerLine(s)
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s[i+len(exitMarker):j], "\n"))
	return n, err == nil && n >= 0
}

// markerLine is where the last line starting with exitMarker starts and
// ends, past its newline (-1: none). It is the last: the interpreter could
// write one too, sh writes its own after the interpreter has ended.
func markerLine(s string) (start, end int) {
	for i := strings.LastIndex(s, exitMarker); i >= 0; i = strings.LastIndex(s[:i], exitMarker) {
		if i == 0 || s[i-1] == '\n' {
			if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
				return i, i + j + 1
			}
			return i, len(s)
		}
	}
	return -1, -1
}
