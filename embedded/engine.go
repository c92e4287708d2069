// Package embedded is the default engine: gopher-lua (Lua 5.1 plus goto)
// running inside the host process. No Lua installation is needed.
package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

func init() { core.Register("embedded", Open) }

// Engine runs chunks in one gopher-lua state at a time. It is not safe for
// concurrent use; core.VM serialises calls.
type Engine struct {
	opts core.Options
	cfg  stateConfig
	st   *state // nil after the state was given up (timeout in a Go builtin)

	// stuck is closed when the chunk of a given-up state has returned (nil:
	// none). Until then the next call waits for it, so that a VM never has
	// more than one such chunk running: one cannot be stopped, and a
	// hostile caller could otherwise start any number of them.
	stuck chan struct{}
}

// Open opens an embedded engine.
func Open(opts core.Options) (core.Engine, error) {
	startGCTuner()
	opts.Limits = opts.Limits.WithDefaults()
	cfg := stateConfig{path: opts.PackagePath, cpath: opts.PackageCPath, trusted: opts.Trusted,
		allowed: strings.Join(opts.AllowedPaths, "\x00"), modules: strings.Join(opts.ModuleRoots, "\x00")}
	return &Engine{opts: opts, cfg: cfg, st: takeState(cfg)}, nil
}

// Close releases the Lua state. Closing twice is harmless.
func (e *Engine) Close() error {
	if e.st != nil {
		e.st.close()
		e.st = nil
	}
	return nil
}

// Exec runs one chunk.
func (e *Engine) Exec(ctx context.Context, req *core.Request) (*core.Result, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ch, printRes, err := compileWithin(ctx, req)
	if errors.Is(err, errCompileTimeout) {
		return nil, timeoutError(ctx, !req.Fresh, false)
	}
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			if req.REPL && se.eof {
				return &core.Result{Incomplete: true, Values: []byte("[]")}, nil
			}
			if req.Output != nil {
				req.Output(core.Stderr, []byte(se.msg))
			}
			return &core.Result{ReturnCode: 1, Stderr: []byte(se.msg), ErrorMessage: se.msg, Values: []byte("[]")}, nil
		}
		return nil, core.Wrap(core.ErrGeneric, "exec", "compile failed", err)
	}
	req.PrintResults = printRes
	if e.stuck != nil {
		select {
		case <-e.stuck:
			e.stuck = nil
		case <-ctx.Done():
			return nil, core.Errorf(core.ErrTimeout, "exec", "the VM is still busy: its previous chunk is stuck in a builtin that cannot be interrupted (try again later)")
		}
	}
	if e.st == nil {
		e.st = takeState(e.cfg)
	}
	st := e.st
	st.begin(e.opts.Limits, req.Output)
	st.ctx.begin(ctx, e.opts.Limits)
	// run runs the chunk; a Go panic outside the chunk's protected call (a
	// bug of ours) comes back as broken instead of ending the process,
	// which it would on the goroutine below.
	type outcome struct {
		res    *core.Result
		broken error
	}
	run := func() (o outcome) {
		defer func() {
			if r := recover(); r != nil {
				o.broken = core.Errorf(core.ErrGeneric, "exec", "internal error while running the chunk (the VM's state was reset): %v\n%s", r, debug.Stack())
			}
		}()
		leave := st.ctx.enter()
		defer leave()
		res := st.run(ch.proto, req, e.opts.Limits)
		if !req.Fresh {
			st.L.SetTop(0) // the values were returned: only what the state keeps counts
			st.ctx.finalCheck()
		}
		return outcome{res: res}
	}

	var o outcome
	if _, hasDeadline := ctx.Deadline(); !hasDeadline || !e.opts.Trusted {
		// No deadline (at most a cancellation: an interactive session),
		// or a sandboxed chunk: run on the caller's goroutine; the
		// state's context stops the chunk at its next instruction, and
		// every builtin of the sandbox that can take long polls it (none
		// can block: files are regular files, no process, no stdin).
		// Handing the chunk to a goroutine of its own cost a call from a
		// C or Python thread three context switches (~40 us), and two
		// such threads scaled 1.5x one, not 1.8x: the woken caller
		// waited for the other thread's core (the kernel's wake-up
		// placement), with the core it left idle meanwhile.
		o = run()
	} else {
		// A trusted chunk can block in a builtin (io.popen, io.read of a
		// pipe or of stdin): a deadline is a promise to return on time
		// even then: run on a goroutine and wait.
		done := make(chan outcome, 1)
		go func() { done <- run() }()
		select {
		case o = <-done:
		case <-ctx.Done():
			grace := time.NewTimer(core.TimeoutGrace)
			select {
			case o = <-done:
				grace.Stop()
			case <-grace.C:
				// Stuck in a long Go builtin that does not see the context:
				// give the state up; it is closed when the builtin returns.
				e.st = nil
				stuck := make(chan struct{})
				e.stuck = stuck
				go func() { <-done; st.ctx.end(); st.close(); close(stuck) }()
				core.Logf(core.LevelWarn, "embedded VM %q: chunk did not stop within %v of its deadline; state replaced", e.opts.Name, core.TimeoutGrace)
				return nil, timeoutError(ctx, !req.Fresh, !req.Fresh)
			}
		}
	}
	res := o.res
	if o.broken != nil {
		e.st = nil
		st.ctx.end()
		st.close()
		return nil, o.broken
	}
	switch stopped := st.ctx.end(); {
	case stopped == nil:
		e.finish(st, req, ch.pure)
		return res, nil
	case errors.Is(stopped, errCPULimit):
		e.finish(st, req, false)
		return nil, core.Errorf(core.ErrCPULimit, "exec", "the Lua code used up its CPU time budget (%v) and was stopped; the VM is usable", e.opts.Limits.MaxCPUTime)
	case errors.Is(stopped, errMemLimit):
		// The state holds the memory: give it up.
		e.st = nil
		st.close()
		lost := ""
		if !req.Fresh {
			lost = "; its global state was reset"
		}
		return nil, core.Errorf(core.ErrNoMem, "exec", "the Lua code went over the VM's memory limit (%d bytes) and was stopped%s", e.opts.Limits.MaxMemoryBytes, lost)
	default:
		e.finish(st, req, false)
		return nil, timeoutError(ctx, !req.Fresh, false)
	}
}

