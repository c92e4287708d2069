//go:build linux

// Package luaproc is libbioxen's "process" engine: it runs a real Lua
// interpreter (lua5.1 ... lua5.4, LuaJIT) as a child process executing our
// driver (driver.lua) and talks to it with the frame protocol of
// docs/protocol.md over pipes.
//
// The frame codec (Frame, Parser, ReadFrame, WriteFrame, DecodeValues) and
// the per-call state machine (Call) know nothing of pipes, so another
// transport (an SSH channel) can drive the same driver with them.
package luaproc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"libbioxen/core"
)

func init() { core.Register("process", Open) }

// HelloTimeout bounds how long Open (or a restart) waits for the driver's
// hello frame.
const HelloTimeout = 10 * time.Second

// quitGrace is how long Close waits for the interpreter to exit after Q
// before it kills the process group.
const quitGrace = 200 * time.Millisecond

// Child file descriptors: the driver reads frames from fd 3 and writes
// frames to fd 4.
const (
	childIn  = "/dev/fd/3"
	childOut = "/dev/fd/4"
)

// Engine runs chunks in a Lua interpreter child process. Its methods are
// serialized by a mutex (core.VM adds its own lock on top), except
// Interrupt and Pid, which may be called while Exec runs.
type Engine struct {
	mu     sync.Mutex
	opts   core.Options
	interp string // as given (for messages)
	closed bool

	p         *proc // nil when no interpreter runs (not started, or lost)
	pid       atomic.Int64
	version   string // the hello payload of the last interpreter
	persisted bool   // a non-fresh call ran on the current interpreter

	res  Call
	rbuf []byte
	// backlog: readFrames left complete frames in the parser when its time
	// slice ran out (a slow output listener); loop applies them before it
	// waits for the pipes again.
	backlog bool
	wbuf    []byte // bytes for the driver; those before wpos are written
	wpos    int

	// Interrupts (docs/protocol.md, "Interrupts"). intrMu guards callActive
	// and the setting of intrReq; Interrupt never takes mu.
	intrMu     sync.Mutex
	callActive bool        // an Exec is under way
	intrReq    atomic.Bool // Interrupt asked to stop the running chunk
	// Owned by the goroutine running Exec:
	canIntr  bool // the driver handles SIGINT and can still be re-armed
	armed    bool // its SIGINT handler is installed and no SIGINT was sent since
	awaitAck bool // the call is done; an A frame was sent to re-arm the driver
	// The running call's CPU budget (0: none) and the interpreter's CPU
	// clock when it started; hostCPU is the CPU time this process spent on
	// the call's behalf (resolving and holding its paths: L and K frames),
	// which counts too.
	cpuBudget, cpuStart, hostCPU time.Duration
	// held: descriptors the host holds for the driver's K frame (see
	// releaseHeld).
	held []heldFile
	// holdPID, when not 0, is the pid K answers name instead of this
	// process's (tests: an interpreter that cannot open what is held).
	holdPID int
	// policy: the sandbox's directories, which K frames must stay in
	// (nil: trusted, none).
	policy *policy

	// wake is a self-pipe that a cancelled context or Interrupt writes
	// to, so the poll loop notices them as well as deadlines.
	wakeMu     sync.Mutex
	wakeClosed bool
	wake       [2]int
}

// proc is one running interpreter.
type proc struct {
	process *os.Process
	pid     int
	pidfd   int // becomes readable when the process exits; -1 if unsupported
	in      int // frames to the driver (its fd 3)
	out     int // frames from the driver (its fd 4)
	stdout  int // its fd 1
	stderr  int // its fd 2

	outEOF, stdoutEOF, stderrEOF bool
	parser                       Parser
	waited                       bool
	state                        *os.ProcessState
}

// Open starts the interpreter named by opts.Interpreter and waits for the
// driver's hello. It returns *core.Error ErrLuaNotFound when the
// interpreter cannot be found or executed, ErrEngine when it starts but
// the driver does not come up.
func Open(opts core.Options) (core.Engine, error) {
	opts.Limits = opts.Limits.WithDefaults()
	if opts.Interpreter == "" {
		opts.Interpreter = "lua"
	}
	e := &Engine{opts: opts, interp: opts.Interpreter, rbuf: make([]byte, 64<<10), wake: [2]int{-1, -1}}
	var w [2]int
	if err := syscall.Pipe2(w[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, core.Wrap(core.ErrEngine, "open", "cannot create a pipe", err)
	}
	e.wake = w
	if err := e.start(context.Background()); err != nil {
		e.closeWake()
		return nil, err
	}
	return e, nil
}

// Pid returns the process id of the running interpreter, 0 when none runs
// (after a crash or timeout, before the next call restarts it).
// It does not wait for a running call, so a test can signal the process
// while a chunk runs.
func (e *Engine) Pid() int { return int(e.pid.Load()) }

// Version returns what the driver reported in its hello frame, e.g.
// "Lua 5.4" or "Lua 5.1 LuaJIT 2.1.0-beta3".
func (e *Engine) Version() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version
}

