package luaproc

import (
	"fmt"
	"unicode/utf8"

	"libbioxen/core"
)

// X frame flags (docs/protocol.md).
const (
	flagFresh  = 1  // a fresh environment
	flagPrint  = 2  // print returned values
	flagStream = 4  // send output frames at once (core.Request.Output)
	flagREPL   = 8  // one input of lua -i (core.Request.REPL)
	flagSync   = 16 // the host answers W and L frames (the pipe engine)
	flagHold   = 32 // the host answers K frames: it holds files for the driver
)

// AppendRequest appends the X frame that asks the driver to run req under
// lim (zero fields take the defaults).
func AppendRequest(dst []byte, req *core.Request, lim core.Limits) []byte {
	return appendRequest(dst, req, lim, 0)
}

// appendRequest is AppendRequest with more flags (flagSync).
func appendRequest(dst []byte, req *core.Request, lim core.Limits, flags int64) []byte {
	lim = lim.WithDefaults()
	name := req.ChunkName
	if name == "" {
		name = "=input"
	}
	if req.Fresh {
		flags |= flagFresh
	}
	if req.PrintResults {
		flags |= flagPrint
	}
	if req.Output != nil {
		flags |= flagStream
	}
	if req.REPL {
		flags |= flagREPL
	}
	// The driver cuts the values at this many bytes of serialization.
	budget := int64(lim.MaxValueBytes)*2 + 64
	if budget > MaxFrameSize/2 {
		budget = MaxFrameSize / 2
	}
	dst = AppendFrameHeader(dst, 'X', len(name)+len(req.Code), flags, int64(lim.MaxValueDepth), budget, int64(len(name)))
	dst = append(dst, name...)
	return append(dst, req.Code...)
}

// IsIncomplete reports whether res is the result of REPL input that is not
// a complete chunk yet (the driver sent N): nothing ran.
func IsIncomplete(res *core.Result) bool { return res != nil && res.Incomplete }

// Call gathers the frames the driver sends for one chunk into a
// core.Result. It knows nothing of the transport: the pipe engine feeds it
// frames and raw stdout/stderr bytes, and so can an SSH transport.
type Call struct {
	// Output, when set, receives every piece of output as it is applied
	// (core.Request.Output); p is only valid during the call. Reset clears
	// it.
	Output func(stream core.Stream, p []byte)

	lim        core.Limits
	stdout     core.Capture
	stderr     core.Capture
	values     []byte
	rc         int
	errMsg     string
	failed     bool
	incomplete bool
	spent      bool
	done       bool
	// deferred: output is queued in late instead of handed to Output (see
	// DeferOutput).
	deferred    bool
	late        []latePiece
	lateSize    int // bytes in late
	lateDropped int // bytes dropped from late's front
}

type latePiece struct {
	stream core.Stream
	p      []byte
}

// NewCall starts gathering a call's result under lim (zero fields take the
// defaults).
func NewCall(lim core.Limits) *Call {
	c := &Call{}
	c.Reset(lim)
	return c
}

// Reset prepares c for a new call, keeping its buffers.
func (c *Call) Reset(lim core.Limits) {
	lim = lim.WithDefaults()
	c.lim = lim
	c.stdout.Reset()
	c.stderr.Reset()
	c.stdout.Max = lim.MaxOutputBytes
	c.stderr.Max = lim.MaxOutputBytes
	c.values = nil
	c.rc = 0
	c.errMsg = ""
	c.failed = false
	c.incomplete = false
	c.spent = false
	c.done = false
	c.Output = nil
	c.deferred, c.late, c.lateSize, c.lateDropped = false, nil, 0, 0
}

// DeferOutput queues the call's output from now on instead of handing it
// to Output, until FlushOutput. A call being stopped (its interpreter got
// SIGINT) then reaches its end at the speed of the pipe: with an Output
// slower than the chunk's writes, the frames before the end drained at
// Output's speed, past the grace after which a stopped chunk is killed
// (and its state lost).
func (c *Call) DeferOutput() { c.deferred = true }

// lateKeep is how much of the output queued after an interrupt reaches
// Output: its last lateKeep bytes (the chunk's last words, its error
// among them). The rest is dropped, as a terminal drops the output still
// queued when ^C comes, and a line says how much.
const lateKeep = 64 << 10

