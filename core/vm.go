package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// VM is one Lua virtual machine: an engine behind a lock. Its methods are
// safe for concurrent use; calls on one VM run one at a time.
type VM struct {
	opts   Options
	engine Engine
	// turn is the engine's lock: one token, held by the running call. A
	// channel rather than a mutex, so that Close can stop waiting for it.
	turn chan struct{}
	// done is closed by Close: calls still waiting for their turn give up.
	done chan struct{}

	mu           sync.Mutex              // guards the fields below
	closed       bool                    // Close was called: calls fail with ErrClosed
	engineClosed bool                    // engine.Close was called (by Close or by the last call)
	cancel       context.CancelCauseFunc // of the running call; Close calls it
	owner        any                     // the *sessionRun or *stopper whose call runs, if any (see ownerKey)
	asked        *atomic.Bool            // the running call's: an engine interrupt was asked for (see InterruptRequested)
}

// CloseGrace is how long Close waits for a running call to stop after
// cancelling it. A call stuck in something that does not see its context
// (a long Go builtin) ends later; the engine is closed when it does.
const CloseGrace = 2 * time.Second

// errClosing is the cause with which Close cancels the running call.
var errClosing = errors.New("the VM was closed while the call ran")

// Open validates opts, fills in defaults and opens the engine.
func Open(opts Options) (*VM, error) {
	if opts.Engine == "" {
		opts.Engine = "embedded"
	}
	if opts.Interpreter == "" {
		opts.Interpreter = "lua"
	}
	opts.Limits = opts.Limits.WithDefaults()
	if len(opts.EngineConfig) > 0 && !isJSONObject(opts.EngineConfig) {
		// Not quoted: it may hold the engine's secrets.
		return nil, Errorf(ErrInvalid, "open", "the engine config is not a JSON object (%d bytes)", len(opts.EngineConfig))
	}
	f, ok := factories[opts.Engine]
	if !ok {
		names := Engines()
		sort.Strings(names)
		return nil, Errorf(ErrInvalid, "open", "unknown engine %q (valid engines: %s)", opts.Engine, strings.Join(names, ", "))
	}
	eng, err := f(opts)
	if err != nil {
		return nil, err
	}
	return &VM{opts: opts, engine: eng, turn: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// isJSONObject reports whether data is one JSON object.
func isJSONObject(data []byte) bool {
	var obj map[string]json.RawMessage
	return json.Unmarshal(data, &obj) == nil && obj != nil
}

// Options returns the options the VM was opened with (defaults filled in).
func (vm *VM) Options() Options { return vm.opts }

// ExecOptions tune one call.
type ExecOptions struct {
	// Timeout bounds the call's wall-clock time; zero means no limit.
	Timeout time.Duration
	// PrintResults prints returned values like the Lua REPL.
	PrintResults bool
	// ChunkName overrides the chunk name ("=input" by default).
	ChunkName string
	// Interrupt, when set, lets another goroutine stop the call
	// (Interrupt.Trigger), as ^C does in lua -i.
	Interrupt *Interrupt
}

// CheckSource applies the source rules shared by every entry point: not
// empty (only white space counts as empty), no NUL byte, not over the size
// limit.
func CheckSource(code []byte, lim Limits) error {
	if len(bytes.TrimSpace(code)) == 0 {
		return Errorf(ErrInvalid, "exec", "code is empty")
	}
	if len(code) > lim.MaxSourceBytes {
		return Errorf(ErrTooLarge, "exec", "code is %d bytes, over the limit of %d bytes", len(code), lim.MaxSourceBytes)
	}
	if i := bytes.IndexByte(code, 0); i >= 0 {
		return Errorf(ErrInvalid, "exec", "code contains a NUL byte at offset %d", i)
	}
	return nil
}

// Exec runs code. A Lua error is reported in the Result; the error return is
// for everything else (timeout, closed VM, bad input, engine failure). code
// is not read after Exec returns, even when a call that did not stop is
// left running.
func (vm *VM) Exec(ctx context.Context, code []byte, eo ExecOptions) (*Result, error) {
	if err := CheckSource(code, vm.opts.Limits); err != nil {
		return nil, err
	}
	name := eo.ChunkName
	if name == "" {
		name = "=input"
	}
	req := &Request{Code: code, ChunkName: name, Fresh: !vm.opts.Persistent, PrintResults: eo.PrintResults}
	return vm.exec(ctx, req, eo)
}

// ExecFile runs the script at path (chunk name "@path"; returned values are
// not printed, as with `lua script.lua`). Only regular files are run: a
// device, FIFO or socket is ErrInvalid (/dev/zero would never end and a
// FIFO without a writer would block before any deadline applies). At most
// the source-size limit is read, also from a file that grows meanwhile.
func (vm *VM) ExecFile(ctx context.Context, path string, eo ExecOptions) (*Result, error) {
	code, err := readScript(path, vm.opts.Limits.MaxSourceBytes)
	if err != nil {
		return nil, err
	}
	// A script may start with a #! line, which lua(1) skips.
	if bytes.HasPrefix(code, []byte("#")) {
		if i := bytes.IndexByte(code, '\n'); i >= 0 {
			code = append([]byte("--"), code[i:]...)
		} else {
			code = nil
		}
	}
	if len(bytes.TrimSpace(code)) == 0 {
		return &Result{Success: true, Values: []byte("[]")}, nil
	}
	if err := CheckSource(code, vm.opts.Limits); err != nil {
		return nil, err
	}
	req := &Request{Code: code, ChunkName: "@" + path, Fresh: !vm.opts.Persistent}
	return vm.exec(ctx, req, eo)
}

// readScript reads the regular file at path, refusing anything else and
// anything over max bytes.
func readScript(path string, max int) ([]byte, error) {
	const op = "exec_file"
	st, err := os.Stat(path)
	if err != nil {
		return nil, Wrap(ErrFileNotFound, op, "cannot read script "+path, unwrapPathError(err))
	}
	if err := checkScriptMode(path, st.Mode()); err != nil {
		return nil, err
	}
	if st.Size() > int64(max) {
		return nil, Errorf(ErrTooLarge, op, "script %s is %d bytes, over the limit of %d bytes", path, st.Size(), max)
	}
	// O_NONBLOCK: should the path have become a FIFO since the Stat, the
	// open does not wait for a writer (the mode is checked again below).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, Wrap(ErrFileNotFound, op, "cannot read script "+path, unwrapPathError(err))
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, Wrap(ErrFileNotFound, op, "cannot read script "+path, unwrapPathError(err))
	}
	if err := checkScriptMode(path, st.Mode()); err != nil {
		return nil, err
	}
	code, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, Wrap(ErrFileNotFound, op, "cannot read script "+path, unwrapPathError(err))
	}
	if len(code) > max {
		return nil, Errorf(ErrTooLarge, op, "script %s is over the limit of %d bytes (it grew while being read)", path, max)
	}
	return code, nil
}

