package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
	"golang.org/x/sys/unix"

	"libbioxen/core"
)

// Chunks compiled while a call runs (load, loadstring, loadfile, dofile,
// require) are held to the call's limits like the code that asks for
// them. Parsing and compiling is one Go call that cannot be interrupted
// and takes, at its peak, far more memory than the source: 100 to 300
// bytes of Go heap per byte (most of it garbage the collector gets back
// later), and up to 4 s per MB. `load(string.rep("x={} ", 2^21))` peaked
// at 859 MiB under a 64 MiB limit, and one of half that size ran 11 s
// past a 500 ms CPU budget. So:
//
//   - a chunk larger than the VM's source limit (Limits.MaxSourceBytes) is
//     refused, as top-level code is: load returns nil and a message;
//   - one whose compilation would take more memory than the limit has room
//     for (compileBytesPerByte per source byte) is refused like Lua's load
//     without memory: nil, "not enough memory";
//   - one of asideCompile bytes or more compiles on a goroutine of its
//     own, taking a slot of the pools top-level chunks use (see
//     compileSlots), while the chunk waits: a stop (deadline,
//     cancellation, CPU budget) ends the wait at once and leaves the
//     compilation behind, bounded as a top-level one is. Its CPU time is
//     read from its thread's clock while it runs and counts against the
//     call's budget. (Chunks below 64 KiB compiled on the chunk's thread:
//     one of 60 KiB took 0.1 s there, past any deadline.);
//   - a smaller one (~15 ms of compiling at most) compiles on the chunk's
//     own thread, whose CPU clock is the budget's, and the budget is
//     checked right after.

const compileBytesPerByte = 64 // the live syntax tree and proto took 25-45

// roomFor reports whether need more bytes fit under the running call's
// memory limit (always, without one). The state is walked only when need
// could matter next to the limit (a walk costs time in proportion to the
// state); a state found over the limit already stops the call.
func (st *state) roomFor(L *lua.LState, need int64) bool {
	c := st.ctx
	if !c.checking || c.memLimit <= 0 || need <= c.memLimit/16 {
		return true
	}
	c.memUsed = st.memUsage(c.memLimit, c.done)
	if c.memUsed > c.memLimit {
		c.stopNow(errMemLimit)
		st.raiseStop(L)
	}
	return c.memUsed+need <= c.memLimit
}

// sourceLimit is the largest chunk a running call may compile.
func (c *callCtx) sourceLimit() int {
	if c.maxSource > 0 {
		return c.maxSource
	}
	return core.DefaultMaxSourceBytes
}

// compileSource parses and compiles a text chunk through compileTree (the
// engine's fixes), for top-level chunks and load and its kin alike. Its
// errors read like Lua's; a syntax error at the end of the input is marked
// (an incomplete REPL line).
func compileSource(src []byte, name string) (*lua.FunctionProto, error) {
	src = blankSpaces(src)
	if err := checkNesting(src, name); err != nil {
		return nil, err
	}
	tree, err := parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		var pe *parse.Error
		eof := errors.As(err, &pe) && pe.Pos.Line == parse.EOF
		return nil, &syntaxError{msg: formatParseError(name, src, err), eof: eof}
	}
	return compileTree(tree, name)
}

// compileChunk compiles src for load and its kin within the running call's
// limits (see above). A chunk that cannot be had is msg, for the caller to
// return after nil; a stop of the call is raised.
func (st *state) compileChunk(L *lua.LState, src []byte, name string) (proto *lua.FunctionProto, msg string) {
	c := st.ctx
	if len(src) > 0 && src[0] == 0x1b {
		return nil, "attempt to load a binary chunk (only text chunks are accepted)"
	}
	if max := c.sourceLimit(); len(src) > max {
		return nil, fmt.Sprintf("%s: chunk too large (%d bytes; the VM's source limit is %d bytes)", name, len(src), max)
	}
	if !st.roomFor(L, int64(len(src))*compileBytesPerByte) {
		return nil, "not enough memory"
	}
	var err error
	if len(src) < asideCompile {
		proto, err = compileSource(src, name)
	} else {
		proto, err = st.compileAside(L, src, name)
	}
	if c.checking {
		c.check() // the CPU the compilation took
	}
	st.raiseStop(L)
	if err != nil {
		return nil, err.Error()
	}
	return proto, ""
}

// raiseStop raises the running call's stop, if it was stopped.
func (st *state) raiseStop(L *lua.LState) {
	if err := st.ctx.Err(); err != nil {
		L.RaiseError("%s", err)
	}
}

// compileAside compiles a large chunk on a goroutine of its own (see
// above); it returns early, with the call stopped, when the call is.
func (st *state) compileAside(L *lua.LState, src []byte, name string) (*lua.FunctionProto, error) {
	c := st.ctx
	slots := compileSlots(len(src))
	select {
	case slots <- struct{}{}:
	case <-c.Stopped():
		st.raiseStop(L)
		L.RaiseError("interrupted")
	}
	type result struct {
		proto *lua.FunctionProto
		err   error
		cpu   time.Duration
	}
	done := make(chan result, 1)
	var tid atomic.Int32
	go func() {
		defer func() { <-slots }()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid.Store(int32(unix.Gettid()))
		start := threadCPU()
		var r result
		func() {
			// A panic here (a compiler bug on some input) would end the
			// process: no caller's recover reaches this goroutine.
			defer func() {
				if p := recover(); p != nil {
					r.err = fmt.Errorf("internal error while compiling the chunk: %v", p)
				}
			}()
			r.proto, r.err = compileSource(src, name)
		}()
		r.cpu = threadCPU() - start
		done <- r
	}()
	var tick <-chan time.Time
	if c.checking && c.cpuBudget > 0 {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case r := <-done:
			c.cpuStart -= r.cpu // the call used it
			return r.proto, r.err
		case <-c.Stopped():
			st.raiseStop(L)
			L.RaiseError("interrupted")
		case <-tick:
			if t := tid.Load(); t != 0 && threadCPU()-c.cpuStart+threadCPUOf(t) > c.cpuBudget {
				c.stopNow(errCPULimit)
			}
		}
	}
}

// threadCPUOf is the CPU time thread tid (of this process) has used, 0 if
// it cannot be read. Linux encodes a thread's CPU clock in the clock id
// (glibc's pthread_getcpuclockid: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).
func threadCPUOf(tid int32) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime((^tid)<<3|6, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// readSource reads a chunk's file, at most one byte past the source limit
// (compileChunk then refuses it): a huge file is not read whole. It must
// be a regular file: opening a FIFO waited for a writer, and reading a
// device (/dev/zero) never ended, in one Go call no deadline stops.
func (st *state) readSource(path string) ([]byte, error) {
	var f *os.File
	var err error
	if st.guard != nil {
		f, err = openResolved(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	} else {
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("cannot read %s: not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, int64(st.ctx.sourceLimit())+1))
}
