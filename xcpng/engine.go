package xcpng

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"libbioxen/core"
	"libbioxen/luaproc"
	"libbioxen/sshsession"
	"libbioxen/xapi"
)

func init() { core.Register("xcpng", Open) }

// Engine is a Lua driver running in an XCP-ng VM. core.VM serialises Exec
// and Close; Interrupt may come from another goroutine.
type Engine struct {
	opts core.Options
	cfg  Config

	client *xapi.Client
	vm     *xapi.VM
	conn   *sshsession.Conn

	mu  sync.Mutex // guards drv for Interrupt
	drv *remote
}

// remote is one interpreter running the driver over an exec channel.
type remote struct {
	stream  *sshsession.Stream
	pid     int // the remote `timeout` process, leader of its process group
	frames  chan frameOrErr
	stderr  *tail
	version string
}

type frameOrErr struct {
	f   luaproc.Frame
	err error
}

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
		e.teardown(true)
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
	ipCtx, cancel := context.WithTimeout(ctx, e.cfg.IPTimeout)
	defer cancel()
	vm, err := client.Launch(ipCtx, xapi.ProvisionSpec{
		Template: e.cfg.Template, Name: e.cfg.VMName,
		Description: "Lua VM of pylua_bioxen_vm_lib",
		OtherConfig: map[string]string{"bioxen-vm-id": e.opts.Name},
	})
	if err != nil {
		return err
	}
	e.vm = vm
	core.Logf(core.LevelInfo, "xcpng VM %q: running at %s:%d", e.opts.Name, vm.IP, vm.SSHPort)
	conn, err := sshsession.Dial(ctx, sshsession.Config{
		Host: vm.IP, Port: vm.SSHPort, User: e.cfg.VMUser,
		Password: e.cfg.VMPassword, KeyFiles: e.cfg.VMKeyFiles,
		KnownHostsFile: e.cfg.KnownHosts, TrustOnFirstUse: e.cfg.TrustOnFirstUse,
		InsecureIgnoreHostKey: e.cfg.InsecureHostKey,
	})
	if err != nil {
		return err
	}
	e.conn = conn
	return e.startDriver(ctx)
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
// frames on its fds 3 and 4 and its raw output on the channel's stderr.
func (e *Engine) startDriver(ctx context.Context) error {
	lua, err := sshsession.ShellQuote(e.cfg.Lua)
	if err != nil {
		return err
	}
	boot, err := sshsession.ShellQuote(luaproc.Bootstrap("/dev/fd/3", "/dev/fd/4"))
	if err != nil {
		return err
	}
	v := e.luaVersion()
	paths := fmt.Sprintf(`%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;`, remoteTree, v, remoteTree, v)
	cpaths := fmt.Sprintf(`%s/lib/lua/%s/?.so;;`, remoteTree, v)
	suffix := ""
	if v != "5.1" {
		suffix = "_" + strings.ReplaceAll(v, ".", "_")
	}
	cmd := fmt.Sprintf(`echo $$; LUA_PATH%s="%s" LUA_CPATH%s="%s" exec timeout -s KILL %d %s -e %s 3<&0 4>&1 0</dev/null 1>&2`,
		suffix, paths, suffix, cpaths, int(e.cfg.MaxLifetime/time.Second), lua, boot)
	stream, err := e.conn.Start(ctx, cmd)
	if err != nil {
		return err
	}
	out := bufio.NewReaderSize(stream.Stdout, 64<<10)
	r := &remote{stream: stream, frames: make(chan frameOrErr, 16), stderr: newTail(64 << 10)}
	go r.stderr.drain(stream.Stderr)
	line, err := readLine(ctx, out)
	if err == nil {
		r.pid, err = strconv.Atoi(strings.TrimSpace(line))
	}
	if err != nil {
		stream.Close()
		return core.Errorf(core.ErrEngine, "xcpng", "the VM did not start the Lua driver: %v %s", err, r.stderr.String())
	}
	if _, err := stream.Stdin.Write(luaproc.BootstrapFrame()); err != nil {
		stream.Close()
		return core.Wrap(core.ErrConnection, "xcpng", "sending the driver", err)
	}
	go func() {
		for {
			f, err := luaproc.ReadFrame(out)
			r.frames <- frameOrErr{f, err}
			if err != nil {
				close(r.frames)
				return
			}
		}
	}()
	select {
	case fe, ok := <-r.frames:
		if !ok || fe.err != nil || fe.f.Tag != 'H' {
			e.kill(r)
			return core.Errorf(core.ErrLuaNotFound, "xcpng", "%s in the VM did not start: %s", e.cfg.Lua, strings.TrimSpace(r.stderr.String()))
		}
		r.version = string(fe.f.Payload)
	case <-ctx.Done():
		e.kill(r)
		return core.Errorf(core.ErrTimeout, "xcpng", "the Lua driver in the VM did not answer")
	}
	e.mu.Lock()
	e.drv = r
	e.mu.Unlock()
	core.Logf(core.LevelDebug, "xcpng VM %q: driver running (%s, remote pid %d)", e.opts.Name, r.version, r.pid)
	return nil
}