// childEnv is the parent's environment without LUA_INIT variables, which
// would run code before the driver. When the VM has package paths (a
// package environment), they go in front of the interpreter's defaults
// through LUA_PATH/LUA_CPATH (";;" keeps the defaults), and versioned
// LUA_PATH_5_x variables of the parent are dropped so they cannot win.
func childEnv(opts core.Options) []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "LUA_INIT", "LUA_INIT_5_1", "LUA_INIT_5_2", "LUA_INIT_5_3", "LUA_INIT_5_4":
			continue
		case "LUA_PATH", "LUA_PATH_5_2", "LUA_PATH_5_3", "LUA_PATH_5_4":
			if opts.PackagePath != "" {
				continue
			}
		case "LUA_CPATH", "LUA_CPATH_5_2", "LUA_CPATH_5_3", "LUA_CPATH_5_4":
			if opts.PackageCPath != "" {
				continue
			}
		}
		out = append(out, kv)
	}
	if opts.PackagePath != "" {
		out = append(out, "LUA_PATH="+opts.PackagePath+";;")
	}
	if opts.PackageCPath != "" {
		out = append(out, "LUA_CPATH="+opts.PackageCPath+";;")
	}
	return out
}

// start launches the interpreter and waits for the hello frame, within
// HelloTimeout and ctx's deadline.
func (e *Engine) start(ctx context.Context) error {
	path, err := exec.LookPath(e.interp)
	if err != nil {
		return core.Wrap(core.ErrLuaNotFound, "open", fmt.Sprintf("lua interpreter %q not found or not executable", e.interp), unwrapExec(err))
	}
	var pipes [4][2]int // child stdout, child stderr, to driver, from driver
	var fds []int
	closeAll := func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	for i := range pipes {
		if err := syscall.Pipe2(pipes[i][:], syscall.O_CLOEXEC); err != nil {
			closeAll()
			return core.Wrap(core.ErrEngine, "open", "cannot create a pipe", err)
		}
		fds = append(fds, pipes[i][0], pipes[i][1])
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		closeAll()
		return core.Wrap(core.ErrEngine, "open", "cannot open "+os.DevNull, err)
	}
	childFiles := []*os.File{
		devnull,
		os.NewFile(uintptr(pipes[0][1]), "stdout"),
		os.NewFile(uintptr(pipes[1][1]), "stderr"),
		os.NewFile(uintptr(pipes[2][0]), "frames-in"),
		os.NewFile(uintptr(pipes[3][1]), "frames-out"),
	}
	// Every other descriptor is closed in the child: one this process
	// holds without close-on-exec (a C host's, one inherited from the
	// host's parent) reached the interpreter and its os.execute children,
	// which kept the host's pipes open (a reader of one never saw EOF).
	// A nil entry is a descriptor the child closes before exec.
	files := append(make([]*os.File, 0, highestFD()+1), childFiles...)
	files = files[:cap(files)]
	process, err := startProcess(path, append([]string{e.interp}, Args(childIn, childOut)...), &os.ProcAttr{
		Env:   childEnv(e.opts),
		Files: files,
		// The interpreter dies with this process (see startProcess).
		Sys: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	for _, f := range childFiles {
		f.Close() // closes the child ends in this process
	}
	if err != nil {
		for _, fd := range []int{pipes[0][0], pipes[1][0], pipes[2][1], pipes[3][0]} {
			syscall.Close(fd)
		}
		code := core.ErrEngine
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) ||
			errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.EISDIR) {
			code = core.ErrLuaNotFound
		}
		return core.Wrap(code, "open", fmt.Sprintf("cannot run lua interpreter %q (%s)", e.interp, path), unwrapExec(err))
	}
	// Resource limits, before the interpreter gets the driver: it is
	// blocked reading the bootstrap frame, which is sent below.
	if err := e.applyRlimits(process.Pid); err != nil {
		process.Kill()
		process.Wait()
		for _, fd := range []int{pipes[0][0], pipes[1][0], pipes[2][1], pipes[3][0]} {
			syscall.Close(fd)
		}
		return core.Wrap(core.ErrEngine, "open", "cannot set the lua interpreter's resource limits", err)
	}
	p := &proc{
		process: process,
		pid:     process.Pid,
		pidfd:   -1,
		stdout:  pipes[0][0],
		stderr:  pipes[1][0],
		in:      pipes[2][1],
		out:     pipes[3][0],
	}
	for _, fd := range []int{p.stdout, p.stderr, p.in, p.out} {
		syscall.SetNonblock(fd, true)
	}
	if fd, err := pidfdOpen(p.pid); err == nil {
		p.pidfd = fd
	}
	e.p = p
	e.pid.Store(int64(p.pid))
	e.persisted = false
	e.canIntr, e.armed = false, false

	deadline := time.Now().Add(HelloTimeout)
	ctxDeadline, hasCtxDeadline := ctx.Deadline()
	if hasCtxDeadline && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	}
	e.res.Reset(core.Limits{MaxOutputBytes: 64 << 10})
	e.wbuf, e.wpos = append(e.wbuf[:0], BootstrapFrame()...), 0
	e.policy = nil
	if e.opts.Trusted {
		e.wbuf = append(e.wbuf, PolicyFrame(e.opts)...)
	} else {
		e.policy = newPolicy(e.opts)
		e.wbuf = append(e.wbuf, e.policy.frame()...)
	}
	stop := e.armWake(ctx)
	err = e.loop(ctx, deadline, true)
	stop()
	e.trimBuffers()
	if err == nil {
		return nil
	}
	// The driver did not come up.
	e.kill()
	stderr := core.Printable(strings.TrimSpace(string(e.res.StderrTail(4 << 10))))
	var msg string
	switch {
	case errors.Is(err, errDeadline) && hasCtxDeadline && !ctxDeadline.After(deadline):
		return core.Wrap(core.ErrTimeout, "exec", "the call's deadline passed while the lua interpreter was starting", context.DeadlineExceeded)
	case errors.Is(err, errCanceled):
		return core.Wrap(core.ErrTimeout, "exec", "the call was cancelled while the lua interpreter was starting", ctx.Err())
	case errors.Is(err, errDeadline):
		msg = fmt.Sprintf("lua interpreter %q did not start the driver within %v", e.interp, HelloTimeout)
	case errors.Is(err, errDied):
		msg = fmt.Sprintf("lua interpreter %q exited before the driver started (%s)", e.interp, p.exitText())
	default:
		msg = fmt.Sprintf("lua interpreter %q did not start the driver: %v", e.interp, err)
	}
	if stderr != "" {
		msg += "; stderr: " + stderr
	}
	if n := e.opts.Limits.MaxMemoryBytes; n > 0 && n < smallMemoryLimit {
		// RLIMIT_AS this low leaves the interpreter no room to start (it
		// failed loading its libraries under 8 MiB).
		msg += fmt.Sprintf("; its memory limit of %d bytes is likely too small to start it (give it 16 MiB or more)", n)
	}
	return core.Errorf(core.ErrEngine, "open", "%s", msg)
}

