package luaproc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"libbioxen/core"
)

type testFrame struct {
	tag     byte
	args    []int64
	payload string
}

var sampleFrames = []testFrame{
	{'H', nil, "Lua 5.4"},
	{'O', nil, "hello\n"},
	{'E', nil, ""},
	{'X', []int64{3, 64, 1000, 6}, "=inputreturn 1\x00\n\xff"},
	{'D', []int64{-1}, ""},
	{'R', nil, strings.Repeat("s", 100000)},
	{'S', nil, ""},
	{'D', []int64{0}, ""},
}

func encodeSample() []byte {
	var b []byte
	for _, f := range sampleFrames {
		b = AppendFrame(b, f.tag, f.args, []byte(f.payload))
	}
	return b
}

func checkFrame(t *testing.T, i int, f Frame, want testFrame) {
	t.Helper()
	if f.Tag != want.tag || string(f.Payload) != want.payload || len(f.Args) != len(want.args) {
		t.Fatalf("frame %d: got %c %v %d bytes, want %c %v %d bytes", i, f.Tag, f.Args, len(f.Payload), want.tag, want.args, len(want.payload))
	}
	for j := range f.Args {
		if f.Args[j] != want.args[j] {
			t.Fatalf("frame %d: args %v, want %v", i, f.Args, want.args)
		}
	}
}

func TestFrameHeader(t *testing.T) {
	got := string(AppendFrame(nil, 'X', []int64{1, 64, 100, 6}, []byte("=input"), []byte("return 1")))
	if want := "X 1 64 100 6 14\n=inputreturn 1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, 'Q', nil); err != nil || buf.String() != "Q 0\n" {
		t.Errorf("WriteFrame: %q %v", buf.String(), err)
	}
}

func TestParserPieces(t *testing.T) {
	data := encodeSample()
	for _, step := range []int{1, 3, 7, 4096, len(data)} {
		var p Parser
		i := 0
		for off := 0; off < len(data); off += step {
			p.Feed(data[off:min(off+step, len(data))])
			for {
				f, ok, err := p.Next()
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if !ok {
					break
				}
				checkFrame(t, i, f, sampleFrames[i])
				i++
			}
		}
		if i != len(sampleFrames) || p.Buffered() != 0 {
			t.Errorf("step %d: %d frames, %d bytes left", step, i, p.Buffered())
		}
	}
}

func TestReadFrame(t *testing.T) {
	r := bufio.NewReaderSize(bytes.NewReader(encodeSample()), 16)
	for i, want := range sampleFrames {
		f, err := ReadFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		checkFrame(t, i, f, want)
	}
	if _, err := ReadFrame(r); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
	if _, err := ReadFrame(bufio.NewReader(strings.NewReader("O 10\nabc"))); err != io.ErrUnexpectedEOF {
		t.Errorf("short payload: %v", err)
	}
}

func TestBadFrames(t *testing.T) {
	cases := []struct{ in, want string }{
		{"garbage\n", "bad frame header"},
		{"o 1\nx", "bad frame header"},
		{"O\n", "bad frame header"},
		{"O x\n", "bad field"},
		{"O 1  2\n", "bad field"},
		{"O -1\n", "negative payload"},
		{"O 67108865\n", "over the 67108864 byte limit"},
		{"O 99999999999999999999\n", "bad field"},
		{"D 1 2 3 4 5 6 7 8 9\n", "too many fields"},
		{"O " + strings.Repeat("1", 200), "header longer"},
	}
	for _, c := range cases {
		var p Parser
		p.Feed([]byte(c.in))
		_, _, err := p.Next()
		var pe *ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parser %q: %v, want %q", c.in, err, c.want)
		}
		_, err = ReadFrame(bufio.NewReader(strings.NewReader(c.in)))
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ReadFrame %q: %v, want %q", c.in, err, c.want)
		}
	}
}

func decodeJSON(payload string, limit, depth int) (string, error) {
	enc := core.NewValueEncoder(limit)
	if err := DecodeValues([]byte(payload), enc, depth); err != nil {
		return "", err
	}
	return string(enc.Finish()), nil
}

