package luaproc

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// MaxFrameSize bounds a frame's payload; a larger frame is a protocol
// violation.
const MaxFrameSize = 64 << 20

// maxHeaderLen bounds a frame's header line (tag, fields, newline).
const maxHeaderLen = 128

// readChunk is the memory a frame's payload gets before its bytes arrive.
const readChunk = 64 << 10

// maxFields bounds the number of decimal fields in a header, the payload
// length included.
const maxFields = 8

// Frame is one protocol frame (docs/protocol.md): a one-letter tag, the
// header's decimal fields before the payload length, and the payload.
type Frame struct {
	Tag     byte
	Args    []int64
	Payload []byte
}

// ProtocolError reports bytes that are not a valid frame stream.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "protocol error: " + e.Msg }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// AppendFrameHeader appends the header line of a frame with the given tag,
// fields and payload length.
func AppendFrameHeader(dst []byte, tag byte, payloadLen int, args ...int64) []byte {
	dst = append(dst, tag)
	for _, a := range args {
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, a, 10)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(payloadLen), 10)
	return append(dst, '\n')
}

// AppendFrame appends a whole frame; payload is the concatenation of parts.
func AppendFrame(dst []byte, tag byte, args []int64, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	dst = AppendFrameHeader(dst, tag, n, args...)
	for _, p := range parts {
		dst = append(dst, p...)
	}
	return dst
}

// WriteFrame writes one frame to w in a single Write call.
func WriteFrame(w io.Writer, tag byte, args []int64, parts ...[]byte) error {
	_, err := w.Write(AppendFrame(nil, tag, args, parts...))
	return err
}

// parseHeader parses a header line without its newline. args receives the
// fields before the payload length.
func parseHeader(line []byte, args []int64) (tag byte, nargs int, plen int64, err error) {
	if len(line) < 3 || line[0] < 'A' || line[0] > 'Z' || line[1] != ' ' {
		return 0, 0, 0, protoErr("bad frame header %q", clip(line))
	}
	tag = line[0]
	var fields [maxFields]int64
	nf := 0
	rest := line[2:]
	for {
		i := bytes.IndexByte(rest, ' ')
		tok := rest
		if i >= 0 {
			tok = rest[:i]
		}
		if nf == maxFields {
			return 0, 0, 0, protoErr("too many fields in frame header %q", clip(line))
		}
		v, perr := parseInt(tok)
		if perr != nil {
			return 0, 0, 0, protoErr("bad field in frame header %q", clip(line))
		}
		fields[nf] = v
		nf++
		if i < 0 {
			break
		}
		rest = rest[i+1:]
	}
	plen = fields[nf-1]
	if plen < 0 {
		return 0, 0, 0, protoErr("negative payload length in frame header %q", clip(line))
	}
	if plen > MaxFrameSize {
		return 0, 0, 0, protoErr("frame of %d bytes is over the %d byte limit", plen, MaxFrameSize)
	}
	nargs = copy(args, fields[:nf-1])
	if nargs != nf-1 {
		return 0, 0, 0, protoErr("too many fields in frame header %q", clip(line))
	}
	return tag, nargs, plen, nil
}

// parseInt parses an optionally negative decimal without allocating.
func parseInt(b []byte) (int64, error) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, strconv.ErrSyntax
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, nil
}

func clip(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// ReadFrame reads one frame from r (a blocking stream: an SSH channel, a
// test buffer). The payload is freshly allocated.
func ReadFrame(r *bufio.Reader) (Frame, error) {
	var line []byte
	for {
		b, err := r.ReadSlice('\n')
		line = append(line, b...)
		if len(line) > maxHeaderLen {
			return Frame{}, protoErr("frame header longer than %d bytes", maxHeaderLen)
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	args := make([]int64, maxFields)
	tag, nargs, plen, err := parseHeader(line[:len(line)-1], args)
	if err != nil {
		return Frame{}, err
	}
	var payload []byte
	if plen <= readChunk {
		payload = make([]byte, plen)
		_, err = io.ReadFull(r, payload)
	} else {
		// Memory grows with the bytes that arrive, not with what the
		// header announces: a 12-byte header costs no 64 MiB. It doubles
		// up to the payload's length, never past it (a bytes.Buffer
		// doubled a full 16 MiB payload to 32 MiB, and held 64 MiB of
		// garbage and buffer per frame of a flood).
		payload = make([]byte, 0, readChunk)
		for err == nil && int64(len(payload)) < plen {
			if len(payload) == cap(payload) {
				nb := make([]byte, len(payload), min(plen, 2*int64(cap(payload))))
				copy(nb, payload)
				payload = nb
			}
			var n int
			n, err = io.ReadFull(r, payload[len(payload):cap(payload)])
			payload = payload[:len(payload)+n]
		}
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Tag: tag, Args: args[:nargs], Payload: payload}, nil
}

// Parser splits a byte stream fed in arbitrary pieces (a non-blocking
// reader) into frames.
type Parser struct {
	buf  []byte
	off  int
	args [maxFields]int64
}

// Feed appends bytes read from the stream. Frames returned by Next before
// are no longer valid.
func (p *Parser) Feed(b []byte) {
	if p.off > 0 {
		if p.off == len(p.buf) {
			p.buf = p.buf[:0]
		} else if p.off > len(p.buf)/2 || p.off > 1<<20 {
			n := copy(p.buf, p.buf[p.off:])
			p.buf = p.buf[:n]
		} else {
			p.buf = append(p.buf, b...)
			return
		}
		p.off = 0
	}
	p.buf = append(p.buf, b...)
}

// Buffered is the number of bytes fed but not yet returned as frames.
func (p *Parser) Buffered() int { return len(p.buf) - p.off }

// Next returns the next complete frame, ok false when more bytes are
// needed, or a *ProtocolError. The frame's Args and Payload alias the
// parser's memory and stay valid until the next Feed or Next.
func (p *Parser) Next() (f Frame, ok bool, err error) {
	data := p.buf[p.off:]
	i := bytes.IndexByte(data[:min(len(data), maxHeaderLen)], '\n')
	if i < 0 {
		if len(data) >= maxHeaderLen {
			return Frame{}, false, protoErr("frame header longer than %d bytes", maxHeaderLen)
		}
		return Frame{}, false, nil
	}
	tag, nargs, plen, err := parseHeader(data[:i], p.args[:])
	if err != nil {
		return Frame{}, false, err
	}
	end := i + 1 + int(plen)
	if len(data) < end {
		// Make room for the frame as its bytes arrive, at least doubling
		// (so copying stays linear) but never far ahead of the bytes fed:
		// a header announcing a large payload costs nothing up front.
		if cap(p.buf)-p.off < min(end, len(data)+readChunk) {
			nb := make([]byte, len(data), min(end, 2*len(data)+readChunk))
			copy(nb, data)
			p.buf, p.off = nb, 0
		}
		return Frame{}, false, nil
	}
	p.off += end
	return Frame{Tag: tag, Args: p.args[:nargs], Payload: data[i+1 : end]}, true, nil
}
