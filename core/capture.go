package core

import "fmt"

// Capture is a bounded output buffer: it keeps the first Max bytes written
// and counts the rest. It is not safe for concurrent use.
type Capture struct {
	Max int
	// Tee, when set, receives everything written (also past Max), as it is
	// written: the streaming path of interactive sessions. Its argument is
	// only valid during the call (writers may reuse it); a string is handed
	// on in pieces of at most MaxOutputPiece bytes.
	Tee     func([]byte)
	buf     []byte
	dropped int64
}

// Write keeps what fits and counts the rest; it never fails.
func (c *Capture) Write(p []byte) (int, error) {
	c.WriteBytes(p)
	return len(p), nil
}

// WriteBytes appends p within the cap.
func (c *Capture) WriteBytes(p []byte) {
	if c.Tee != nil && len(p) > 0 {
		c.Tee(p)
	}
	room := c.Max - len(c.buf)
	if room >= len(p) {
		c.buf = append(c.buf, p...)
		return
	}
	if room > 0 {
		c.buf = append(c.buf, p[:room]...)
	}
	c.dropped += int64(len(p) - max(room, 0))
}

// WriteString appends s within the cap.
func (c *Capture) WriteString(s string) {
	if c.Tee != nil {
		// In pieces: a copy of a huge string is not made at once.
		for t := s; len(t) > 0; {
			n := min(len(t), MaxOutputPiece)
			c.Tee([]byte(t[:n]))
			t = t[n:]
		}
	}
	room := c.Max - len(c.buf)
	if room >= len(s) {
		c.buf = append(c.buf, s...)
		return
	}
	if room > 0 {
		c.buf = append(c.buf, s[:room]...)
	}
	c.dropped += int64(len(s) - max(room, 0))
}

// Reset empties the buffer, keeping its memory when it is small.
func (c *Capture) Reset() {
	if cap(c.buf) > 64<<10 {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	c.dropped = 0
}

// Dropped is how many bytes did not fit.
func (c *Capture) Dropped() int64 { return c.dropped }

// Bytes returns a copy of what was kept, with TruncationMarker appended when
// bytes were dropped.
func (c *Capture) Bytes() []byte {
	out := make([]byte, len(c.buf), len(c.buf)+64)
	copy(out, c.buf)
	if c.dropped > 0 {
		out = fmt.Appendf(out, TruncationMarker, c.dropped)
	}
	return out
}