// smallMemoryLimit is the memory limit under which a failed start names
// the limit as the likely cause.
const smallMemoryLimit = 16 << 20

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Exec runs one chunk. See core.Engine.
func (e *Engine) Exec(ctx context.Context, req *core.Request) (*core.Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, core.Errorf(core.ErrClosed, "exec", "VM is closed")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, core.Wrap(core.ErrTimeout, "exec", "the call's deadline passed before it started", err)
	}
	e.setCallActive(true)
	defer e.setCallActive(false)
	if core.InterruptRequested(ctx) {
		e.Interrupt() // it came before setCallActive and did nothing
	}
	if e.p == nil {
		if err := e.start(ctx); err != nil {
			return nil, err
		}
	}
	lim := e.opts.Limits
	if !req.Fresh {
		e.persisted = true
	}
	// Bytes not yet written stay first: the start's loop ends at the
	// driver's hello, which comes before the driver reads the policy, and
	// the policy may not have fit in the pipe by then.
	e.wbuf, e.wpos = e.wbuf[:copy(e.wbuf, e.wbuf[e.wpos:])], 0
	if e.canIntr && !e.armed {
		// A SIGINT was spent and the driver could not be re-armed after
		// that call: have it re-arm before this one.
		e.wbuf = append(e.wbuf, "A 0\n"...)
	}
	flags := int64(flagSync)
	if canHold() {
		flags |= flagHold
	}
	e.wbuf = appendRequest(e.wbuf, req, lim, flags)
	e.res.Reset(lim)
	e.res.Output = req.Output
	defer func() { e.res.Output = nil }()

	deadline, _ := ctx.Deadline()
	e.startCPUBudget(lim.MaxCPUTime)
	stop := e.armWake(ctx)
	err := e.loop(ctx, deadline, false)
	stop()
	// The descriptors held for K frames are closed when Exec returns: on
	// an error, after the kill. The driver may have an answer it has not
	// opened yet, and a number closed while it runs may be taken by
	// another of this process's files before its open.
	defer e.releaseHeld()
	e.res.FlushOutput()
	e.cpuBudget = 0
	e.trimBuffers()
	lost := ""
	if e.persisted {
		lost = "; its global state is lost"
	}
	if err == nil {
		r := e.res.Result()
		if !r.Success && isNoMem(r.ErrorMessage) {
			// The interpreter hit its address-space limit (MemoryLimit):
			// start afresh rather than run on in a starved process.
			e.kill()
			return nil, core.Errorf(core.ErrNoMem, "exec", "the chunk ran out of memory (%s); the lua interpreter was stopped and a new one starts on the next call%s", r.ErrorMessage, lost)
		}
		return r, nil
	}
	switch {
	case errors.Is(err, errCPU):
		e.kill()
		return nil, core.Errorf(core.ErrCPULimit, "exec",
			"the call used up its CPU time budget (%v): the lua interpreter was killed and a new one starts on the next call%s", lim.MaxCPUTime, lost)
	case errors.Is(err, errDeadline), errors.Is(err, errCanceled):
		e.kill()
		what, cause := "the call ran past its deadline", error(context.DeadlineExceeded)
		if errors.Is(err, errCanceled) {
			what, cause = "the call was cancelled", ctx.Err()
		}
		return nil, core.Wrap(core.ErrTimeout, "exec",
			fmt.Sprintf("%s: the lua interpreter was killed and a new one starts on the next call%s", what, lost), cause)
	case errors.Is(err, errDied):
		p := e.p
		alive := !p.exited(exitWait)
		e.kill()
		msg := fmt.Sprintf("lua interpreter %q (pid %d) died during the call (%s); a new one starts on the next call%s",
			e.interp, p.pid, p.exitText(), lost)
		if alive {
			// It closed its frame pipe and ran on: the SIGKILL that
			// ended it was ours, not its death.
			msg = fmt.Sprintf("lua interpreter %q (pid %d) closed its frame pipe during the call and kept running; it was killed and a new one starts on the next call%s",
				e.interp, p.pid, lost)
		}
		code, sig := core.ErrEngine, p.signal()
		if sig == syscall.SIGXCPU {
			code = core.ErrCPULimit // the kernel's RLIMIT_CPU backstop
		}
		if stderr := core.Printable(strings.TrimSpace(string(e.res.StderrTail(4 << 10)))); stderr != "" {
			msg += "; stderr: " + stderr
			// Out of memory: the interpreter's last words say so and it
			// exited (LuaJIT's panic aborts). A crash by another signal
			// after a chunk wrote the words is a crash.
			last := stderr[strings.LastIndexByte(stderr, '\n')+1:]
			if strings.Contains(last, "not enough memory") && (sig == 0 || sig == syscall.SIGABRT) {
				code = core.ErrNoMem
			}
		}
		return nil, core.Errorf(code, "exec", "%s", msg)
	default:
		e.kill()
		msg := fmt.Sprintf("lua interpreter %q: %v; it was killed and a new one starts on the next call%s", e.interp, err, lost)
		if stderr := core.Printable(strings.TrimSpace(string(e.res.StderrTail(4 << 10)))); stderr != "" {
			msg += "; stderr: " + stderr
		}
		return nil, core.Errorf(core.ErrEngine, "exec", "%s", msg)
	}
}

