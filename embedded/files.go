package embedded

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// Files opened by Lua code (io.open, io.lines, io.input and io.output with
// a file name) are the engine's own, in trusted and sandboxed states alike:
//   - every path goes through the state's guard: gopher-lua's io.lines,
//     io.input and io.output opened names directly, outside the allowed
//     directories of a sandboxed VM;
//   - read follows Lua: "*l" keeps a "\r" (gopher-lua dropped it, so one
//     file gave different sequences on the embedded and the process
//     engines) and "*n" reads Lua numerals (gopher-lua's returned nil, then
//     a Go error text as a value);
//   - a state holds at most maxOpenFiles, and a call's unclosed files are
//     flushed when it ends (closed too when nothing of the call survives).
// io.popen (trusted states only) keeps gopher-lua's file objects.

const (
	fileType     = "bioxen.file"
	maxOpenFiles = 256
	maxNumeral   = 200 // Lua 5.4's L_MAXLENNUM
)

type luaFile struct {
	f      *os.File
	r      *bufio.Reader // reads; nil until the first
	w      *bufio.Writer // writes; nil until the first
	nobuf  bool          // setvbuf("no"): flush after every write
	closed bool
}

func (st *state) installFiles(io *lua.LTable) {
	L := st.L
	mt := L.NewTypeMetatable(fileType)
	methods := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"read":    fileRead,
		"write":   fileWriteMethod,
		"lines":   fileLinesMethod,
		"seek":    fileSeek,
		"flush":   fileFlush,
		"setvbuf": fileSetvbuf,
		"close":   st.fileClose,
	})
	mt.RawSetString("__index", methods)
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		f := checkFile(L, 1, false)
		if f.closed {
			L.Push(lua.LString("file (closed)"))
		} else {
			L.Push(lua.LString(fmt.Sprintf("file (%p)", f)))
		}
		return 1
	}))
	st.fileMeta = mt
	io.RawSetString("open", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		mode := L.OptString(2, "r")
		ud, err := st.openFile(name, mode)
		if err != nil {
			if errors.Is(err, errBadMode) {
				L.ArgError(2, "invalid mode '"+mode+"'")
			}
			return pushIOError(L, name, err)
		}
		L.Push(ud)
		return 1
	}))
}

var errBadMode = errors.New("invalid mode")

// openFile opens name for Lua code, through the sandbox's guard.
func (st *state) openFile(name, mode string) (*lua.LUserData, error) {
	flags, ok := openFlags(mode)
	if !ok {
		return nil, errBadMode
	}
	real, err := st.guard.resolve(name, flags&(os.O_WRONLY|os.O_RDWR) != 0)
	if err != nil {
		return nil, err
	}
	if len(st.files) >= maxOpenFiles {
		return nil, syscall.EMFILE
	}
	if st.guard != nil {
		flags |= syscall.O_NONBLOCK // see below
	}
	var fp *os.File
	if st.guard != nil {
		fp, err = openResolved(real, flags, 0o666)
	} else {
		fp, err = os.OpenFile(real, flags, 0o666)
	}
	if err != nil {
		return nil, err
	}
	if st.guard != nil {
		// Sandboxed code opens files and directories only: opening a
		// FIFO of an allowed directory waited for a writer, and reading a
		// device could not end, in a Go call that no deadline or
		// interrupt stops (a session's chunk hung for good).
		if fi, err := fp.Stat(); err != nil || !(fi.Mode().IsRegular() || fi.IsDir()) {
			fp.Close()
			if err == nil {
				err = errNotRegular
			}
			return nil, err
		}
	}
	lf := &luaFile{f: fp}
	if st.files == nil {
		st.files = map[*luaFile]bool{}
	}
	st.files[lf] = true // opened by this call
	ud := st.L.NewUserData()
	ud.Value = lf
	ud.Metatable = st.fileMeta
	return ud, nil
}

var (
	errOutside  = errors.New("access outside the VM's allowed directories")
	errReadOnly = errors.New("the VM's package environments are read-only")
	// errNotRegular: a FIFO, socket or device (see openFile).
	errNotRegular = errors.New("not a regular file (the sandbox opens files and directories only)")
)

