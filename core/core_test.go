package core

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestValueEncoder(t *testing.T) {
	cases := []struct {
		name  string
		write func(e *ValueEncoder)
		want  string
	}{
		{"scalars", func(e *ValueEncoder) { e.Nil(); e.Bool(true); e.Int(-7); e.Number(2.5) }, `[null,true,-7,2.5]`},
		{"integral floats", func(e *ValueEncoder) { e.Number(4); e.Number(1 << 53); e.Number(1<<53 + 2) }, `[4,9007199254740992,9.007199254740994e+15]`},
		{"specials", func(e *ValueEncoder) {
			e.Number(math.NaN())
			e.Number(math.Inf(1))
			e.Number(math.Inf(-1))
			e.Number(math.Copysign(0, -1))
		},
			`[{"$f":"nan"},{"$f":"inf"},{"$f":"-inf"},-0.0]`},
		{"strings", func(e *ValueEncoder) { e.String([]byte("a\"b\\\n\x01\x7f")); e.String([]byte{0xff, 0}) },
			`["a\"b\\\n\u0001\u007f",{"$b":"/wA="}]`},
		{"containers", func(e *ValueEncoder) {
			e.BeginList()
			e.Int(1)
			e.BeginMap()
			e.BeginPair()
			e.String([]byte("k"))
			e.Bool(false)
			e.End()
			e.End()
			e.End()
			e.Opaque("function", "function: 0x1")
		}, `[[1,{"$t":[["k",false]]}],{"$o":"function","s":"function: 0x1"}]`},
	}
	for _, c := range cases {
		e := NewValueEncoder(1 << 20)
		c.write(e)
		got := string(e.Finish())
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("%s: invalid JSON %s", c.name, got)
		}
	}
}

func TestValueEncoderCutOff(t *testing.T) {
	e := NewValueEncoder(10)
	e.BeginList()
	for i := 0; i < 100 && !e.Full(); i++ {
		e.String([]byte("xxxx"))
	}
	out := e.Finish()
	if !json.Valid(out) || !strings.Contains(string(out), "<size limit>") {
		t.Errorf("cut-off encoding %s", out)
	}
	vals, err := DecodeValues(out)
	if err != nil || len(vals) != 1 {
		t.Errorf("decode %v %v", vals, err)
	}
}

func TestCapture(t *testing.T) {
	var teed []byte
	c := Capture{Max: 5, Tee: func(p []byte) { teed = append(teed, p...) }}
	c.WriteString("abc")
	c.WriteBytes([]byte("defgh"))
	if got := string(c.Bytes()); got != "abcde"+fmt.Sprintf(TruncationMarker, 3) {
		t.Errorf("bytes %q", got)
	}
	if string(teed) != "abcdefgh" || c.Dropped() != 3 {
		t.Errorf("tee %q dropped %d", teed, c.Dropped())
	}
	c.Reset()
	if len(c.Bytes()) != 0 || c.Dropped() != 0 {
		t.Error("reset")
	}
}

func TestOutputLog(t *testing.T) {
	l := outputLog{max: 10}
	l.add(Stdout, []byte("aaaa"))
	l.add(Stderr, []byte("bb"))
	l.add(Stdout, []byte("cc"))
	if got := string(l.take(Stderr)); got != "bb" {
		t.Errorf("stderr %q", got)
	}
	if got := string(l.take(Stdout)); got != "aaaacc" {
		t.Errorf("stdout %q", got)
	}
	l.add(Stdout, []byte("0123456789ABCDE"))
	got := string(l.take(Stdout | Stderr))
	if got != fmt.Sprintf(DroppedMarker, 5)+"56789ABCDE" {
		t.Errorf("after overflow %q", got)
	}
	if l.size != 0 || l.has(Stdout|Stderr) {
		t.Errorf("log not empty: %d", l.size)
	}
}

func TestCheckSource(t *testing.T) {
	lim := Limits{}.WithDefaults()
	lim.MaxSourceBytes = 8
	for code, want := range map[string]Code{"": ErrInvalid, "  \n": ErrInvalid, "a\x00": ErrInvalid, "return 12345": ErrTooLarge, "x=1": OK} {
		if got := CodeOf(CheckSource([]byte(code), lim)); got != want {
			t.Errorf("%q: %v, want %v", code, got, want)
		}
	}
}