// finish restores a fresh-environment state, or replaces it when the chunk
// changed more than its own globals. A pure chunk cannot have changed it.
func (e *Engine) finish(st *state, req *core.Request, pure bool) {
	st.L.SetTop(0)
	st.endFiles(req.Fresh)
	if req.Fresh && e.st == st && !pure && !st.restore() {
		core.Logf(core.LevelDebug, "embedded VM %q: chunk changed the standard library; using a new state", e.opts.Name)
		st.close()
		e.st = takeState(e.cfg)
		return
	}
	st.park()
}

// timeoutError is a stopped call's error. persistent: the VM keeps its
// state across calls; lost: that state was reset (the chunk was stuck in
// a builtin and given up).
func timeoutError(ctx context.Context, persistent, lost bool) error {
	msg := "the Lua code was stopped"
	if errors.Is(ctx.Err(), context.Canceled) {
		msg = "the Lua code was cancelled"
	}
	switch {
	case lost:
		msg += "; the VM is usable but its state was reset (the chunk was stuck in a builtin)"
	case persistent:
		msg += "; the VM keeps its state"
	default:
		msg += "; the VM is usable"
	}
	return core.Errorf(core.ErrTimeout, "exec", "%s", msg)
}

// Parsing and compiling cannot be interrupted and takes up to ~1.5 s per
// MB of source (16 MB is allowed; `f{} ` over and over is the slowest
// found): a chunk of asideCompile bytes or more compiles on a goroutine the
// call's deadline can leave behind, so that a call returns on time however
// long its chunk takes to compile (a chunk of 250 KB compiled for 0.35 s
// past a 20 ms deadline on the caller's goroutine). Below that a compile
// takes ~15 ms at most (a chain of `^`; most syntax takes a third of
// that), and the hand-off (~50 µs) would cost more than it saves. At most maxBigCompiles chunks of bigCompile bytes or more compile
// at once, and at most one per CPU of the smaller ones, so that repeated
// chunks cannot pile up uninterruptible work on the host. (load and its
// kin compile the same way: loadlimits.go.)
const (
	asideCompile   = 4 << 10
	bigCompile     = 256 << 10
	maxBigCompiles = 2
)