// openFlags reads a Lua mode: [rwa]%+?b*.
func openFlags(mode string) (int, bool) {
	if mode == "" {
		return 0, false
	}
	flags := 0
	plus := strings.HasPrefix(mode[1:], "+")
	switch mode[0] {
	case 'r':
		flags = os.O_RDONLY
		if plus {
			flags = os.O_RDWR
		}
	case 'w':
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if plus {
			flags = os.O_RDWR | os.O_CREATE | os.O_TRUNC
		}
	case 'a':
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		if plus {
			flags = os.O_RDWR | os.O_CREATE | os.O_APPEND
		}
	default:
		return 0, false
	}
	rest := mode[1:]
	if plus {
		rest = rest[1:]
	}
	if strings.Trim(rest, "b") != "" {
		return 0, false
	}
	return flags, true
}

// pushIOError returns Lua's nil, "name: message", errno.
func pushIOError(L *lua.LState, name string, err error) int {
	msg, errno := ioErrorText(err)
	if name != "" {
		msg = shortName(name) + ": " + msg
	}
	L.Push(lua.LNil)
	L.Push(lua.LString(msg))
	L.Push(lua.LNumber(errno))
	return 3
}

// ioErrorText is C's strerror text and errno for err.
func ioErrorText(err error) (string, int) {
	if errors.Is(err, errOutside) || errors.Is(err, errReadOnly) || errors.Is(err, errNotRegular) {
		return err.Error(), int(syscall.EACCES)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return core.StrError(errno), int(errno)
	}
	return err.Error(), 0
}

// checkFile is argument n as one of our files; open requires it open.
func checkFile(L *lua.LState, n int, open bool) *luaFile {
	ud, ok := L.Get(n).(*lua.LUserData)
	var f *luaFile
	if ok {
		f, ok = ud.Value.(*luaFile)
	}
	if !ok {
		L.ArgError(n, "file expected")
	}
	if open && f.closed {
		L.RaiseError("attempt to use a closed file")
	}
	return f
}

// reader switches f to reading (flushing pending writes).
func (f *luaFile) reader() (*bufio.Reader, error) {
	if f.w != nil && f.w.Buffered() > 0 {
		if err := f.w.Flush(); err != nil {
			return nil, err
		}
	}
	if f.r == nil {
		f.r = bufio.NewReaderSize(f.f, 32<<10)
	}
	return f.r, nil
}

// writer switches f to writing (giving back what was read ahead).
func (f *luaFile) writer() (*bufio.Writer, error) {
	if f.r != nil && f.r.Buffered() > 0 {
		if _, err := f.f.Seek(int64(-f.r.Buffered()), io.SeekCurrent); err != nil {
			return nil, err
		}
		f.r.Reset(f.f)
	}
	if f.w == nil {
		f.w = bufio.NewWriterSize(f.f, 32<<10)
	}
	return f.w, nil
}

func (f *luaFile) flush() error {
	if f.w != nil {
		return f.w.Flush()
	}
	return nil
}

func (f *luaFile) close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.flush()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	f.r, f.w = nil, nil
	return err
}

func fileRead(L *lua.LState) int {
	f := checkFile(L, 1, true)
	return readFormats(L, f, 2)
}

// ioPoll counts the bytes a read or a write moves, and every pollWork of
// them (and every few thousand formats or values) polls the call's limits:
// reading or writing 128 MiB took 0.1-0.5 s, and a million formats or
// values in one call 0.2 s, past any deadline. Unlike a workTicker it
// keeps the stop for its caller, who puts the file back first.
type ioPoll struct {
	L        *lua.LState
	work     int
	consumed int64 // bytes taken from the reader by this call
	stop     error
}

// add counts n bytes of work; false once the call is stopped.
func (p *ioPoll) add(n int) bool {
	if p.work += n; p.work >= pollWork && p.stop == nil {
		p.work = 0
		if p.L != nil {
			p.stop = pollLimits(p.L)
		}
	}
	return p.stop == nil
}

// take counts n bytes taken from the reader; false once stopped.
func (p *ioPoll) take(n int) bool {
	p.consumed += int64(n)
	return p.add(n)
}

var errStopped = errors.New("stopped")

// unread puts the file's position back by n bytes read through r, which
// then reads from there: a read the call's stop interrupted leaves the
// file where it was (regular files; others cannot be put back).
func (f *luaFile) unread(r *bufio.Reader, n int64) {
	back := int64(r.Buffered()) + n
	if _, err := f.f.Seek(-back, io.SeekCurrent); err == nil {
		r.Reset(f.f)
	}
}