// TestOpaqueTextIsUTF8: an opaque value's text with bytes that are not
// UTF-8 (the driver cuts tostring at 1024 bytes, maybe inside a
// character; a remote driver sends what it likes) went into the JSON
// as is, and Python's strict UTF-8 decode of the values failed (found by
// luaproc's FuzzDecodeValues). They become U+FFFD.
func TestOpaqueTextIsUTF8(t *testing.T) {
	e := NewValueEncoder(1000)
	e.Opaque("user\xffdata", "caf\xc3")
	out := e.Finish()
	if !utf8.Valid(out) {
		t.Fatalf("not UTF-8: %q", out)
	}
	vals, err := DecodeValues(out)
	if err != nil || vals[0] != (Opaque{"user\uFFFDdata", "caf\uFFFD"}) {
		t.Errorf("decoded %#v %v", vals, err)
	}
}

// TestDecodeValuesIsLinear: each nested value was decoded again from its
// raw bytes, so nesting cost quadratic time (18 KB of "[[[...]]]" took
// 5 s, 13 KB of nested maps 1 s); found by FuzzDecodeValues.
func TestDecodeValuesIsLinear(t *testing.T) {
	const d = 9000
	for _, s := range []string{
		"[" + strings.Repeat("[", d) + strings.Repeat("]", d) + "]",
		"[" + strings.Repeat(`{"$t":[[1,`, 3000) + "1" + strings.Repeat("]]}", 3000) + "]",
	} {
		start := time.Now()
		if _, err := DecodeValues([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("%d bytes took %v", len(s), el)
		}
	}
}

// TestDecodeValuesErrorsAreTyped: bad input anywhere below the top level
// returned encoding/json's, strconv's or base64's bare error; DecodeValues
// now always answers an *Error of code ErrGeneric, and is strict about the
// tags (a "$f" other than nan/inf/-inf was -inf, a "$t" entry of three
// items was a pair).
func TestDecodeValuesErrorsAreTyped(t *testing.T) {
	for _, s := range []string{
		`[1e400]`, `[{}]`, `[{"$b":"!"}]`, `[{"$b":1}]`, `[{"$t":1}]`, `[{"$t":[[1]]}]`, `[{"$t":[[1,2,3]]}]`,
		`[{"$f":"x"}]`, `[{"x":1}]`, `[1] [2]`, `{"a":1}`, `1`, `[1,`,
	} {
		_, err := DecodeValues([]byte(s))
		if e, ok := err.(*Error); !ok || e.Code != ErrGeneric {
			t.Errorf("%s: %T %v, want an *Error with ErrGeneric", s, err, err)
		}
	}
	if v, err := DecodeValues([]byte(`null`)); err != nil || len(v) != 0 {
		t.Errorf("null: %v %v", v, err)
	}
}

// TestFinishFillsAnEmptyPair: Finish closed a pair left without a key as
// "[]", which is no [key, value] pair (found by FuzzValueEncoder: a
// producer that stops right after BeginPair, or whose key string is cut
// when a marker was just written). It gets the marker as its key.
func TestFinishFillsAnEmptyPair(t *testing.T) {
	e := NewValueEncoder(1000)
	e.BeginMap()
	e.BeginPair()
	out := e.Finish()
	if want := `[{"$t":[[{"$o":"nil","s":"<size limit>"},null]]}]`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
	if _, err := DecodeValues(out); err != nil {
		t.Error(err)
	}
}

// TestEncodeValues: EncodeValues writes what DecodeValues reads back, maps
// in the order of their encoded keys, and refuses other Go types.
func TestEncodeValues(t *testing.T) {
	vals := []any{nil, true, int64(-3), 1.5, "a", []byte{0xff}, Opaque{Type: "function", Text: "f"},
		[]any{int64(1)}, map[any]any{"b": int64(2), int64(1): "x"}}
	out, err := EncodeValues(vals)
	if err != nil {
		t.Fatal(err)
	}
	want := `[null,true,-3,1.5,"a",{"$b":"/w=="},{"$o":"function","s":"f"},[1],{"$t":[["b",2],[1,"x"]]}]`
	if string(out) != want {
		t.Fatalf("got %s\nwant %s", out, want)
	}
	back, err := DecodeValues(out)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := EncodeValues(back); string(again) != want {
		t.Errorf("round trip: %s", again)
	}
	if _, err := EncodeValues([]any{struct{}{}}); CodeOf(err) != ErrInvalid {
		t.Errorf("a struct: %v, want ErrInvalid", err)
	}
}