func checkScriptMode(path string, mode os.FileMode) error {
	switch {
	case mode.IsDir():
		return Errorf(ErrFileNotFound, "exec_file", "cannot read script %s: is a directory", path)
	case !mode.IsRegular():
		return Errorf(ErrInvalid, "exec_file", "cannot run script %s: not a regular file (%s)", path, fileKind(mode))
	}
	return nil
}

func fileKind(mode os.FileMode) string {
	switch {
	case mode&os.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&os.ModeSocket != 0:
		return "a socket"
	case mode&os.ModeCharDevice != 0:
		return "a character device"
	case mode&os.ModeDevice != 0:
		return "a block device"
	}
	return "type " + mode.Type().String()
}

func (vm *VM) run(ctx context.Context, req *Request, timeout time.Duration) (*Result, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ctx, release, err := vm.acquire(ctx, "exec")
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := vm.engine.Exec(ctx, req)
	if (err != nil || res != nil && !res.Success) && errors.Is(context.Cause(ctx), errClosing) {
		// Close cancelled the call: say so rather than "cancelled".
		// (Not the engine's words: they say the VM is usable.) A chunk
		// that failed meanwhile is reported so too: the stop may reach it
		// as a Lua error (the process engine's driver raises
		// "interrupted!" on a SIGINT), and the VM is gone either way.
		return nil, Errorf(ErrClosed, "exec", "the VM was closed while the chunk ran; the chunk was stopped")
	}
	if res != nil {
		normalizeResult(res)
	}
	var e *Error
	if timeout > 0 && errors.As(err, &e) && e.Code == ErrTimeout && !errors.Is(ctx.Err(), context.Canceled) {
		// Say which limit was hit; the engine's message says what it did about it.
		return nil, &Error{Code: ErrTimeout, Op: e.Op, Msg: fmt.Sprintf("timed out after %v: %s", timeout, e.Msg)}
	}
	return res, err
}