func readLine(ctx context.Context, r *bufio.Reader) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case x := <-ch:
		return x.s, x.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// kill ends the remote interpreter's whole process group and the channel.
func (e *Engine) kill(r *remote) {
	if r.pid > 0 && e.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = e.conn.Run(ctx, fmt.Sprintf("kill -KILL -- -%d 2>/dev/null || kill -KILL %d 2>/dev/null; true", r.pid, r.pid), nil, sshsession.Limits{})
		cancel()
	}
	r.stream.Close()
}

func (e *Engine) dropDriver() {
	e.mu.Lock()
	r := e.drv
	e.drv = nil
	e.mu.Unlock()
	if r != nil {
		e.kill(r)
	}
}

// Exec runs one chunk in the VM, restarting the driver (and reconnecting)
// first if it was lost.
func (e *Engine) Exec(ctx context.Context, req *core.Request) (*core.Result, error) {
	e.mu.Lock()
	r := e.drv
	e.mu.Unlock()
	if r == nil {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := e.startDriver(sctx)
		cancel()
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		r = e.drv
		e.mu.Unlock()
	}
	lim := e.opts.Limits
	frame := luaproc.AppendRequest(nil, req, lim)
	if _, err := r.stream.Stdin.Write(frame); err != nil {
		e.dropDriver()
		return nil, core.Wrap(core.ErrConnection, "exec", "the connection to the VM broke; the next call reconnects", err)
	}
	call := luaproc.NewCall(lim)
	call.Output = req.Output
	for {
		select {
		case fe, ok := <-r.frames:
			if !ok || fe.err != nil {
				e.dropDriver()
				msg := "the Lua interpreter in the VM ended or the connection broke; the next call restarts it"
				if tail := strings.TrimSpace(r.stderr.String()); tail != "" {
					msg += ": " + tail
				}
				return nil, core.Errorf(core.ErrConnection, "exec", "%s", msg)
			}
			done, err := call.Apply(fe.f)
			if err != nil {
				e.dropDriver()
				return nil, core.Wrap(core.ErrEngine, "exec", "the driver in the VM broke the protocol", err)
			}
			if done {
				return call.Result(), nil
			}
		case <-ctx.Done():
			e.dropDriver()
			return nil, core.Errorf(core.ErrTimeout, "exec", "the interpreter in the VM was killed; it restarts on the next call (globals are lost)")
		}
	}
}

// Close stops the interpreter, closes the connection, shuts the VM down and
// destroys it (with its disks) unless it is persistent, and logs out.
func (e *Engine) Close() error {
	e.teardown(!e.cfg.Persistent)
	return nil
}

func (e *Engine) teardown(destroy bool) {
	e.dropDriver()
	if e.conn != nil {
		e.conn.Close()
		e.conn = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if e.vm != nil {
		if err := e.vm.Shutdown(ctx, 60*time.Second); err != nil {
			core.Logf(core.LevelWarn, "xcpng VM %q: shutdown: %v", e.opts.Name, err)
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
	mu  sync.Mutex
	buf []byte
	max int
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) drain(r interface{ Read([]byte) (int, error) }) {
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

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