func TestDecodeValues(t *testing.T) {
	cases := []struct {
		payload string
		limit   int
		depth   int
		want    string
	}{
		{"0;", 1000, 8, `[]`},
		{"7;ntfi-12;d1.5;s3:a\x00bs0:", 1000, 8, `[null,true,false,-12,1.5,"a\u0000b",""]`},
		{"4;dnan;dinf;d-inf;d-0;", 1000, 8, `[{"$f":"nan"},{"$f":"inf"},{"$f":"-inf"},-0.0]`},
		{"1;s2:\xff\xfe", 1000, 8, `[{"$b":"//4="}]`},
		{"1;L2;i1;L1;s1:x", 1000, 8, `[[1,["x"]]]`},
		{"1;M2;s1:ai1;i5;M0;", 1000, 8, `[{"$t":[["a",1],[5,{"$t":[]}]]}]`},
		{"2;o25:function function: 0x1234o13:table <cycle>", 1000, 8, `[{"$o":"function","s":"function: 0x1234"},{"$o":"table","s":"<cycle>"}]`},
		// Host-side depth limit, skipping the subtree.
		{"2;L1;L1;L1;i1;i2;", 1000, 2, `[[[{"$o":"table","s":"<depth limit>"}]],2]`},
		// Driver cuts ('z') at each kind of position.
		{"3;i1;z", 1000, 8, `[1,{"$o":"nil","s":"<size limit>"}]`},
		{"1;L3;i1;z", 1000, 8, `[[1,{"$o":"nil","s":"<size limit>"}]]`},
		{"1;M2;i1;i1;z", 1000, 8, `[{"$t":[[1,1]]}]`},
		{"1;M2;i1;z", 1000, 8, `[{"$t":[[1,{"$o":"nil","s":"<size limit>"}]]}]`},
		{"1;M1;L2;i1;z", 1000, 8, `[{"$t":[[[1,{"$o":"nil","s":"<size limit>"}],{"$o":"nil","s":"<size limit>"}]]}]`},
	}
	for _, c := range cases {
		got, err := decodeJSON(c.payload, c.limit, c.depth)
		if err != nil {
			t.Errorf("%q: %v", c.payload, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.payload, got, c.want)
		}
		if _, err := core.DecodeValues([]byte(got)); err != nil {
			t.Errorf("%q: output does not decode: %v", c.payload, err)
		}
	}
}