// acquire waits for the VM's turn and registers the call, so that Close can
// cancel it. It returns the call's context and the function that ends the
// call; ErrClosed when the VM is closed or is closed while waiting,
// ErrTimeout when ctx ends while waiting (a call's timeout counts from its
// start, waiting included).
func (vm *VM) acquire(ctx context.Context, op string) (context.Context, func(), error) {
	select {
	case vm.turn <- struct{}{}:
	case <-vm.done:
		return nil, nil, Errorf(ErrClosed, op, "VM is closed")
	case <-ctx.Done():
		return nil, nil, notStarted(op, ctx.Err(), "while it waited for the VM's previous call to finish")
	}
	if err := ctx.Err(); err != nil {
		// The turn and the end came together (select picks either): a
		// call whose time is up does not start.
		vm.release()
		return nil, nil, notStarted(op, err, "before it started")
	}
	// Only a call with an owner (an Interrupt's, a session run's) can be
	// asked for the engine's interrupt (interruptFor): the others need no
	// flag.
	owner := ctx.Value(ownerKey{})
	var asked *atomic.Bool
	if owner != nil {
		asked = new(atomic.Bool)
		ctx = context.WithValue(ctx, askedKey{}, asked)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		cancel(nil)
		vm.release()
		return nil, nil, Errorf(ErrClosed, op, "VM is closed")
	}
	vm.cancel = cancel
	vm.owner = owner
	vm.asked = asked
	vm.mu.Unlock()
	if acquireHook != nil {
		acquireHook()
	}
	return ctx, func() {
		vm.mu.Lock()
		vm.cancel, vm.owner, vm.asked = nil, nil, nil
		vm.mu.Unlock()
		cancel(nil)
		vm.release()
	}, nil
}

// notStarted is the ErrTimeout of a call whose context ended (err) before
// it could start.
func notStarted(op string, err error, when string) error {
	what := "the call's timeout passed"
	if errors.Is(err, context.Canceled) {
		what = "the call was cancelled"
	}
	return Wrap(ErrTimeout, op, what+" "+when, err)
}

// interruptFor sends the engine's interrupt when the call holding the VM is
// owner's (a *sessionRun or a *stopper), and reports whether it did. vm.mu is
// held meanwhile, so that call cannot end and another begin between the
// check and the interrupt.
func (vm *VM) interruptFor(owner any, in Interrupter) bool {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if owner == nil || vm.owner != owner {
		return false
	}
	// Before Interrupt: an engine that is not yet ready for it sees the
	// request when it is (InterruptRequested).
	vm.asked.Store(true)
	in.Interrupt()
	return true
}

// askedKey marks the context of a call that holds the VM; its value (an
// *atomic.Bool) says whether an engine interrupt was asked for.
type askedKey struct{}

// acquireHook, when set (by tests only), runs in every call just after it
// has taken the VM, before the engine gets it.
var acquireHook func()

// InterruptRequested reports whether the engine interrupt was asked for the
// call that ctx (the context an engine's Exec gets) belongs to. An
// Interrupter's Interrupt may come after the call took the VM but before
// the engine is ready to stop it, and then does nothing: such an engine
// checks InterruptRequested once it is ready, so that no interrupt is
// lost.
func InterruptRequested(ctx context.Context) bool {
	asked, _ := ctx.Value(askedKey{}).(*atomic.Bool)
	return asked != nil && asked.Load()
}

