package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// VM is one Lua virtual machine: an engine behind a lock. Its methods are
// safe for concurrent use; calls on one VM run one at a time.
type VM struct {
	mu     sync.Mutex
	opts   Options
	engine Engine
	closed bool
}

// Open validates opts, fills in defaults and opens the engine.
func Open(opts Options) (*VM, error) {
	if opts.Engine == "" {
		opts.Engine = "embedded"
	}
	if opts.Interpreter == "" {
		opts.Interpreter = "lua"
	}
	opts.Limits = opts.Limits.WithDefaults()
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
	return &VM{opts: opts, engine: eng}, nil
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
// for everything else (timeout, closed VM, bad input, engine failure).
func (vm *VM) Exec(ctx context.Context, code []byte, eo ExecOptions) (*Result, error) {
	if err := CheckSource(code, vm.opts.Limits); err != nil {
		return nil, err
	}
	name := eo.ChunkName
	if name == "" {
		name = "=input"
	}
	return vm.run(ctx, &Request{Code: code, ChunkName: name, Fresh: !vm.opts.Persistent, PrintResults: eo.PrintResults}, eo.Timeout)
}

// ExecFile runs the script at path (chunk name "@path"; returned values are
// not printed, as with `lua script.lua`).
func (vm *VM) ExecFile(ctx context.Context, path string, eo ExecOptions) (*Result, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, Wrap(ErrFileNotFound, "exec_file", "cannot read script "+path, unwrapPathError(err))
	}
	if st.IsDir() {
		return nil, Errorf(ErrFileNotFound, "exec_file", "cannot read script %s: is a directory", path)
	}
	if st.Size() > int64(vm.opts.Limits.MaxSourceBytes) {
		return nil, Errorf(ErrTooLarge, "exec_file", "script %s is %d bytes, over the limit of %d bytes", path, st.Size(), vm.opts.Limits.MaxSourceBytes)
	}
	code, err := os.ReadFile(path)
	if err != nil {
		return nil, Wrap(ErrFileNotFound, "exec_file", "cannot read script "+path, unwrapPathError(err))
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
	eo.PrintResults = false
	return vm.run(ctx, &Request{Code: code, ChunkName: "@" + path, Fresh: !vm.opts.Persistent}, eo.Timeout)
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
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil, Errorf(ErrClosed, "exec", "VM is closed")
	}
	res, err := vm.engine.Exec(ctx, req)
	if res != nil && len(res.ErrorMessage) > MaxErrorMessageBytes {
		res.ErrorMessage = truncateMessage(res.ErrorMessage)
	}
	var e *Error
	if timeout > 0 && errors.As(err, &e) && e.Code == ErrTimeout && !errors.Is(ctx.Err(), context.Canceled) {
		// Say which limit was hit; the engine's message says what it did about it.
		return nil, &Error{Code: ErrTimeout, Op: e.Op, Msg: fmt.Sprintf("timed out after %v: %s", timeout, e.Msg)}
	}
	return res, err
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

// Close closes the engine. Closing twice is harmless.
func (vm *VM) Close() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil
	}
	vm.closed = true
	return vm.engine.Close()
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
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil, Errorf(ErrClosed, "install_package", "VM is closed")
	}
	pi, ok := vm.engine.(PackageInstaller)
	if !ok {
		return nil, Errorf(ErrUnsupported, "install_package", "the %s engine installs packages into package environments (bioxen_packages), not into the VM", vm.opts.Engine)
	}
	return pi.InstallPackage(ctx, request)
}
