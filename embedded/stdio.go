package embedded

import (
	"bytes"
	"context"
	"math"
	"os/exec"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// The embedded engine never lets Lua code touch the host's file
// descriptors: print, io.write, io.stdout and io.stderr write to the call's
// bounded captures, the default input is empty, os.execute's child writes
// to the captures too, and os.exit ends the chunk instead of the host.

const stdFileType = "bioxen.stdfile"

type stdFile struct {
	name  string
	w     *core.Capture // nil for stdin
	state *state
}

// exitSignal is raised by os.exit; run() turns it into the return code.
type exitSignal struct{}

func (st *state) installStdio() {
	L := st.L
	mt := L.NewTypeMetatable(stdFileType)
	methods := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"write":   st.fileWrite,
		"flush":   fileSelf,
		"setvbuf": fileTrue,
		"close":   fileNoClose,
		"seek":    fileNoSeek,
		"read":    func(L *lua.LState) int { return readEmpty(L, 2) },
		"lines":   fileLines,
	})
	mt.RawSetString("__index", methods)
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		f := checkStdFile(L, 1)
		L.Push(lua.LString("file (" + f.name + ")"))
		return 1
	}))
	newFile := func(name string, w *core.Capture) *lua.LUserData {
		ud := L.NewUserData()
		ud.Value = &stdFile{name: name, w: w, state: st}
		ud.Metatable = mt
		return ud
	}
	st.stdout = newFile("stdout", &st.out)
	st.stderr = newFile("stderr", &st.errw)
	st.stdin = newFile("stdin", nil)

	io := L.GetGlobal("io").(*lua.LTable)
	st.origInput = io.RawGetString("input").(*lua.LFunction)
	st.origOutput = io.RawGetString("output").(*lua.LFunction)
	st.origType = io.RawGetString("type").(*lua.LFunction)
	// gopher-lua's default input and output (an upvalue table shared by
	// its io functions) are its own stdin/stdout objects, with a 4 KiB read
	// buffer each state kept alive: point them at ours. The wrappers below
	// answer every call that would read them.
	if len(st.origInput.Upvalues) > 0 {
		if uv, ok := st.origInput.Upvalues[0].Value().(*lua.LTable); ok {
			uv.RawSetInt(1, st.stdout)
			uv.RawSetInt(2, st.stdin)
		}
	}
	st.installFiles(io)
	io.RawSetString("stdout", st.stdout)
	io.RawSetString("stderr", st.stderr)
	io.RawSetString("stdin", st.stdin)
	L.SetFuncs(io, map[string]lua.LGFunction{
		"write":  st.ioWrite,
		"read":   st.ioRead,
		"lines":  st.ioLines,
		"input":  st.ioInput,
		"output": st.ioOutput,
		"flush":  st.ioFlush,
		"close":  st.ioClose,
		"type":   st.ioType,
	})
	L.SetGlobal("print", L.NewFunction(st.print))
	osT := L.GetGlobal("os").(*lua.LTable)
	L.SetFuncs(osT, map[string]lua.LGFunction{
		"exit":    st.osExit,
		"execute": st.osExecute,
	})
}

func checkStdFile(L *lua.LState, n int) *stdFile {
	ud := L.CheckUserData(n)
	f, ok := ud.Value.(*stdFile)
	if !ok {
		L.ArgError(n, "file expected")
	}
	return f
}

// teePiece is the most one write hands to a streaming reader (a session:
// core.Capture's Tee): print gathers its line up to this size, so that a
// reader gets a line whole, and a longer line, or io.write of a longer
// string, goes in pieces this big, with the call's limits polled after
// each. A 2.5 GB line built whole before it was handed on took 8 GB, and
// no deadline could stop it.
const teePiece = core.MaxOutputPiece

// argWork is the work counted for one argument of print or io.write besides
// its bytes, so that a long list of short ones polls the limits too.
const argWork = 16

// teeBufs holds the gathering buffers of outWriter (teePiece bytes each):
// a piece is only valid during the Tee call that gets it, so the next
// piece reuses its memory, and a huge line streams without garbage. A pool
// rather than a buffer per state: idle states keep nothing.
var teeBufs = sync.Pool{New: func() any { b := make([]byte, 0, teePiece); return &b }}