var (
	bigCompiles       = make(chan struct{}, maxBigCompiles)
	midCompiles       = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	errCompileTimeout = errors.New("compiling the chunk took longer than the call's deadline")
)

// compileSlots is the pool whose slot a compile of n bytes aside takes.
func compileSlots(n int) chan struct{} {
	if n >= bigCompile {
		return bigCompiles
	}
	return midCompiles
}

func compileWithin(ctx context.Context, req *core.Request) (*chunk, bool, error) {
	if len(req.Code) < asideCompile || ctx.Done() == nil {
		return compileRequest(req)
	}
	if !req.REPL {
		if ch := cachedChunk(req.Code, req.ChunkName); ch != nil {
			return ch, req.PrintResults, nil // no compile, no hand-off
		}
	}
	slots := compileSlots(len(req.Code))
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, errCompileTimeout
	}
	type result struct {
		ch       *chunk
		printRes bool
		err      error
	}
	// The compile may outlive the call, and the call's code may be the
	// caller's memory, valid during the call only (the C ABI's buffers):
	// compiling a view of it after a timeout read freed memory and killed
	// the process.
	own := *req
	own.Code = bytes.Clone(req.Code)
	req = &own
	done := make(chan result, 1)
	go func() {
		defer func() { <-slots }()
		// A panic here (a compiler bug on some input) would end the
		// process: no caller's recover reaches this goroutine.
		defer func() {
			if r := recover(); r != nil {
				done <- result{err: fmt.Errorf("internal error while compiling the chunk: %v", r)}
			}
		}()
		ch, printRes, err := compileRequest(req)
		done <- result{ch, printRes, err}
	}()
	select {
	case r := <-done:
		return r.ch, r.printRes, r.err
	case <-ctx.Done():
		return nil, false, errCompileTimeout
	}
}

// compileRequest compiles a request's code; in REPL mode it first tries the
// code as an expression ("return <code>", or "=expr" as in Lua 5.1) and
// reports whether returned values are to be printed.
func compileRequest(req *core.Request) (*chunk, bool, error) {
	if !req.REPL {
		ch, err := compile(req.Code, req.ChunkName)
		return ch, req.PrintResults, err
	}
	code := req.Code
	eq := len(code) > 0 && code[0] == '='
	if eq {
		code = code[1:]
	}
	expr := make([]byte, 0, len(code)+7)
	expr = append(append(expr, "return "...), code...)
	ch, err := compile(expr, req.ChunkName)
	if err == nil {
		return ch, true, nil
	}
	if eq {
		// "=expr" is only ever "return expr": its error is that one's
		// ("=1," continued on the next line waits for it, as in lua -i).
		return nil, true, err
	}
	ch, err = compile(req.Code, req.ChunkName)
	return ch, req.PrintResults, err
}

func (st *state) begin(lim core.Limits, out func(core.Stream, []byte)) {
	st.unpark()
	st.out.Max, st.errw.Max = lim.MaxOutputBytes, lim.MaxOutputBytes
	st.out.Tee, st.errw.Tee = nil, nil
	if out != nil {
		st.out.Tee = func(p []byte) { out(core.Stdout, p) }
		st.errw.Tee = func(p []byte) { out(core.Stderr, p) }
	}
	st.out.Reset()
	st.errw.Reset()
	st.exited, st.exitCode = false, 0
	st.curOut, st.curIn = st.stdout, st.stdin
}

// faultAfterChunk, when set (by a test only), runs right after the chunk:
// it stands for a Go panic in the engine's own code outside the chunk's
// protected call, a fault no Lua code can produce once such bugs are fixed.
var faultAfterChunk func()