func (e *Engine) trimBuffers() {
	if cap(e.wbuf) > 1<<20 && e.pendingIn() == 0 {
		e.wbuf, e.wpos = nil, 0
	}
	if e.p != nil && e.p.parser.Buffered() == 0 && cap(e.p.parser.buf) > 1<<20 {
		e.p.parser = Parser{}
	}
}

// Internal loop outcomes.
var (
	errDeadline = errors.New("deadline passed")
	errCanceled = errors.New("context cancelled")
	errDied     = errors.New("interpreter died")
	errCPU      = errors.New("cpu budget used up")
)

// startCPUBudget arms the CPU budget of the call about to run: the poll
// loop reads the interpreter's CPU clock whenever it wakes and at the
// latest when the budget could be used up, and stops the call past it.
// RLIMIT_CPU (whole seconds) is set as a backstop: the kernel sends SIGXCPU
// a second or two past the budget even if this process cannot run.
func (e *Engine) startCPUBudget(budget time.Duration) {
	e.cpuBudget, e.hostCPU = 0, 0
	if budget <= 0 || e.p == nil {
		return
	}
	used, err := processCPU(e.p.pid)
	if err != nil {
		core.Logf(core.LevelWarn, "lua VM %q: cannot read the interpreter's CPU clock (%v); its CPU budget is not enforced", e.opts.Name, err)
		return
	}
	e.cpuBudget, e.cpuStart = budget, used
	if err := prlimitSoft(e.p.pid, syscall.RLIMIT_CPU, uint64((used+budget)/time.Second)+2); err != nil {
		core.Logf(core.LevelDebug, "lua VM %q: RLIMIT_CPU: %v", e.opts.Name, err)
	}
}

// cpuLeft is the running call's CPU budget left (ok false: no budget):
// what neither the interpreter nor the host on its behalf has used.
func (e *Engine) cpuLeft() (left time.Duration, ok bool) {
	if e.cpuBudget <= 0 || e.p == nil {
		return 0, false
	}
	used, err := processCPU(e.p.pid)
	if err != nil {
		return 0, false
	}
	return e.cpuBudget - (used - e.cpuStart) - e.hostCPU, true
}

// forCall runs fn, work for the running call's L or K frame, and charges
// the CPU time it took to the call: a chunk could otherwise have the host
// resolve long chains of symbolic links ("/proc/self/root" repeated,
// milliseconds each) at next to no cost to its own budget.
func (e *Engine) forCall(fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	fn()
	e.hostCPU += threadCPU() - start
}

// releaseHeld closes the descriptors held for the driver's K frames. The
// driver opens a held file right after it reads the answer, before it
// sends anything else: any later frame, or the end of the call, means it
// is done with them.
func (e *Engine) releaseHeld() {
	for _, h := range e.held {
		h.release()
	}
	e.held = e.held[:0]
}

// armWake makes ctx's cancellation write to the wake pipe while a call
// runs; the returned func disarms it.
func (e *Engine) armWake(ctx context.Context) func() bool {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, e.wakeUp)
}

// wakeUp makes the poll loop of a running call look at ctx and intrReq.
func (e *Engine) wakeUp() {
	e.wakeMu.Lock()
	defer e.wakeMu.Unlock()
	if !e.wakeClosed {
		syscall.Write(e.wake[1], []byte{1})
	}
}

func (e *Engine) setCallActive(on bool) {
	e.intrMu.Lock()
	e.callActive = on
	e.intrReq.Store(false)
	e.intrMu.Unlock()
}

// Interrupt stops the running chunk and keeps the interpreter and its
// state, like ^C in lua -i: the interpreter gets a SIGINT and the chunk
// ends with the error "interrupted!" (ReturnCode 1). It returns at once and
// may be called from any goroutine; it does nothing when no chunk runs. A
// chunk that does not stop (a JIT-compiled LuaJIT loop, a long C call, a
// chunk that catches the error and goes on) runs on: the caller then
// cancels the call's context, which kills the interpreter (core.Session
// does so after core.InterruptGrace). See core.Interrupter.
func (e *Engine) Interrupt() {
	e.intrMu.Lock()
	defer e.intrMu.Unlock()
	if !e.callActive {
		return
	}
	e.intrReq.Store(true)
	e.wakeUp()
}

// maySignal reports whether the loop should send SIGINT now: an interrupt
// is asked for, the whole request reached the driver, and its handler is
// armed.
func (e *Engine) maySignal(pending int) bool {
	return pending == 0 && e.canIntr && e.armed && e.intrReq.Load()
}

func (e *Engine) closeWake() {
	e.wakeMu.Lock()
	defer e.wakeMu.Unlock()
	if !e.wakeClosed {
		e.wakeClosed = true
		syscall.Close(e.wake[0])
		syscall.Close(e.wake[1])
	}
}