// outWriter writes the output of one print or io.write call to a capture.
// Without a streaming reader it writes each argument as it comes: the
// capture keeps its first Max bytes and counts the rest, so a huge value is
// not copied. With one it gathers pieces of at most teePiece bytes.
type outWriter struct {
	w   *core.Capture
	tk  workTicker
	buf *[]byte // from teeBufs once something is gathered
}

func newOutWriter(L *lua.LState, w *core.Capture) outWriter {
	return outWriter{w: w, tk: workTicker{L: L}}
}

func (o *outWriter) write(s string) {
	if o.w.Tee == nil {
		o.w.WriteString(s)
		o.tk.add(len(s) + argWork)
		return
	}
	if o.buf == nil {
		o.buf = teeBufs.Get().(*[]byte)
	}
	for len(*o.buf)+len(s) > teePiece {
		n := teePiece - len(*o.buf)
		*o.buf = append(*o.buf, s[:n]...)
		s = s[n:]
		o.flush()
		// The listener may have taken its time with the piece; the
		// instruction hook polls between short writes.
		o.tk.poll()
	}
	*o.buf = append(*o.buf, s...)
	o.tk.add(argWork)
}

// flush hands the gathered piece on.
func (o *outWriter) flush() {
	if o.buf == nil || len(*o.buf) == 0 {
		return
	}
	p := *o.buf
	*o.buf = p[:0]
	o.w.WriteBytes(p)
}

// done flushes and gives the buffer back. (A call that raised an error
// leaves its buffer to the collector.)
func (o *outWriter) done() {
	o.flush()
	if o.buf != nil {
		teeBufs.Put(o.buf)
		o.buf = nil
	}
}

// print writes its line in one write when it is at most teePiece bytes
// (see outWriter).
func (st *state) print(L *lua.LState) int {
	n := L.GetTop()
	o := newOutWriter(L, &st.out)
	for i := 1; i <= n; i++ {
		if i > 1 {
			o.write("\t")
		}
		switch v := L.Get(i).(type) {
		case lua.LString:
			o.write(string(v))
		case lua.LNumber:
			o.write(fmtNumber(v))
		default:
			o.write(L.ToStringMeta(v).String())
		}
	}
	o.write("\n")
	o.done()
	return 0
}

// writeArgs writes arguments from..top like Lua's io.write: strings and
// numbers only (those before a bad one are written).
func writeArgs(L *lua.LState, w *core.Capture, from int) {
	o := newOutWriter(L, w)
	top := L.GetTop()
	for i := from; i <= top; i++ {
		switch v := L.Get(i).(type) {
		case lua.LString:
			o.write(string(v))
		case lua.LNumber:
			o.write(fmtNumber(v))
		default:
			o.flush()
			L.ArgError(i-from+1, "string expected, got "+v.Type().String())
		}
	}
	o.done()
}

func (st *state) fileWrite(L *lua.LState) int {
	f := checkStdFile(L, 1)
	if f.w == nil {
		L.Push(lua.LNil)
		L.Push(lua.LString("file not opened for writing"))
		return 2
	}
	writeArgs(L, f.w, 2)
	L.Push(L.Get(1))
	return 1
}

func fileSelf(L *lua.LState) int { L.Push(L.Get(1)); return 1 }
func fileTrue(L *lua.LState) int { L.Push(lua.LTrue); return 1 }
func fileNoClose(L *lua.LState) int {
	L.Push(lua.LNil)
	L.Push(lua.LString("cannot close standard file"))
	return 2
}
func fileNoSeek(L *lua.LState) int {
	L.Push(lua.LNil)
	L.Push(lua.LString("Illegal seek"))
	L.Push(lua.LNumber(29))
	return 3
}
func fileEOF(L *lua.LState) int { L.Push(lua.LNil); return 1 }

// readEmpty is read on the standard input, which is empty (a chunk gets no
// input), for the formats from argument first on: each reads as at the
// end of a file, "*a" an empty string and the others nil, which ends the
// results (Lua's g_read; it was nil for "*a" too, where the process
// engine's interpreters give "").
func readEmpty(L *lua.LState, first int) int {
	top := L.GetTop()
	if top < first {
		L.Push(lua.LNil)
		return 1
	}
	for i := first; i <= top; i++ {
		format := ""
		switch v := L.Get(i).(type) {
		case lua.LNumber:
		case lua.LString:
			format = strings.TrimPrefix(string(v), "*")
			if format != "n" && format != "l" && format != "L" && format != "a" {
				L.ArgError(i-first+1, "invalid format") // (a method's self is not counted)
			}
		default:
			L.ArgError(i-first+1, "invalid format")
		}
		if format != "a" {
			L.Push(lua.LNil)
			return i - first + 1
		}
		L.Push(lua.LString(""))
	}
	return top - first + 1
}
func fileLines(L *lua.LState) int {
	L.Push(L.NewFunction(fileEOF))
	return 1
}