// run calls the chunk, then encodes and (if asked) prints its values, all
// under the call's context so metamethods run by tostring stay bounded.
func (st *state) run(proto *lua.FunctionProto, req *core.Request, lim core.Limits) *core.Result {
	L := st.L
	st.clock.enter()
	defer st.clock.leave()
	L.SetTop(0)
	L.Push(L.NewFunctionFromProto(proto))
	st.trace = ""
	err := L.PCall(0, lua.MultRet, st.tracer)
	if faultAfterChunk != nil {
		faultAfterChunk()
	}
	if err != nil {
		// Close the upvalues the error left open (the handler kept
		// gopher-lua from doing it). After a stop the closer fails at its
		// first instruction, and that error closes them all the same.
		L.SetTop(0)
		L.Push(st.closer)
		_ = L.PCall(0, 0, nil)
	}
	res := &core.Result{}
	switch {
	case st.exited:
		res.ReturnCode = st.exitCode
		L.SetTop(0)
	case err != nil:
		msg, trace := describeError(err)
		limitStop := false // stopped by a limit, which the core reports itself
		if cerr := st.ctx.Err(); cerr != nil && strings.HasSuffix(msg, cerr.Error()) {
			// gopher-lua raises the context's error at the instruction
			// where the call was stopped ("stdin:1: context canceled"):
			// say it as the interpreter says an interrupt.
			msg = strings.TrimSuffix(msg, cerr.Error()) + "interrupted!"
			limitStop = !errors.Is(cerr, context.Canceled)
		}
		switch {
		case st.trace != "":
			trace = st.trace
		case trace == "":
			// The call stack was too full to run the error handler.
			trace = "stack traceback:\n\t(not available: the call stack is full, 20,000 levels)"
		}
		res.ReturnCode = 1
		res.ErrorMessage = msg
		if !limitStop {
			// A deadline, CPU budget or memory limit is no interrupt: the
			// core reports it (a session said "stdin:1: interrupted!" with
			// a traceback before the limit's own message).
			st.errw.WriteString(msg)
			if trace != "" {
				st.errw.WriteString("\n" + trace)
			}
		}
		L.SetTop(0)
	}
	n := L.GetTop()
	enc := core.NewValueEncoder(lim.MaxValueBytes)
	w := valueWriter{enc: enc, depth: lim.MaxValueDepth, scan: tableScan{L: L}}
	for i := 1; i <= n && !enc.Full() && w.scan.stop == nil; i++ {
		w.value(L.Get(i))
	}
	if req.PrintResults && n > 0 && res.ReturnCode == 0 {
		st.printValues(n)
		if st.exited { // os.exit in a __tostring: as in the chunk
			res.ReturnCode = st.exitCode
			enc = core.NewValueEncoder(lim.MaxValueBytes)
		}
	}
	res.Values = enc.Finish()
	res.Success = res.ReturnCode == 0
	res.Stdout = st.out.Bytes()
	res.Stderr = st.errw.Bytes()
	res.Truncated = st.out.Dropped() > 0 || st.errw.Dropped() > 0
	return res
}

// printValues prints the n values on the stack like the Lua REPL, through a
// protected call so a failing __tostring becomes stderr, not a crash.
func (st *state) printValues(n int) {
	L := st.L
	L.Insert(st.printer, 1)
	if err := L.PCall(n, 0, nil); err != nil && !st.exited {
		msg, _ := describeError(err)
		st.errw.WriteString("error printing results: " + msg)
	}
}

// describeError splits a gopher-lua error into Lua's message and traceback.
func describeError(err error) (msg, trace string) {
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		return err.Error(), ""
	}
	switch v := luaErrorValue(ae.Object).(type) {
	case lua.LString:
		msg = string(v)
	case lua.LNumber:
		msg = fmtNumber(v)
	case nil:
		msg = ae.Error()
	default:
		msg = "(error object is a " + v.Type().String() + " value)"
	}
	return msg, ae.StackTrace
}