// loop writes e.wbuf to the driver and reads frames and raw output until
// the call's D frame (hello false) or the H frame (hello true). deadline
// zero means none. It returns nil, errDeadline, errCanceled, errDied or a
// protocol error; the caller kills the interpreter on an error.
func (e *Engine) loop(ctx context.Context, deadline time.Time, hello bool) error {
	p := e.p
	var pfds [6]pollFd
	e.backlog = false // a killed call's frames died with its parser
	// Most requests fit in the pipe: write before the first poll.
	e.writeIn()
	e.awaitAck = false
	if !hello && e.intrReq.Load() {
		// An Interrupt came before this loop, and its wake-up may be
		// spent: the start's loop (a new interpreter) drained the wake
		// pipe. maySignal is checked after each poll, so poll at once.
		e.wakeUp()
	}
	// finished decides what a readFrames result means for the loop: stop
	// (with err), or go on. After a call that spent the driver's SIGINT
	// handler, the driver is re-armed before Exec returns, so that the
	// interpreter is never left between calls with SIGINT's default action.
	finished := func(done bool, err error) (bool, error) {
		if err != nil {
			return true, err
		}
		if done && !hello && e.canIntr && !e.armed && !e.awaitAck {
			e.awaitAck = true
			e.sendIn([]byte("A 0\n"))
			return false, nil
		}
		return done, nil
	}
	for {
		var ts *syscall.Timespec
		if !deadline.IsZero() {
			rem := time.Until(deadline)
			if rem <= 0 {
				return errDeadline
			}
			t := syscall.NsecToTimespec(int64(rem))
			ts = &t
		}
		if e.backlog {
			ts = &syscall.Timespec{} // frames wait in the parser: do not block
		}
		if left, ok := e.cpuLeft(); ok && !hello {
			if left <= 0 {
				return errCPU
			}
			// CPU time passes no faster than wall-clock time (one thread).
			left = max(left, time.Millisecond)
			if ts == nil || int64(left) < ts.Nano() {
				t := syscall.NsecToTimespec(int64(left))
				ts = &t
			}
		}
		fds := pfds[:0]
		const in = pollIn
		iOut, iStdout, iStderr, iIn, iPid, iWake := -1, -1, -1, -1, -1, -1
		if !p.outEOF {
			iOut = len(fds)
			fds = append(fds, pollFd{fd: int32(p.out), events: in})
		}
		if !p.stdoutEOF {
			iStdout = len(fds)
			fds = append(fds, pollFd{fd: int32(p.stdout), events: in})
		}
		if !p.stderrEOF {
			iStderr = len(fds)
			fds = append(fds, pollFd{fd: int32(p.stderr), events: in})
		}
		if e.pendingIn() > 0 {
			iIn = len(fds)
			fds = append(fds, pollFd{fd: int32(p.in), events: pollOut})
		}
		if p.pidfd >= 0 {
			iPid = len(fds)
			fds = append(fds, pollFd{fd: int32(p.pidfd), events: in})
		}
		iWake = len(fds)
		fds = append(fds, pollFd{fd: int32(e.wake[0]), events: in})
		_, err := ppoll(fds, ts)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("poll: %w", err)
		}
		ready := func(i int) bool { return i >= 0 && fds[i].revents != 0 }

		// Frames first: raw bytes read after them were written after
		// them, or come before a later S/F/D frame, which drains the raw
		// pipes before it is applied.
		if ready(iOut) || e.backlog {
			if stop, err := finished(e.readFrames(hello, frameSlice)); stop {
				if err == nil && hello && (ready(iPid) || p.outEOF) {
					// The hello came with the interpreter's exit: the
					// start fails now, with what it wrote to stderr,
					// rather than hand the first call a dead process
					// ("died during the call", the start's stderr lost).
					e.drainRaw()
					return errDied
				}
				return err
			}
		}
		if ready(iStdout) {
			e.readRaw(p.stdout, &p.stdoutEOF, false)
		}
		if ready(iStderr) {
			e.readRaw(p.stderr, &p.stderrEOF, true)
		}
		if ready(iIn) {
			e.writeIn()
		}
		if ready(iPid) || p.outEOF {
			// The interpreter exited (or closed its frame pipe). Take
			// what it wrote last; a D frame may still be among it.
			if !p.outEOF {
				// A call's D frame still counts; a hello does not: the
				// interpreter is gone (see above).
				done, err := e.readFrames(hello, 0)
				if err != nil || (done && !hello) {
					return err
				}
			}
			e.drainRaw()
			return errDied
		}
		if ready(iWake) {
			var b [16]byte
			for {
				if n, _ := syscall.Read(e.wake[0], b[:]); n <= 0 {
					break
				}
			}
			if err := ctx.Err(); err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					return errDeadline
				}
				return errCanceled
			}
		}
		if !hello && !e.awaitAck && e.maySignal(e.pendingIn()) {
			// Take what the driver sent first: the call may be over, and
			// its output pipes are then empty, so that none of its writes
			// is blocked when the signal comes (Lua 5.4 does not restart
			// them).
			if stop, err := finished(e.readFrames(false, frameSlice)); stop {
				return err
			}
			if e.awaitAck {
				continue // the call is over
			}
			e.drainRaw()
			// The process group, as a terminal's ^C: a child the chunk
			// waits for (os.execute) stops too.
			syscall.Kill(-p.pid, syscall.SIGINT)
			e.armed = false
			e.intrReq.Store(false)
			// The end of the call comes after the frames in the pipe: take
			// them at the pipe's speed, not the listener's (Exec hands
			// them on once the call is over).
			e.res.DeferOutput()
		}
	}
}