// The current default output / input: one of our std files, one of our
// files (files.go), or (trusted states) an io.popen file of gopher-lua's.
func (st *state) ioWrite(L *lua.LState) int {
	switch f := st.curOut.Value.(type) {
	case *stdFile:
		writeArgs(L, f.w, 1)
		L.Push(st.curOut)
		return 1
	case *luaFile:
		if f.closed {
			L.RaiseError("default output file is closed")
		}
		return writeFile(L, f, 1, st.curOut)
	}
	return st.callMethod(L, st.curOut, "write")
}

func (st *state) ioRead(L *lua.LState) int {
	switch f := st.curIn.Value.(type) {
	case *stdFile:
		return readEmpty(L, 1)
	case *luaFile:
		if f.closed {
			L.RaiseError("default input file is closed")
		}
		return readFormats(L, f, 1)
	}
	return st.callMethod(L, st.curIn, "read")
}

// callMethod calls file:method(args...) on a foreign file with this call's
// arguments and returns its results.
func (st *state) callMethod(L *lua.LState, file *lua.LUserData, method string) int {
	args := make([]lua.LValue, 0, L.GetTop()+1)
	args = append(args, file)
	for i := 1; i <= L.GetTop(); i++ {
		args = append(args, L.Get(i))
	}
	fn := L.GetField(file, method)
	top := L.GetTop()
	L.Push(fn)
	for _, a := range args {
		L.Push(a)
	}
	L.Call(len(args), lua.MultRet)
	return L.GetTop() - top
}

// ioLines is io.lines([name, ...formats]): with a name, the lines of that
// file (closed at its end); without, of the default input.
func (st *state) ioLines(L *lua.LState) int {
	if L.Get(1) == lua.LNil {
		switch f := st.curIn.Value.(type) {
		case *stdFile:
			L.Push(L.NewFunction(fileEOF))
			return 1
		case *luaFile:
			if f.closed {
				L.RaiseError("default input file is closed")
			}
			L.Push(linesIterator(L, st.curIn, 2, false))
			return 1
		}
		return st.callMethod(L, st.curIn, "lines")
	}
	name := L.CheckString(1)
	ud, err := st.openFile(name, "r")
	if err != nil {
		msg, _ := ioErrorText(err)
		L.RaiseError("%s: %s", shortName(name), msg)
	}
	L.Push(linesIterator(L, ud, 2, true))
	return 1
}

func (st *state) callOrig(L *lua.LState, fn *lua.LFunction) int {
	top := L.GetTop()
	L.Push(fn)
	for i := 1; i <= top; i++ {
		L.Push(L.Get(i))
	}
	L.Call(top, lua.MultRet)
	return L.GetTop() - top
}

// ioInput and ioOutput set or return the default input and output: a file
// name is opened (through the guard), a file is taken as it is.
func (st *state) ioInput(L *lua.LState) int {
	return st.ioDefault(L, &st.curIn, "r", st.origInput)
}

func (st *state) ioOutput(L *lua.LState) int {
	return st.ioDefault(L, &st.curOut, "w", st.origOutput)
}

func (st *state) ioDefault(L *lua.LState, cur **lua.LUserData, mode string, orig *lua.LFunction) int {
	switch v := L.Get(1).(type) {
	case lua.LString:
		ud, err := st.openFile(string(v), mode)
		if err != nil {
			msg, _ := ioErrorText(err)
			L.ArgError(1, shortName(string(v))+": "+msg)
		}
		*cur = ud
	case *lua.LUserData:
		switch f := v.Value.(type) {
		case *stdFile:
			if mode == "w" && f.w == nil {
				L.ArgError(1, "file not opened for writing")
			}
			*cur = v
		case *luaFile:
			*cur = v
		default:
			n := st.callOrig(L, orig)
			if ud, ok := L.Get(-1).(*lua.LUserData); ok && n > 0 {
				*cur = ud
			}
			return n
		}
	case *lua.LNilType:
	default:
		L.ArgError(1, "file or file name expected")
	}
	L.Push(*cur)
	return 1
}