// readFormats reads L's arguments from first on as formats: Lua's
// file:read. It returns a value per format up to the first that fails
// (nil). Stopped by the call's limits, it raises the stop with the file
// where it was before the call.
func readFormats(L *lua.LState, f *luaFile, first int) int {
	r, err := f.reader()
	if err != nil {
		return pushIOError(L, "", err)
	}
	top := L.GetTop()
	if top < first {
		L.Push(lua.LString("l"))
		top = first
	}
	p := &ioPoll{L: L}
	n := 0
	for i := first; i <= top; i++ {
		var v lua.LValue
		var err error
		switch format := L.Get(i).(type) {
		case lua.LNumber:
			v, err = readCount(f, r, int64(format), p)
		case lua.LString:
			switch strings.TrimPrefix(string(format), "*") {
			case "n":
				v, err = readNumber(r, p)
			case "l":
				v, err = readLine(r, false, p)
			case "L":
				v, err = readLine(r, true, p)
			case "a":
				v, err = readAll(f, r, p)
			default:
				L.ArgError(i, "invalid format")
			}
		default:
			L.ArgError(i, "invalid format")
		}
		if err == nil && !p.add(64) {
			err = errStopped
		}
		if errors.Is(err, errStopped) {
			f.unread(r, p.consumed)
			L.RaiseError("%s", p.stop)
		}
		if errors.Is(err, errTooLarge) {
			L.RaiseError("read: %s (limit %d bytes)", err, maxStringBytes)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return pushIOError(L, "", err)
		}
		L.Push(v)
		n++
		if v == lua.LNil {
			break
		}
	}
	return n
}

var errTooLarge = errors.New("resulting string too large")

// growLine doubles line's room, for n more bytes at least; a long line's
// bytes move to the new room in pieces with polls between (its own growth
// copies them in one Go call). False once the call is stopped.
func growLine(line *strings.Builder, n int, p *ioPoll) bool {
	return regrow(line, n, max(n, line.Cap()), p.add)
}