// frameSlice bounds how long readFrames applies frames before it returns to
// loop, which then checks the deadline, the CPU budget, a cancellation and
// an interrupt. Applying a frame calls the output listener: one slower than
// the interpreter's writes kept the pipe full, readFrames never returned,
// and neither a timeout, nor interrupt, nor Close stopped the chunk.
const frameSlice = 20 * time.Millisecond

// readFrames reads the frame pipe until it would block and applies the
// frames. It returns done when the awaited frame (H or D) arrived. After
// slice (0: no limit) it returns with frames possibly left in the parser
// (e.backlog).
func (e *Engine) readFrames(hello bool, slice time.Duration) (bool, error) {
	p := e.p
	var start time.Time
	if slice > 0 {
		start = time.Now()
	}
	left := e.backlog // frames the previous slice left in the parser come first
	e.backlog = false
	for {
		n := len(e.rbuf) // after the backlog, read on
		if !left {
			var err error
			n, err = syscall.Read(p.out, e.rbuf)
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN {
				return false, nil
			}
			if err != nil || n == 0 {
				p.outEOF = true
				return false, nil
			}
			p.parser.Feed(e.rbuf[:n])
		}
		left = false
		for {
			if slice > 0 && time.Since(start) > slice {
				e.backlog = true // apply the rest after loop's checks
				return false, nil
			}
			f, ok, err := p.parser.Next()
			if err != nil {
				return false, err
			}
			if !ok {
				break
			}
			if len(e.held) > 0 {
				e.releaseHeld()
			}
			if hello {
				if f.Tag != 'H' || len(f.Args) != 1 {
					return false, protoErr("expected the hello frame, got %q", f.Tag)
				}
				e.version = string(f.Payload)
				e.canIntr = f.Args[0] == 1
				e.armed = e.canIntr
				return true, nil
			}
			switch f.Tag {
			case 'I':
				// An interrupt the host did not send spent the handler - or
				// the chunk raised "interrupted!" itself: the interpreter's
				// handler resets SIGINT to its default action when it
				// fires, so a handler still installed was not spent (taking
				// the driver's word, 1,030 such errors used up the 1,024
				// re-arm stubs, and a real interrupt then killed the
				// interpreter).
				if caught, ok := sigintCaught(p.pid); !ok || !caught {
					e.armed = false
				}
			case 'A':
				// The driver's answer to an A frame: not part of the result.
				if len(f.Args) != 1 || len(f.Payload) != 0 {
					return false, protoErr("frame %q with %d fields", f.Tag, len(f.Args)+1)
				}
				e.armed = f.Args[0] == 1
				e.canIntr = e.armed // 0: the driver cannot re-arm any more
				if !e.awaitAck {
					continue // the A frame sent before the request
				}
				e.awaitAck = false
				if p.parser.Buffered() != 0 {
					return false, protoErr("%d bytes after the end of the call", p.parser.Buffered())
				}
				return true, nil
			case 'W':
				// The driver waits for the answer before it starts a
				// child process (os.execute, io.popen). Every frame it
				// sent before is applied; the raw output written so far
				// belongs before what follows; only then may the child
				// write.
				if len(f.Args) != 1 || len(f.Payload) != 0 {
					return false, protoErr("frame %q with %d fields", f.Tag, len(f.Args)+1)
				}
				if e.awaitAck {
					return false, protoErr("frame %q after the end of the call", f.Tag)
				}
				e.drainRaw()
				e.sendIn(AppendFrameHeader(nil, 'W', 0, f.Args[0]))
				continue
			case 'L':
				// A sandboxed driver without realpath(3) asks for the
				// symbolic links of a path to be resolved.
				if len(f.Args) != 1 {
					return false, protoErr("frame %q with %d fields", f.Tag, len(f.Args)+1)
				}
				var r string
				e.forCall(func() { r = realPath(string(f.Payload)) })
				e.sendIn(fmt.Appendf(nil, "L %d %s\n", f.Args[0], hexPath(r)))
				continue
			case 'K':
				// A sandboxed driver without the FFI asks the host to take
				// hold of a checked path without following links (X flag
				// 32); it opens it through /proc/<pid>/fd/<n>.
				if len(f.Args) != 2 {
					return false, protoErr("frame %q with %d fields", f.Tag, len(f.Args)+1)
				}
				h, err := heldFile{fd: -1}, error(syscall.EACCES)
				if e.policy.mayHold(string(f.Payload), f.Args[1]) {
					e.forCall(func() { h, err = holdFile(string(f.Payload), f.Args[1]) })
				}
				if err == nil {
					e.held = append(e.held, h)
				}
				pid := os.Getpid()
				if e.holdPID != 0 {
					pid = e.holdPID
				}
				e.sendIn(heldAnswer(f.Args[0], pid, h.fd, err))
				continue
			case 'S', 'F', 'D':
				// Raw output written before this frame belongs before
				// what follows it.
				e.drainRaw()
			}
			done, err := e.res.Apply(f)
			if err != nil {
				return false, err
			}
			if done {
				if p.parser.Buffered() != 0 {
					return false, protoErr("%d bytes after the end of the call", p.parser.Buffered())
				}
				return true, nil
			}
		}
		if n < len(e.rbuf) {
			// A short read emptied the pipe; poll again.
			return false, nil
		}
	}
}