func (st *state) ioFlush(L *lua.LState) int {
	switch f := st.curOut.Value.(type) {
	case *stdFile:
		L.Push(st.curOut)
		return 1
	case *luaFile:
		if err := f.flush(); err != nil {
			return pushIOError(L, "", err)
		}
		L.Push(st.curOut)
		return 1
	}
	return st.callMethod(L, st.curOut, "flush")
}

func (st *state) ioClose(L *lua.LState) int {
	target := st.curOut
	if L.GetTop() > 0 {
		ud, ok := L.Get(1).(*lua.LUserData)
		if !ok {
			L.ArgError(1, "file expected")
		}
		target = ud
	}
	switch f := target.Value.(type) {
	case *stdFile:
		return fileNoClose(L)
	case *luaFile:
		if f.closed {
			L.RaiseError("attempt to use a closed file")
		}
		return st.closeFile(L, f)
	}
	L.SetTop(0)
	return st.callMethod(L, target, "close")
}

func (st *state) ioType(L *lua.LState) int {
	if ud, ok := L.Get(1).(*lua.LUserData); ok {
		switch f := ud.Value.(type) {
		case *stdFile:
			L.Push(lua.LString("file"))
			return 1
		case *luaFile:
			if f.closed {
				L.Push(lua.LString("closed file"))
			} else {
				L.Push(lua.LString("file"))
			}
			return 1
		}
	}
	return st.callOrig(L, st.origType)
}

// osExit is os.exit([code]): it ends the chunk (never the host) with code
// (true or nil: 0, false: 1).
func (st *state) osExit(L *lua.LState) int {
	code := 0
	switch v := L.Get(1).(type) {
	case lua.LBool:
		if !v {
			code = 1
		}
	case lua.LNumber:
		// As the process driver: an integral code, saturated to a C int.
		f := float64(v)
		if f != math.Floor(f) {
			L.ArgError(1, "number has no integer representation")
		}
		code = int(max(min(f, math.MaxInt32), math.MinInt32))
	case *lua.LNilType:
	default:
		L.ArgError(1, "number or boolean expected")
	}
	st.exitCode = code
	st.exited = true
	st.raiseExit(L)
	return 0
}

// raiseExit unwinds the chunk after os.exit. A protected call
// (pcall, xpcall, coroutine.resume) that caught the unwinding calls it
// again, so os.exit cannot be caught: the chunk stops there, as the
// interpreter stops.
func (st *state) raiseExit(L *lua.LState) {
	if !st.exited {
		return
	}
	ud := L.NewUserData()
	ud.Value = exitSignal{}
	L.Error(ud, 0)
}

// osExecute runs a shell command like Lua 5.1's os.execute, with its stdout
// and stderr going to the call's captures. The sandbox (a later layer)
// decides whether it is reachable at all.
func (st *state) osExecute(L *lua.LState) int {
	if L.GetTop() == 0 {
		L.Push(lua.LTrue) // a shell is available
		return 1
	}
	// A context of its own, cancelled when the call is stopped: exec
	// watches it from another goroutine, and the state's context is only
	// for the goroutine running Lua.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if parent, ok := L.Context().(*callCtx); ok {
		stopped, finished := parent.Stopped(), make(chan struct{})
		defer close(finished)
		go func() {
			select {
			case <-stopped:
				cancel()
			case <-finished:
			}
		}()
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", L.CheckString(1))
	var out, errb bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: int64(st.out.Max)}
	cmd.Stderr = &limitedWriter{w: &errb, n: int64(st.errw.Max)}
	err := cmd.Run()
	st.out.WriteBytes(out.Bytes())
	st.errw.WriteBytes(errb.Bytes())
	status := 0
	if err != nil {
		status = 1
		if ee, ok := err.(*exec.ExitError); ok {
			status = ee.ExitCode()
			if status < 0 {
				status = 1
			}
		}
	}
	L.Push(lua.LNumber(status))
	return 1
}

type limitedWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := int64(len(p))
		if k > l.n {
			k = l.n
		}
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