func readLine(r *bufio.Reader, keepNewline bool, p *ioPoll) (lua.LValue, error) {
	var line strings.Builder // grown without zeroing (see readUpTo)
	for {
		chunk, err := r.ReadSlice('\n')
		if line.Cap()-line.Len() < len(chunk) && !growLine(&line, len(chunk), p) {
			return lua.LNil, errStopped
		}
		line.Write(chunk)
		if !p.take(len(chunk)) {
			return lua.LNil, errStopped
		}
		if line.Len() > maxStringBytes {
			return lua.LNil, errTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		s := line.String()
		if err != nil {
			if len(s) == 0 {
				return lua.LNil, err
			}
			return lua.LString(s), nil
		}
		if !keepNewline {
			s = s[:len(s)-1]
		}
		return lua.LString(s), nil
	}
}

// left is how many bytes a read through r can still get from f (-1 when
// that is not known).
func (f *luaFile) left(r *bufio.Reader) int64 {
	if fi, err := f.f.Stat(); err == nil && fi.Mode().IsRegular() {
		if pos, err := f.f.Seek(0, io.SeekCurrent); err == nil {
			return max(fi.Size()-pos+int64(r.Buffered()), 0)
		}
	}
	return -1
}

// readUpTo reads up to n bytes (all the file has left when n is -1), in
// pieces of pollWork bytes, into room for what the file has left (io.ReadAll
// grew a buffer by copies, each one Go call of up to 256 MiB) that is not
// zeroed first (a strings.Builder's: zeroing a reused 256 MiB buffer is a
// long Go call too).
func readUpTo(f *luaFile, r *bufio.Reader, n int64, p *ioPoll) (string, error) {
	size := min(n, maxStringBytes+1)
	if left := f.left(r); left >= 0 && (size < 0 || left < size) {
		size = left + 1 // + 1: EOF is seen without growing
	}
	if size < 0 {
		size = 512
	}
	var b strings.Builder
	b.Grow(int(size))
	piece := make([]byte, min(size, pollWork))
	for n < 0 || int64(b.Len()) < n {
		want := int64(len(piece))
		if n >= 0 {
			want = min(want, n-int64(b.Len()))
		}
		k, err := r.Read(piece[:want])
		if b.Cap()-b.Len() < k {
			b.Grow(b.Cap()) // doubled
		}
		b.Write(piece[:k])
		if !p.take(k) {
			return "", errStopped
		}
		if b.Len() > maxStringBytes {
			return "", errTooLarge
		}
		if err != nil {
			return b.String(), err
		}
	}
	return b.String(), nil
}

// readAll reads the rest of the file.
func readAll(f *luaFile, r *bufio.Reader, p *ioPoll) (lua.LValue, error) {
	data, err := readUpTo(f, r, -1, p)
	if err == io.EOF {
		err = nil
	}
	if err != nil && !errors.Is(err, errStopped) && !errors.Is(err, errTooLarge) {
		return lua.LString(data), err
	}
	if err != nil {
		return lua.LNil, err
	}
	return lua.LString(data), nil
}

func readCount(f *luaFile, r *bufio.Reader, n int64, p *ioPoll) (lua.LValue, error) {
	if n <= 0 {
		if _, err := r.Peek(1); err != nil {
			return lua.LNil, err
		}
		return lua.LString(""), nil
	}
	data, err := readUpTo(f, r, min(n, maxStringBytes), p)
	switch {
	case errors.Is(err, errStopped):
		return lua.LNil, err
	case err != nil && len(data) == 0:
		return lua.LNil, err
	}
	return lua.LString(data), nil
}

// readNumber reads a numeral as Lua 5.4's io.read("n") does: leading
// space, then at most 200 characters that can form a numeral (sign,
// "0x", digits, point, exponent), converted by Lua's rules; nil when they
// do not form one.
func readNumber(r *bufio.Reader, p *ioPoll) (lua.LValue, error) {
	var c byte
	var err error
	for {
		if c, err = r.ReadByte(); err != nil {
			return lua.LNil, err
		}
		if !p.take(1) {
			return lua.LNil, errStopped
		}
		if strings.IndexByte(luaSpace, c) < 0 {
			break
		}
	}
	var b []byte
	accept := func(set string) bool {
		if err == nil && len(b) < maxNumeral && strings.IndexByte(set, c) >= 0 {
			b = append(b, c)
			if c, err = r.ReadByte(); err == nil {
				p.consumed++
			}
			return true
		}
		return false
	}
	digits := func(hex bool) int {
		n := 0
		set := "0123456789"
		if hex {
			set = "0123456789abcdefABCDEF"
		}
		for accept(set) {
			n++
		}
		return n
	}
	accept("+-")
	hex := false
	count := 0
	if accept("0") {
		count = 1
		if accept("xX") {
			hex, count = true, 0
		}
	}
	count += digits(hex)
	if accept(".") {
		count += digits(hex)
	}
	if count > 0 {
		exp := "eE"
		if hex {
			exp = "pP"
		}
		if accept(exp) {
			accept("+-")
			digits(false)
		}
	}
	if err == nil && r.UnreadByte() == nil { // the byte that ended the numeral
		p.consumed--
	}
	if v, ok := str2number(string(b)); ok {
		return lua.LNumber(v), nil
	}
	return lua.LNil, nil
}

func fileWriteMethod(L *lua.LState) int {
	f := checkFile(L, 1, true)
	return writeFile(L, f, 2, L.Get(1))
}

// writeFile writes L's arguments from first on (strings and numbers) to f
// and returns self (Lua 5.4) or nil, message, errno.
//
// It writes in pieces of pollWork bytes and polls the call's limits
// between them (ioPoll): a write the call's stop interrupts has written a
// prefix of its values (as when a process is killed in the middle of one).
func writeFile(L *lua.LState, f *luaFile, first int, self lua.LValue) int {
	w, err := f.writer()
	if err != nil {
		return pushIOError(L, "", err)
	}
	p := &ioPoll{L: L}
	for i := first; i <= L.GetTop(); i++ {
		var s string
		switch v := L.Get(i).(type) {
		case lua.LString:
			s = string(v)
		case lua.LNumber:
			s = fmtNumber(v)
		default:
			L.ArgError(i-first+1, "string expected, got "+v.Type().String())
		}
		for {
			piece := s[:min(len(s), pollWork)]
			if _, err = w.WriteString(piece); err != nil {
				return pushIOError(L, "", err)
			}
			s = s[len(piece):]
			if !p.add(len(piece) + 64) {
				L.RaiseError("%s", p.stop)
			}
			if s == "" {
				break
			}
		}
	}
	if f.nobuf {
		if err := w.Flush(); err != nil {
			return pushIOError(L, "", err)
		}
	}
	L.Push(self)
	return 1
}

// fileLinesMethod is file:lines(...): an iterator reading the formats
// (default "l"); the file stays open at the end.
func fileLinesMethod(L *lua.LState) int {
	checkFile(L, 1, true)
	L.Push(linesIterator(L, L.Get(1).(*lua.LUserData), 2, false))
	return 1
}

// linesIterator reads ud with L's arguments from first on as formats;
// closeAtEOF closes the file when a read gives nil (io.lines(name)).
//
// The formats are also the closure's upvalues, unused but for the memory
// walk, which sees Lua values only: kept in Go alone, 20 iterators held
// 1 GB of format strings under a 96 MiB limit. As in Lua 5.4 there may be
// at most maxLinesFormats of them.
func linesIterator(L *lua.LState, ud *lua.LUserData, first int, closeAtEOF bool) *lua.LFunction {
	if L.GetTop()-first+1 > maxLinesFormats {
		L.ArgError(maxLinesFormats+first, "too many arguments")
	}
	formats := make([]lua.LValue, 0, 1)
	for i := first; i <= L.GetTop(); i++ {
		formats = append(formats, L.Get(i))
	}
	return L.NewClosure(func(L *lua.LState) int {
		f := ud.Value.(*luaFile)
		if f.closed {
			L.RaiseError("file is already closed")
		}
		L.SetTop(0)
		for _, v := range formats {
			L.Push(v)
		}
		n := readFormats(L, f, 1)
		if closeAtEOF && n > 0 && L.Get(-n) == lua.LNil {
			_ = f.close()
		}
		return n
	}, formats...)
}

// maxLinesFormats is Lua 5.4's MAXARGLINE: the most formats lines takes.
const maxLinesFormats = 250

func fileSeek(L *lua.LState) int {
	f := checkFile(L, 1, true)
	whence := map[string]int{"set": io.SeekStart, "cur": io.SeekCurrent, "end": io.SeekEnd}
	w, ok := whence[L.OptString(2, "cur")]
	if !ok {
		L.ArgError(2, "invalid option '"+L.OptString(2, "cur")+"'")
	}
	var off int64
	if L.Get(3) != lua.LNil {
		off = int64(argInt(L, 3))
	}
	if err := f.flush(); err != nil {
		return pushIOError(L, "", err)
	}
	if f.r != nil {
		if w == io.SeekCurrent {
			off -= int64(f.r.Buffered())
		}
		f.r.Reset(f.f)
	}
	pos, err := f.f.Seek(off, w)
	if err != nil {
		return pushIOError(L, "", err)
	}
	L.Push(lua.LNumber(pos))
	return 1
}

func fileFlush(L *lua.LState) int {
	f := checkFile(L, 1, true)
	if err := f.flush(); err != nil {
		return pushIOError(L, "", err)
	}
	L.Push(L.Get(1))
	return 1
}

func fileSetvbuf(L *lua.LState) int {
	f := checkFile(L, 1, true)
	switch mode := L.CheckString(2); mode {
	case "no":
		f.nobuf = true
		if err := f.flush(); err != nil {
			return pushIOError(L, "", err)
		}
	case "full", "line":
		f.nobuf = false
	default:
		L.ArgError(2, "invalid option '"+mode+"'")
	}
	L.Push(lua.LTrue)
	return 1
}

func (st *state) fileClose(L *lua.LState) int {
	f := checkFile(L, 1, true)
	return st.closeFile(L, f)
}

func (st *state) closeFile(L *lua.LState, f *luaFile) int {
	delete(st.files, f)
	if err := f.close(); err != nil {
		return pushIOError(L, "", err)
	}
	L.Push(lua.LTrue)
	return 1
}

// endFiles runs when a call ends: it flushes the files left open, and
// closes those the call opened when nothing of it survives (fresh).
func (st *state) endFiles(fresh bool) {
	for f, ofCall := range st.files {
		if fresh && ofCall {
			_ = f.close()
			delete(st.files, f)
			continue
		}
		_ = f.flush()
		st.files[f] = false
	}
}

// closeFiles closes every file of the state (the state is going away).
func (st *state) closeFiles() {
	for f := range st.files {
		_ = f.close()
	}
	st.files = nil
}
