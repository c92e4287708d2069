package luaproc

import (
	"libbioxen/core"
)

// Call gathers the frames the driver sends for one chunk into a
// core.Result. It knows nothing of the transport: the pipe engine feeds it
// frames and raw stdout/stderr bytes, and so can an SSH transport.
type Call struct {
	lim    core.Limits
	stdout core.Capture
	stderr core.Capture
	values []byte
	rc     int
	errMsg string
	failed bool
	done   bool
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
	c.done = false
}

// RawStdout adds bytes that reached the interpreter's stdout directly.
func (c *Call) RawStdout(b []byte) { c.stdout.WriteBytes(b) }

// RawStderr adds bytes that reached the interpreter's stderr directly.
func (c *Call) RawStderr(b []byte) { c.stderr.WriteBytes(b) }

// StderrTail returns up to n bytes of the stderr gathered so far, for error
// messages.
func (c *Call) StderrTail(n int) []byte {
	b := c.stderr.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b
}

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
		c.stdout.WriteBytes(f.Payload)
	case 'E':
		c.stderr.WriteBytes(f.Payload)
	case 'S':
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
		c.stderr.WriteBytes(f.Payload)
		c.stderr.WriteString("\n")
	case 'T':
		c.stderr.WriteBytes(f.Payload)
		c.stderr.WriteString("\n")
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
	return r
}