// FlushOutput hands the queued output to Output, in order: all of it, or
// a line saying how much was dropped and the last lateKeep bytes.
func (c *Call) FlushOutput() {
	late, dropped := c.late, c.lateDropped
	c.deferred, c.late, c.lateSize, c.lateDropped = false, nil, 0, 0
	if c.Output == nil {
		return
	}
	size := 0
	for _, pc := range late {
		size += len(pc.p)
	}
	for size > lateKeep && len(late) > 0 {
		cut := min(len(late[0].p), size-lateKeep)
		for cut < len(late[0].p) && !utf8.RuneStart(late[0].p[cut]) {
			cut++ // not inside a character
		}
		late[0].p = late[0].p[cut:]
		size -= cut
		dropped += cut
		if len(late[0].p) == 0 {
			late = late[1:]
		}
	}
	if dropped > 0 {
		c.Output(core.Stderr, fmt.Appendf(nil, "[bioxen: %d bytes of output dropped after the interrupt]\n", dropped))
	}
	// One call per run of a stream, not per write: a slow Output takes
	// its time per call.
	for len(late) > 0 {
		run := late[0]
		for len(late) > 1 && late[1].stream == run.stream {
			run.p = append(run.p, late[1].p...)
			late = late[1:]
		}
		late = late[1:]
		c.Output(run.stream, run.p)
	}
}

func (c *Call) emit(stream core.Stream, b []byte) {
	switch {
	case c.Output == nil || len(b) == 0:
	case !c.deferred:
		c.Output(stream, b)
	default:
		c.late = append(c.late, latePiece{stream, append([]byte(nil), b...)})
		c.lateSize += len(b)
		// Only the last lateKeep bytes are handed on: keep about that.
		for c.lateSize > 2*lateKeep && len(c.late) > 1 {
			c.lateSize -= len(c.late[0].p)
			c.lateDropped += len(c.late[0].p)
			c.late = c.late[1:]
		}
	}
}

var newline = []byte("\n")

func (c *Call) out(b []byte) {
	c.stdout.WriteBytes(b)
	c.emit(core.Stdout, b)
}

func (c *Call) err(b []byte) {
	c.stderr.WriteBytes(b)
	c.emit(core.Stderr, b)
}

// RawStdout adds bytes that reached the interpreter's stdout directly.
func (c *Call) RawStdout(b []byte) { c.out(b) }

// RawStderr adds bytes that reached the interpreter's stderr directly.
func (c *Call) RawStderr(b []byte) { c.err(b) }

// StderrTail returns up to n bytes of the stderr gathered so far, for error
// messages.
func (c *Call) StderrTail(n int) []byte {
	b := c.stderr.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

// Spent reports that the driver sent an I frame during the call: the
// interpreter's SIGINT handler was used up and a second SIGINT before the
// driver is re-armed (an A frame) would kill the interpreter.
func (c *Call) Spent() bool { return c.spent }

// Done reports that the D frame arrived.
func (c *Call) Done() bool { return c.done }

// Apply handles one frame of the call. It returns done true on the D frame.
// A frame that has no place in a call is a *ProtocolError. S (sync) frames
// are accepted and ignored here: the transport acts on them.
func (c *Call) Apply(f Frame) (done bool, err error) {
	if c.done {
		return true, protoErr("frame %q after the end of the call", f.Tag)
	}
	want := 0
	if f.Tag == 'D' {
		want = 1
	}
	if len(f.Args) != want {
		return false, protoErr("frame %q with %d fields", f.Tag, len(f.Args)+1)
	}
	switch f.Tag {
	case 'O':
		c.out(f.Payload)
	case 'E':
		c.err(f.Payload)
	case 'S':
	case 'N':
		c.incomplete = true
	case 'I':
		// The driver saw an interrupt it may not have been sent: the
		// interpreter's SIGINT handler is spent (see Engine.Interrupt).
		c.spent = true
	case 'R':
		if c.values != nil {
			return false, protoErr("two R frames in one call")
		}
		enc := core.NewValueEncoder(c.lim.MaxValueBytes)
		if err := DecodeValues(f.Payload, enc, c.lim.MaxValueDepth); err != nil {
			return false, err
		}
		c.values = enc.Finish()
	case 'F':
		c.failed = true
		c.errMsg = string(f.Payload)
		c.err(f.Payload)
		c.err(newline)
	case 'T':
		c.err(f.Payload)
		c.err(newline)
	case 'D':
		rc := f.Args[0]
		if rc < -1<<31 || rc > 1<<31-1 {
			return false, protoErr("return code %d out of range", rc)
		}
		c.rc = int(rc)
		c.done = true
		return true, nil
	default:
		return false, protoErr("unexpected frame %q during a call", f.Tag)
	}
	return false, nil
}

// Result returns the call's result; call it after Apply reported done.
func (c *Call) Result() *core.Result {
	values := c.values
	if values == nil {
		values = []byte("[]")
	}
	r := &core.Result{
		Stdout:     c.stdout.Bytes(),
		Stderr:     c.stderr.Bytes(),
		ReturnCode: c.rc,
		Success:    c.rc == 0,
		Values:     values,
		Truncated:  c.stdout.Dropped() > 0 || c.stderr.Dropped() > 0,
	}
	if c.failed {
		r.ErrorMessage = c.errMsg
	}
	if c.incomplete {
		// As the embedded engine: nothing ran, and it did not succeed.
		r.Incomplete = true
		r.Success = false
	}
	return r
}