// release gives the turn back. The last holder after Close closes the
// engine if Close could not (it stopped waiting: see CloseGrace).
func (vm *VM) release() {
	vm.mu.Lock()
	shut := vm.closed && !vm.engineClosed
	vm.engineClosed = vm.engineClosed || shut
	vm.mu.Unlock()
	if shut {
		if err := vm.engine.Close(); err != nil {
			Logf(LevelWarn, "VM %q: closing the engine after its last call: %v", vm.opts.Name, err)
		}
	}
	<-vm.turn
}

// normalizeResult makes ReturnCode a C int, saturating (os.exit(2^32) is
// 2147483647, not 0: the VM reports the code, no process exits with it),
// and Success agree with it.
func normalizeResult(r *Result) {
	switch {
	case r.ReturnCode > math.MaxInt32:
		r.ReturnCode = math.MaxInt32
	case r.ReturnCode < math.MinInt32:
		r.ReturnCode = math.MinInt32
	}
	if r.ReturnCode != 0 {
		r.Success = false
	}
	if len(r.ErrorMessage) > MaxErrorMessageBytes {
		r.ErrorMessage = truncateMessage(r.ErrorMessage)
	}
}

// MaxErrorMessageBytes caps Result.ErrorMessage: `error(string.rep("e",
// 1e8))` keeps its first 64 KiB and a note of what was dropped (stderr has
// the output cap, MaxOutputBytes).
const MaxErrorMessageBytes = 64 << 10

func truncateMessage(msg string) string {
	keep := MaxErrorMessageBytes - 64
	for keep > 0 && !utf8.RuneStart(msg[keep]) {
		keep--
	}
	return fmt.Sprintf("%s... [%d more bytes]", msg[:keep], len(msg)-keep)
}

// Close closes the engine. A call running meanwhile is cancelled as a
// timeout would stop it (it fails with ErrClosed), and calls waiting for
// their turn fail with ErrClosed. Close waits up to CloseGrace for the
// running call to stop; should it not (stuck in a Go builtin that does not
// see its context), Close returns nil and the engine is closed when that
// call ends. Closing twice is harmless.
func (vm *VM) Close() error {
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return nil
	}
	vm.closed = true
	close(vm.done)
	cancel := vm.cancel
	vm.mu.Unlock()
	if cancel != nil {
		cancel(errClosing)
	}
	grace := time.NewTimer(CloseGrace)
	defer grace.Stop()
	select {
	case vm.turn <- struct{}{}:
	case <-grace.C:
		Logf(LevelWarn, "VM %q: the running call did not stop within %v of Close; the engine is closed when it ends", vm.opts.Name, CloseGrace)
		return nil
	}
	defer func() { <-vm.turn }()
	vm.mu.Lock()
	shut := !vm.engineClosed
	vm.engineClosed = true
	vm.mu.Unlock()
	if !shut {
		return nil
	}
	return vm.engine.Close()
}

// Closed reports whether Close was called.
func (vm *VM) Closed() bool {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.closed
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// PackageInstaller is implemented by engines that install packages into
// the machine they run on (the "xcpng" engine, over SSH).
type PackageInstaller interface {
	InstallPackage(ctx context.Context, request []byte) ([]byte, error)
}

// InstallPackage asks the engine to install a package (request and reply
// are JSON, engine-defined). ErrUnsupported for engines without it.
func (vm *VM) InstallPackage(ctx context.Context, request []byte) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, release, err := vm.acquire(ctx, "install_package")
	if err != nil {
		return nil, err
	}
	defer release()
	pi, ok := vm.engine.(PackageInstaller)
	if !ok {
		return nil, Errorf(ErrUnsupported, "install_package", "the %s engine installs packages into package environments (bioxen_packages), not into the VM", vm.opts.Engine)
	}
	reply, err := pi.InstallPackage(ctx, request)
	if err != nil && errors.Is(context.Cause(ctx), errClosing) {
		return nil, Wrap(ErrClosed, "install_package", "the VM was closed during the install", err)
	}
	return reply, err
}