// pendingIn is the number of bytes still to be written to the driver.
func (e *Engine) pendingIn() int { return len(e.wbuf) - e.wpos }

// sendIn queues b for the driver and writes what the pipe takes now.
func (e *Engine) sendIn(b []byte) {
	if e.pendingIn() == 0 {
		e.wbuf, e.wpos = e.wbuf[:0], 0
	}
	e.wbuf = append(e.wbuf, b...)
	e.writeIn()
}

// writeIn writes what it can of the pending bytes to the driver. A failed
// write (EPIPE: the interpreter is gone) drops them; the loop then sees
// the exit and gathers the last output.
func (e *Engine) writeIn() {
	if e.pendingIn() == 0 {
		return
	}
	n, err := syscall.Write(e.p.in, e.wbuf[e.wpos:])
	if n > 0 {
		e.wpos += n
	}
	if err != nil && err != syscall.EAGAIN && err != syscall.EINTR {
		e.wpos = len(e.wbuf)
	}
}

// readRaw reads a raw output pipe until it would block.
func (e *Engine) readRaw(fd int, eof *bool, stderr bool) {
	for i := 0; i < 64; i++ {
		n, err := syscall.Read(fd, e.rbuf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err != syscall.EAGAIN {
				*eof = true
			}
			return
		}
		if n == 0 {
			*eof = true
			return
		}
		if stderr {
			e.res.RawStderr(e.rbuf[:n])
		} else {
			e.res.RawStdout(e.rbuf[:n])
		}
		if n < len(e.rbuf) {
			return
		}
	}
}

// drainRaw takes what is waiting in the raw stdout and stderr pipes.
func (e *Engine) drainRaw() {
	p := e.p
	if !p.stdoutEOF {
		e.readRaw(p.stdout, &p.stdoutEOF, false)
	}
	if !p.stderrEOF {
		e.readRaw(p.stderr, &p.stderrEOF, true)
	}
}

// kill ends the interpreter's process group, reaps it and closes its pipes.
func (e *Engine) kill() {
	p := e.p
	if p == nil {
		return
	}
	e.p = nil
	e.pid.Store(0)
	p.killAndWait()
}

