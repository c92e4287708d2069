package luaproc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"libbioxen/core"
)

// Frames come from a driver in a child process or, for the xcpng engine,
// from a remote VM: the codec must hold up against any bytes.

type parsed struct {
	tag     byte
	args    []int64
	payload string
}

// parseAll runs data through a Parser fed in pieces of the given sizes
// (cycled) and returns the frames and the first error.
func parseAll(t *testing.T, data []byte, steps []byte) ([]parsed, error) {
	var p Parser
	var out []parsed
	fed := 0
	for k := 0; fed < len(data); k++ {
		step := 1
		if len(steps) > 0 {
			step = int(steps[k%len(steps)])%64 + 1
		}
		end := min(fed+step, len(data))
		p.Feed(data[fed:end])
		fed = end
		for {
			f, ok, err := p.Next()
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("%q: Parser error %T %v, want a *ProtocolError", data, err, err)
				}
				return out, err
			}
			if !ok {
				break
			}
			out = append(out, parsed{f.Tag, append([]int64(nil), f.Args...), string(f.Payload)})
		}
		// The parser holds no more than a small multiple of what it was
		// fed: a header announcing a large payload costs nothing up front.
		if c := cap(p.buf); c > 2*fed+128<<10 {
			t.Fatalf("%q: parser holds %d bytes after %d fed", clip(data), c, fed)
		}
		if p.Buffered() > fed {
			t.Fatalf("Buffered %d > fed %d", p.Buffered(), fed)
		}
	}
	return out, nil
}

// FuzzFrames checks the Parser, fed in arbitrary pieces, against ReadFrame:
// both return the same frames, then both fail with a *ProtocolError or both
// run out of input; the frames re-encode to the bytes they came from.
func FuzzFrames(f *testing.F) {
	f.Add(encodeSample()[:200], []byte{1, 3, 7})
	f.Add([]byte("X 3 64 1000 6 14\n=inputreturn 1D -1 0\nD 0 0\n"), []byte{5})
	f.Add([]byte("R 11\n1;L2;i1;s0:S 0\n"), []byte{63})
	for _, s := range []string{"garbage\n", "o 1\nx", "O\n", "O x\n", "O 1  2\n", "O -1\n", "O 67108865\n",
		"O 99999999999999999999\n", "D 1 2 3 4 5 6 7 8 9\n", "O -\n", "O 00000000000000000001\nx"} {
		f.Add([]byte(s), []byte{2})
	}
	f.Fuzz(func(t *testing.T, data []byte, steps []byte) {
		got, perr := parseAll(t, data, steps)
		whole, werr := parseAll(t, data, []byte{255, 255, 255})
		_ = whole
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		var want []parsed
		var rerr error
		for {
			fr, err := ReadFrame(r)
			if err != nil {
				rerr = err
				break
			}
			want = append(want, parsed{fr.Tag, fr.Args, string(fr.Payload)})
		}
		var pe *ProtocolError
		if rerr != io.EOF && rerr != io.ErrUnexpectedEOF && !errors.As(rerr, &pe) {
			t.Fatalf("%q: ReadFrame error %T %v", data, rerr, rerr)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: Parser %d frames (%v), ReadFrame %d (%v)", data, len(got), perr, len(want), rerr)
		}
		var re []byte
		for i := range got {
			g, w := got[i], want[i]
			if g.tag != w.tag || g.payload != w.payload || len(g.args) != len(w.args) {
				t.Fatalf("%q: frame %d: Parser %+v, ReadFrame %+v", data, i, g, w)
			}
			for j := range g.args {
				if g.args[j] != w.args[j] {
					t.Fatalf("%q: frame %d args: %v vs %v", data, i, g.args, w.args)
				}
			}
			re = AppendFrame(re, g.tag, g.args, []byte(g.payload))
		}
		if (perr != nil) != errors.As(rerr, &pe) || (werr != nil) != (perr != nil) {
			t.Fatalf("%q: Parser %v, whole %v, ReadFrame %v", data, perr, werr, rerr)
		}
		// Re-encoding the frames gives a canonical stream that parses back
		// to the same frames.
		again, err := parseAll(t, re, nil)
		if err != nil || len(again) != len(got) {
			t.Fatalf("%q: re-encoded %q: %d frames, %v", data, re, len(again), err)
		}
		for i := range again {
			if again[i].tag != got[i].tag || again[i].payload != got[i].payload {
				t.Fatalf("%q: re-encoded frame %d differs", data, i)
			}
		}
	})
}

// FuzzDecodeValues checks DecodeValues on any payload: an error is a
// *ProtocolError; otherwise the JSON is well formed, decodes with
// core.DecodeValues, re-encodes to itself (when no limit cut it and no
// map is involved), and is no more than a small multiple of the payload
// and of the size limit.
func FuzzDecodeValues(f *testing.F) {
	for _, s := range []string{
		"0;", "7;ntfi-12;d1.5;s3:a\x00bs0:", "4;dnan;dinf;d-inf;d-0;", "1;s2:\xff\xfe",
		"1;L2;i1;L1;s1:x", "1;M2;s1:ai1;i5;M0;", "2;o25:function function: 0x1234o13:table <cycle>",
		"2;L1;L1;L1;i1;i2;", "3;i1;z", "1;L3;i1;z", "1;M2;i1;i1;z", "1;M2;i1;z", "1;M1;L2;i1;z",
		"x;", "1;q", "1;i12", "1;s5:abc", "1;L2;i1;", "1;L1;L1;z", "2;d1e308;d5e-324;",
	} {
		f.Add([]byte(s), uint16(1000), uint8(8))
		f.Add([]byte(s), uint16(20), uint8(1))
	}
	f.Fuzz(func(t *testing.T, payload []byte, limit uint16, depth uint8) {
		enc := core.NewValueEncoder(int(limit))
		err := DecodeValues(payload, enc, int(depth))
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("%q: error %T %v, want a *ProtocolError", payload, err, err)
			}
			return
		}
		out := enc.Finish()
		vals, err := core.DecodeValues(out)
		if err != nil {
			t.Fatalf("%q: output %s does not decode: %v", payload, out, err)
		}
		// Every byte of payload yields at most a handful of JSON bytes
		// ("L0;" past the depth limit is a 35-byte marker), plus the
		// markers and closing brackets a cut adds.
		if max := 16*len(payload) + 64 + 2*int(depth); len(out) > max {
			t.Fatalf("%q: %d bytes of JSON, more than %d", payload, len(out), max)
		}
		// Past the size limit comes at most one item (an opaque value, its
		// text clipped, or a short scalar), the marker and the brackets
		// that close what is open.
		if max := int(limit) + 6*(maxOpaqueType+maxOpaqueText) + 100 + 3*(int(depth)+2); len(out) > max {
			t.Fatalf("%q: %d bytes of JSON for a limit of %d", clip(payload), len(out), limit)
		}
		if bytes.Contains(out, []byte("<size limit>")) || bytes.Contains(out, []byte(`"$t"`)) {
			return
		}
		if re := encodeGo(vals); !bytes.Equal(re, out) {
			t.Fatalf("%q: %s re-encodes to %s", payload, out, re)
		}
	})
}

// encodeGo is core.EncodeValues for values core.DecodeValues returned.
func encodeGo(vals []any) []byte {
	b, err := core.EncodeValues(vals)
	if err != nil {
		panic(err)
	}
	return b
}