func TestDecodeValuesEncoderFull(t *testing.T) {
	// Long lists and maps cut by the encoder's own limit stay valid JSON.
	var b strings.Builder
	b.WriteString("3;L1000;")
	for i := 0; i < 1000; i++ {
		b.WriteString("s5:hello")
	}
	b.WriteString("M1000;")
	for i := 0; i < 1000; i++ {
		b.WriteString("i7;L1;s5:hello")
	}
	b.WriteString("i9;")
	got, err := decodeJSON(b.String(), 100, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > 250 || !strings.Contains(got, "<size limit>") {
		t.Errorf("got %d bytes: %s", len(got), got)
	}
	if _, err := core.DecodeValues([]byte(got)); err != nil {
		t.Errorf("%s: %v", got, err)
	}
	got, err = decodeJSON("2;M1000;"+strings.Repeat("i7;L1;s5:hello", 1000)+"i1;", 100, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.DecodeValues([]byte(got)); err != nil || !strings.Contains(got, "<size limit>") {
		t.Errorf("%s: %v", got, err)
	}
}

func TestDecodeValuesMalformed(t *testing.T) {
	for _, payload := range []string{
		"", "x;", "1;", "1;q", "1;i12", "1;ix;", "1;dzz;", "1;s5:abc", "1;s-1:", "1;L2;i1;",
		"1;o3", "2;i1;", "1;i1;extra", strings.Repeat("L1;", 2000) + "n",
	} {
		_, err := decodeJSON(payload, 1000, 8)
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Errorf("%.20q: %v, want a protocol error", payload, err)
		}
	}
	// A driver cut inside a subtree the host skips is a protocol error.
	if _, err := decodeJSON("1;L1;L1;z", 1000, 1); err == nil {
		t.Errorf("cut in a skipped table accepted")
	}
	// Depth past the host's limit plus the skip bound is refused.
	deep := "1;" + strings.Repeat("L1;", maxSkipDepth+20) + "n"
	if _, err := decodeJSON(deep, 1<<20, 4); err == nil {
		t.Errorf("deep nesting accepted")
	}
}

func TestLuaQuote(t *testing.T) {
	if got := luaQuote("/dev/fd/3"); got != `"/dev/fd/3"` {
		t.Errorf("got %s", got)
	}
	if got := luaQuote("a\"b\\\n\xff"); got != `"a\034b\092\010\255"` {
		t.Errorf("got %s", got)
	}
	if !strings.Contains(Bootstrap("/dev/fd/3", "/dev/fd/4"), `"=[bioxen driver]"`) {
		t.Errorf("bootstrap lacks the chunk name")
	}
	if !bytes.HasPrefix(BootstrapFrame(), []byte("B ")) || len(DriverSource()) == 0 {
		t.Errorf("bootstrap frame")
	}
}

// TestHeaderCostsNothingAhead: a peer's 12-byte header announcing a
// 64 MiB payload made the Parser and ReadFrame allocate 64 MiB before a
// byte of it arrived (found by FuzzFrames). Memory now grows with the
// bytes received.
func TestHeaderCostsNothingAhead(t *testing.T) {
	hdr := "O 67108864\nabc"
	var p Parser
	p.Feed([]byte(hdr))
	if _, ok, err := p.Next(); ok || err != nil {
		t.Fatalf("Next: %v %v", ok, err)
	}
	if c := cap(p.buf); c > 1<<20 {
		t.Errorf("Parser holds %d bytes for a %d-byte input", c, len(hdr))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(bufio.NewReader(strings.NewReader(hdr)))
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Errorf("ReadFrame: %v, want io.ErrUnexpectedEOF", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("ReadFrame allocated %d bytes for a %d-byte input", n, len(hdr))
	}
	// A large frame fed in pieces still arrives whole.
	payload := bytes.Repeat([]byte("x"), 3<<20)
	data := AppendFrame(nil, 'O', nil, payload)
	p = Parser{}
	for off := 0; off < len(data); off += 50000 {
		p.Feed(data[off:min(off+50000, len(data))])
	}
	if f, ok, err := p.Next(); !ok || err != nil || !bytes.Equal(f.Payload, payload) {
		t.Errorf("large frame: %v %v", ok, err)
	}
	if f, err := ReadFrame(bufio.NewReader(bytes.NewReader(data))); err != nil || !bytes.Equal(f.Payload, payload) {
		t.Errorf("large frame via ReadFrame: %v", err)
	}
	// A payload of a power of two takes no more than its length: a
	// bytes.Buffer doubled a full 16 MiB payload to 32 MiB (a flooding
	// peer's frames made the host hold 134 MiB in a CI run).
	for _, n := range []int{1 << 22, 3<<20 + 1} {
		data := AppendFrame(nil, 'O', nil, bytes.Repeat([]byte("y"), n))
		runtime.ReadMemStats(&before)
		f, err := ReadFrame(bufio.NewReader(bytes.NewReader(data)))
		runtime.ReadMemStats(&after)
		if err != nil || len(f.Payload) != n || cap(f.Payload) != n {
			t.Errorf("ReadFrame of %d bytes: len %d cap %d, %v", n, len(f.Payload), cap(f.Payload), err)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > uint64(2*n+1<<20) {
			t.Errorf("ReadFrame of %d bytes allocated %d", n, a)
		}
	}
}

// TestDecodeValuesOpaqueNotUTF8: an 'o' value whose text is not UTF-8
// (the driver cuts tostring at 1024 bytes, maybe inside a character; a
// remote driver sends any bytes) went into the values JSON as is, which
// Python's strict UTF-8 decode refuses (found by FuzzDecodeValues,
// testdata/fuzz/FuzzDecodeValues/2c09f45404001f5e).
func TestDecodeValuesOpaqueNotUTF8(t *testing.T) {
	got, err := decodeJSON("2;o11:function \xe2\x82o8:ta\xffble x", 1000, 8)
	if err != nil {
		t.Fatal(err)
	}
	if !utf8.ValidString(got) {
		t.Errorf("not UTF-8: %q", got)
	}
	if want := `[{"$o":"function","s":"` + "\uFFFD" + `"},{"$o":"ta` + "\uFFFD" + `ble","s":"x"}]`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestDecodeValuesOpaqueIsClipped: the driver clips an opaque value's
// text at 1024 bytes, but the host took whatever an 'o' held: a remote
// driver's 64 MiB one became up to 384 MiB of JSON, past the values'
// size limit. The host clips the type name and the text too.
func TestDecodeValuesOpaqueIsClipped(t *testing.T) {
	text := strings.Repeat("\x01", 100000)
	typ := strings.Repeat("u", 1000)
	s := typ + " " + text
	got, err := decodeJSON("1;o"+strconv.Itoa(len(s))+":"+s, 1000, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > 1000+6*(maxOpaqueType+maxOpaqueText)+100 {
		t.Errorf("%d bytes of JSON for a limit of 1000", len(got))
	}
	vals, err := core.DecodeValues([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := vals[0].(core.Opaque); !ok || len(o.Type) != maxOpaqueType || len(o.Text) != maxOpaqueText {
		t.Errorf("got %T, want a clipped opaque", vals[0])
	}
}