func (p *proc) killAndWait() {
	if !p.waited {
		// The process is not reaped yet, so its pid and process group
		// cannot have been reused.
		syscall.Kill(-p.pid, syscall.SIGKILL)
		p.state, _ = p.process.Wait()
		p.waited = true
	}
	for _, fd := range []int{p.in, p.out, p.stdout, p.stderr, p.pidfd} {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
	p.in, p.out, p.stdout, p.stderr, p.pidfd = -1, -1, -1, -1, -1
}

// exitText describes how the process ended ("signal: segmentation
// fault", "exit status 1"); it reaps the process first if needed.
// signal is the signal that ended the interpreter (0: none or unknown).
func (p *proc) signal() syscall.Signal {
	if p.waited && p.state != nil {
		if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

// exitWait is how long a call whose interpreter closed its frame pipe
// waits for the interpreter's exit before it counts it as still running:
// a process that dies closes its descriptors a moment before its pidfd
// becomes readable.
const exitWait = 100 * time.Millisecond

// exited waits up to d for the interpreter to exit and reports whether it
// did; true when it cannot tell (no pidfd).
func (p *proc) exited(d time.Duration) bool {
	if p.waited || p.pidfd < 0 {
		return true
	}
	ts := syscall.NsecToTimespec(int64(d))
	for {
		// ppoll leaves the time not waited in ts when interrupted.
		n, err := ppoll([]pollFd{{fd: int32(p.pidfd), events: pollIn}}, &ts)
		if err == syscall.EINTR {
			continue
		}
		return err != nil || n > 0
	}
}

func (p *proc) exitText() string {
	if !p.waited {
		syscall.Kill(-p.pid, syscall.SIGKILL)
		p.state, _ = p.process.Wait()
		p.waited = true
	}
	if p.state == nil {
		return "unknown status"
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return p.state.String()
}

// quit asks the driver to exit, waits up to quitGrace, then kills the
// process group and reaps the interpreter. pending is what the host had not
// yet written to the driver (the rest of a policy bigger than the pipe):
// it goes first, as Q written among its bytes is no frame to the driver,
// which then waited out the grace.
func (p *proc) quit(pending []byte) {
	msg := append(pending[:len(pending):len(pending)], "Q 0\n"...)
	deadline := time.Now().Add(quitGrace)
	var buf [4096]byte
	for {
		if len(msg) > 0 {
			n, err := syscall.Write(p.in, msg)
			if n > 0 {
				msg = msg[n:]
			}
			if err != nil && err != syscall.EAGAIN && err != syscall.EINTR {
				msg = nil // the driver is gone
			}
		}
		rem := time.Until(deadline)
		if rem <= 0 {
			break
		}
		ts := syscall.NsecToTimespec(int64(rem))
		fds := []pollFd{{fd: int32(p.out), events: pollIn}, {fd: -1}, {fd: -1}}
		if p.outEOF {
			fds[0].fd = -1
		}
		if p.pidfd >= 0 {
			fds[1].fd, fds[1].events = int32(p.pidfd), pollIn
		}
		if len(msg) > 0 {
			fds[2].fd, fds[2].events = int32(p.in), pollOut
		}
		if _, err := ppoll(fds, &ts); err != nil && err != syscall.EINTR {
			break
		}
		if fds[1].revents != 0 {
			break // exited
		}
		if fds[0].revents != 0 {
			n, err := syscall.Read(p.out, buf[:])
			if n == 0 && err == nil {
				if p.pidfd < 0 {
					break // frame pipe closed: the driver is gone
				}
				p.outEOF = true
			}
		}
		if p.outEOF && p.pidfd >= 0 && len(msg) == 0 {
			// Wait on the pidfd alone.
			ts := syscall.NsecToTimespec(int64(max(time.Until(deadline), 0)))
			ppoll([]pollFd{{fd: int32(p.pidfd), events: pollIn}}, &ts)
			break
		}
	}
	p.killAndWait()
}

// Close stops the interpreter (Q, a short wait, then SIGKILL to its
// process group) and reaps it. Calling it again does nothing.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.p != nil {
		e.p.quit(e.wbuf[e.wpos:])
		e.wbuf, e.wpos = e.wbuf[:0], 0
		e.p = nil
		e.pid.Store(0)
	}
	e.closeWake()
	return nil
}

// PolicyFrame is the frame that tells the driver which sandbox policy to
// apply (docs/sandbox.md), sent once right after BootstrapFrame:
// "P <sandbox> <len>" with sandbox 1 unless opts.Trusted, and a payload of
// NUL-terminated entries, each a kind letter and an absolute path: "c" the
// working directory relative paths are resolved against, "a" an allowed
// directory (io.open, loadfile, dofile and require), "r" a read-only one
// (the same, but io.open for reading only: the package environments), "m"
// a module directory (require only). Directories are made absolute and their symbolic links
// resolved here.
func PolicyFrame(opts core.Options) []byte {
	if opts.Trusted {
		return AppendFrame(nil, 'P', []int64{0})
	}
	return newPolicy(opts).frame()
}

// frame is the P frame of a sandboxed VM with policy pol.
func (pol *policy) frame() []byte {
	var payload []byte
	add := func(kind byte, dirs ...string) {
		for _, p := range dirs {
			if p == "" || strings.IndexByte(p, 0) >= 0 {
				continue
			}
			payload = append(payload, kind)
			payload = append(payload, p...)
			payload = append(payload, 0)
		}
	}
	add('c', pol.cwd)
	add('r', pol.readOnly...)
	add('a', pol.allowed...)
	add('m', pol.modules...)
	return AppendFrame(nil, 'P', []int64{1}, payload)
}

// policy is a sandboxed VM's directories, absolute, their links resolved
// (PolicyFrame sends them to the driver).
type policy struct {
	cwd                        string
	allowed, readOnly, modules []string
}

func newPolicy(opts core.Options) *policy {
	resolve := func(d string) string {
		if d == "" {
			return ""
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return ""
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		return abs
	}
	pol := &policy{}
	if wd, err := os.Getwd(); err == nil {
		pol.cwd = resolve(wd)
	}
	for _, d := range append(templateDirs(opts.PackagePath), templateDirs(opts.PackageCPath)...) {
		pol.readOnly = append(pol.readOnly, resolve(d))
	}
	for _, d := range opts.AllowedPaths {
		pol.allowed = append(pol.allowed, resolve(d))
	}
	for _, d := range opts.ModuleRoots {
		pol.modules = append(pol.modules, resolve(d))
	}
	return pol
}

// mayHold reports whether the driver may ask the host to hold path p
// (how: holdCreate, holdUpdate): what the driver's own check lets it open.
// The host checks again, so that frames forged by a chunk (were the
// stream ever desynchronized) could not make it create files elsewhere.
// A trusted VM's driver sends no K frame.
func (pol *policy) mayHold(p string, how int64) bool {
	if pol == nil {
		return false
	}
	if core.PathUnder(p, pol.allowed) || p == "/dev/null" && how == 0 { // (the driver's probe: host.usable)
		return true
	}
	return how&(holdCreate|holdUpdate) == 0 && (core.PathUnder(p, pol.readOnly) || core.PathUnder(p, pol.modules))
}

// templateDirs turns package.path templates into the directories they
// search (".../share/lua/5.1/?.lua" -> ".../share/lua/5.1").
func templateDirs(templates string) []string {
	var out []string
	for _, t := range strings.Split(templates, ";") {
		if i := strings.Index(t, "?"); i > 0 {
			out = append(out, filepath.Clean(t[:i]))
		}
	}
	return out
}

// applyRlimits bounds interpreter pid's address space (RLIMIT_AS) by the
// VM's memory limit, so that a memory bomb ends in ErrNoMem instead of
// exhausting the host. Children of os.execute and io.popen inherit it.
func (e *Engine) applyRlimits(pid int) error {
	if n := e.opts.Limits.MaxMemoryBytes; n > 0 {
		if err := core.Prlimit(pid, syscall.RLIMIT_AS, uint64(n)); err != nil {
			return err
		}
	}
	return nil
}

// isNoMem tells Lua's memory error from others: its message is exactly
// "not enough memory" (the driver reports its own running out of memory
// while it prepares or finishes a call with that message too). A chunk's
// error that merely ends with it ("db: not enough memory") is not one.
func isNoMem(msg string) bool {
	return msg == "not enough memory"
}

// realPath resolves the symbolic links of absolute path p for the
// driver's directory check (core.RealPath: a dangling last link is
// followed; "" when it cannot be resolved: the driver refuses).
func realPath(p string) string {
	return core.RealPath(p)
}

// hexPath encodes a path for the driver's one-line answer ("-": none).
func hexPath(p string) string {
	if p == "" {
		return "-"
	}
	return hex.EncodeToString([]byte(p))
}
