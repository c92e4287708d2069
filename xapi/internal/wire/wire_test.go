package wire

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := []any{"  spaced\nvalue\t", "", "<provision><disk sr=\"\"/></provision>", int64(8589934592), 42, true, false, 1.5,
		ts, []string{"a", "b"}, map[string]string{"0/ip": "127.0.0.1", "a&b<c>": "x"}, []any{}, nil,
		struct {
			A string `xmlrpc:"a"`
			B int    `xmlrpc:"b,omitempty"`
		}{A: "x"}}
	want := []any{"  spaced\nvalue\t", "", "<provision><disk sr=\"\"/></provision>", "8589934592", "42", true, false, 1.5,
		ts, []any{"a", "b"}, map[string]any{"0/ip": "127.0.0.1", "a&b<c>": "x"}, []any{}, "",
		map[string]any{"a": "x"}}
	for _, enc := range []Encoder{{}, {Untyped: true}} {
		body, err := enc.EncodeCall("VM.do", in)
		if err != nil {
			t.Fatal(err)
		}
		method, got, err := DecodeCall(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		if method != "VM.do" || !reflect.DeepEqual(got, want) {
			t.Fatalf("untyped=%v:\n got %#v\nwant %#v", enc.Untyped, got, want)
		}
		resp, err := enc.EncodeResponse(map[string]any{"Status": "Success", "Value": in})
		if err != nil {
			t.Fatal(err)
		}
		v, err := DecodeResponse(bytes.NewReader(resp))
		if err != nil || !reflect.DeepEqual(v, map[string]any{"Status": "Success", "Value": want}) {
			t.Fatalf("response: %v %#v", err, v)
		}
	}
}

func TestDecodeForms(t *testing.T) {
	v, err := DecodeResponse(strings.NewReader(`<?xml version="1.0" encoding="UTF-8"?>
<methodResponse><params><param><value><struct>
 <member><name>i</name><value><i4>-7</i4></value></member>
 <member><name>n</name><value><nil/></value></member>
 <member><name>b</name><value><base64>aGk=</base64></value></member>
 <member><name>e</name><value/></member>
</struct></value></param></params></methodResponse>`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": int64(-7), "n": nil, "b": "hi", "e": ""}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("%#v", v)
	}
	_, err = DecodeResponse(strings.NewReader(`<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>3</int></value></member><member><name>faultString</name><value>no</value></member></struct></value></fault></methodResponse>`))
	var f *Fault
	if !errors.As(err, &f) || f.Code != 3 || f.String != "no" {
		t.Fatalf("fault: %v", err)
	}
	for _, bad := range []string{"", "<methodResponse>", "<html>500</html>", "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
		"<methodResponse><params><param><value>a<string>b</string></value></param></params></methodResponse>"} {
		if _, err := DecodeResponse(strings.NewReader(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, _, err := DecodeCall(strings.NewReader("<methodCall><methodName></methodName></methodCall>")); err == nil {
		t.Error("empty method name accepted")
	}
}

// nested streams a document of depth nested arrays (never closed: the
// decoder must stop before the end).
func nested(prefix string, depth int) io.Reader {
	open := strings.Repeat(`<value><array><data>`, 1000)
	rs := []io.Reader{strings.NewReader(prefix)}
	for range depth / 1000 {
		rs = append(rs, strings.NewReader(open))
	}
	return io.MultiReader(rs...)
}

// A deeply nested document used to overflow the stack (a fatal error, not
// a panic): the decoder recursed once per level without a bound.
func TestDepthLimit(t *testing.T) {
	const resp = `<methodResponse><params><param><value><array><data>`
	for _, depth := range []int{1_000_000, 10_000} {
		_, err := DecodeResponse(nested(resp, depth))
		if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrLimit) {
			t.Fatalf("depth %d: %v", depth, err)
		}
		_, _, err = DecodeCall(nested(`<methodCall><methodName>m</methodName><params><param><value><array><data>`, depth))
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("call of depth %d: %v", depth, err)
		}
	}
	doc := func(depth int) string {
		return `<methodResponse><params><param>` + strings.Repeat(`<value><array><data>`, depth-1) + `<value>x</value>` +
			strings.Repeat(`</data></array></value>`, depth-1) + `</param></params></methodResponse>`
	}
	if _, err := DecodeResponse(strings.NewReader(doc(DefaultMaxDepth))); err != nil {
		t.Fatalf("depth %d: %v", DefaultMaxDepth, err)
	}
	if _, err := DecodeResponse(strings.NewReader(doc(DefaultMaxDepth + 1))); !errors.Is(err, ErrLimit) {
		t.Fatalf("depth %d: %v", DefaultMaxDepth+1, err)
	}
	if _, err := (Decoder{MaxDepth: 3}).DecodeResponse(strings.NewReader(doc(4))); !errors.Is(err, ErrLimit) {
		t.Fatalf("MaxDepth 3: %v", err)
	}
}

func TestValueLimit(t *testing.T) {
	doc := func(n int) string { // n values: the array and n-1 elements
		return `<methodResponse><params><param><value><struct><member><name>a</name><value><array><data>` +
			strings.Repeat(`<value/>`, n-2) + `</data></array></value></member></struct></value></param></params></methodResponse>`
	}
	d := Decoder{MaxValues: 10}
	if _, err := d.DecodeResponse(strings.NewReader(doc(10))); err != nil {
		t.Fatalf("10 values: %v", err)
	}
	_, err := d.DecodeResponse(strings.NewReader(doc(11)))
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrLimit) {
		t.Fatalf("11 values: %v", err)
	}
	if _, _, err := d.DecodeCall(strings.NewReader(`<methodCall><methodName>m</methodName><params>` +
		strings.Repeat(`<param><value/></param>`, 11) + `</params></methodCall>`)); !errors.Is(err, ErrLimit) {
		t.Fatalf("call with 11 values: %v", err)
	}
}

// <int> and <i4> are 32-bit; 64-bit integers travel as strings or <i8>.
func TestIntRange(t *testing.T) {
	dec := func(v string) (any, error) {
		return DecodeResponse(strings.NewReader(`<methodResponse><params><param><value>` + v + `</value></param></params></methodResponse>`))
	}
	for v, want := range map[string]int64{
		`<int>2147483647</int>`: 2147483647, `<i4>-2147483648</i4>`: -2147483648, `<int> 7 </int>`: 7,
		`<i8>8589934592</i8>`: 8589934592,
	} {
		if got, err := dec(v); err != nil || got != want {
			t.Errorf("%s: %v %v", v, got, err)
		}
	}
	for _, v := range []string{`<int>2147483648</int>`, `<i4>-2147483649</i4>`, `<i4>99999999999999999</i4>`,
		`<int>999999999999999999999999</int>`, `<i8>9223372036854775808</i8>`, `<int>` + strings.Repeat("9", 1000) + `</int>`} {
		if got, err := dec(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%.40s: %v %v", v, got, err)
		}
	}
}

// Errors quote at most a short prefix of the document, redacted first.
func TestErrorsQuoteRedactedPrefix(t *testing.T) {
	const secret = "Secret-Pa55word"
	big := strings.Repeat("9", 1<<20)
	redact := func(s string) string { return strings.ReplaceAll(s, secret, "***") }
	wrap := func(v string) string {
		return `<methodResponse><params><param><value>` + v + `</value></param></params></methodResponse>`
	}
	for _, doc := range []string{
		wrap(`<int>` + secret + `</int>`),
		wrap(`<int>` + strings.Repeat("1", 60) + secret + big + `</int>`),
		wrap(`<double>` + secret + big + `</double>`),
		wrap(`<boolean>` + secret + big + `</boolean>`),
		wrap(`<dateTime.iso8601>` + secret + `</dateTime.iso8601>`),
		wrap(`<dateTime.iso8601>` + big + secret + `</dateTime.iso8601>`),
		wrap(`<` + secret + `>x</` + secret + `>`),
		wrap(`<x` + big + secret + `/>`),
		wrap(`<string>&` + secret + `;</string>`),
		wrap(`<string><` + secret + `/></string>`),
		`<methodResponse>` + secret + big + `</methodResponse>`,
		`<methodResponse><` + secret + `/></methodResponse>`,
		`<?xml version="1.0" encoding="` + secret + `"?><methodResponse/>`,
	} {
		_, err := Decoder{Redact: redact}.DecodeResponse(strings.NewReader(doc))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%.60s: %v", doc, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, secret) || len(msg) > 400 {
			t.Errorf("%.60s: error quotes too much (%d bytes): %.400s", doc, len(msg), msg)
		}
	}
	// A fault's string is redacted and clipped.
	_, err := Decoder{Redact: redact}.DecodeResponse(strings.NewReader(`<methodResponse><fault><value><struct>` +
		`<member><name>faultCode</name><value><int>1</int></value></member>` +
		`<member><name>faultString</name><value>bad params: root, ` + secret + big + `</value></member></struct></value></fault></methodResponse>`))
	var f *Fault
	if !errors.As(err, &f) || f.Code != 1 || strings.Contains(err.Error(), secret) || len(err.Error()) > 2048 ||
		!strings.HasPrefix(f.String, "bad params: root, ***") {
		t.Fatalf("fault: %.300v", err)
	}
}

// repeated streams prefix, chunk n times, then suffix, counting what is
// read, without holding the whole document.
type repeated struct {
	parts []string
	read  int
}

func newRepeated(prefix, chunk string, n int, suffix string) *repeated {
	r := &repeated{parts: []string{prefix}}
	for range n {
		r.parts = append(r.parts, chunk)
	}
	r.parts = append(r.parts, suffix)
	return r
}

func (r *repeated) Read(p []byte) (int, error) {
	for len(r.parts) > 0 && r.parts[0] == "" {
		r.parts = r.parts[1:]
	}
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	r.read += n
	return n, nil
}

// encoding/xml reads a whole tag before returning it and builds ~50 bytes
// of heap per attribute (`a=""` is 4 bytes on the wire): 30 MiB of
// attributes in one start tag took 1.5 GiB of allocations and a heap of
// 750 MiB (25 times the document), 30 MiB of namespace declarations
// 345 MiB. The decoder now fails at the first tag over MaxMarkup bytes,
// having read little more than that.
func TestHugeMarkupStopsEarly(t *testing.T) {
	const mib = 30
	xmlns := func() string {
		var b strings.Builder
		for i := 0; b.Len() < 1<<20; i++ {
			fmt.Fprintf(&b, `xmlns:n%d="u" `, i)
		}
		return b.String()
	}()
	const tail = `<params><param><value>x</value></param></params></methodResponse>`
	for _, c := range []struct{ name, prefix, chunk, suffix string }{
		{"attributes", `<?xml version="1.0"?><methodResponse `, strings.Repeat(`a="" `, (1<<20)/5), `>` + tail},
		{"namespaces", `<?xml version="1.0"?><methodResponse `, xmlns, `>` + tail},
		{"attributes in a value", `<methodResponse><params><param><value `, strings.Repeat(`a="" `, (1<<20)/5), `>x</value></param></params></methodResponse>`},
		{"element name", `<methodResponse><params><param><value><a`, strings.Repeat("a", 1<<20), `/></value></param></params></methodResponse>`},
		{"end tag", `<methodResponse></a`, strings.Repeat("a", 1<<20), `>`},
		{"processing instruction", `<?xml version="1.0"?><?pi `, strings.Repeat("a", 1<<20), `?><methodResponse>` + tail},
		{"xml declaration", `<?xml version="1.0" `, strings.Repeat("a", 1<<20), `?><methodResponse>` + tail},
		{"doctype", `<!DOCTYPE methodResponse [`, strings.Repeat(`<!ENTITY a "b">`, (1<<20)/15), `]><methodResponse>` + tail},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := newRepeated(c.prefix, c.chunk, mib, c.suffix)
		_, err := DecodeResponse(r)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%-22s: read %d bytes, allocated %d KiB: %v", c.name, r.read, alloc>>10, err)
		if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrLimit) {
			t.Errorf("%s: got %v, want a limit error", c.name, err)
		}
		if r.read > 64<<10 {
			t.Errorf("%s: read %d bytes before failing", c.name, r.read)
		}
		if alloc > 4<<20 {
			t.Errorf("%s: allocated %d MiB", c.name, alloc>>20)
		}
	}
}

func TestMarkupLimits(t *testing.T) {
	doc := func(open, value string) string {
		return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + open + `<params><param><value>` + value + `</value></param></params></methodResponse>`
	}
	ok := map[string]string{
		"namespace":       doc(`<methodResponse xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions">`, `<ex:nil/>`),
		"attributes":      doc(`<methodResponse a="1>2" b='"'>`, `x`),
		"long tag":        doc(`<methodResponse`+strings.Repeat(" ", MaxMarkup-len(`<methodResponse>`))+`>`, `x`),
		"spaced tags":     doc(`<methodResponse>`, `<array><data>`+strings.Repeat(`<value  ></value  ><value />`, 20000)+`</data></array>`),
		"big comment":     doc(`<!-- `+strings.Repeat("<a b='>", 1<<15)+` --><methodResponse>`, `x`),
		"big CDATA":       doc(`<methodResponse>`, `<![CDATA[`+strings.Repeat("<a b='>", 1<<15)+`]]>`),
		"doctype":         `<!DOCTYPE methodResponse [ <!ELEMENT methodResponse (params|fault)> <!-- <'" --> <!ATTLIST x y CDATA "<>"> ]>` + doc(`<methodResponse>`, `x`),
		"pi with a quote": doc(`<?pi a="?><methodResponse>`, `x`),
	}
	for name, d := range ok {
		if _, err := DecodeResponse(strings.NewReader(d)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	attrs := strings.Repeat(` a="x"`, (MaxMarkup-len(`<value>`))/6)
	bad := map[string]string{
		"tag":        doc(`<methodResponse`+strings.Repeat(" ", MaxMarkup-len(`<methodResponse>`)+1)+`>`, `x`),
		"attributes": doc(`<methodResponse>`, `<array><data>`+strings.Repeat(`<value`+attrs+`/>`, 2*MaxAttributes/len(attrs))+`</data></array>`),
		"end tag":    doc(`<methodResponse>`, `x</value`+strings.Repeat(" ", MaxMarkup)+`>`),
		"doctype":    `<!DOCTYPE methodResponse [` + strings.Repeat(`<!-- x -->`, MaxMarkup/10) + `]>` + doc(`<methodResponse>`, `x`),
		"pi":         doc(`<?pi `+strings.Repeat("?", MaxMarkup)+`?><methodResponse>`, `x`),
	}
	for name, d := range bad {
		if _, err := DecodeResponse(strings.NewReader(d)); !errors.Is(err, ErrLimit) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want a limit error", name, err)
		}
	}
	if _, _, err := DecodeCall(strings.NewReader(`<methodCall><methodName ` + strings.Repeat(`a="" `, MaxMarkup) + `>m</methodName></methodCall>`)); !errors.Is(err, ErrLimit) {
		t.Errorf("call: got %v, want a limit error", err)
	}
}

// FuzzMarkupLimiter checks that markupLimiter finds the ends of markup
// where encoding/xml does: after each token the tokenizer returns, the
// limiter is back in text, and within a token that is markup it is not.
func FuzzMarkupLimiter(f *testing.F) {
	for _, s := range []string{
		`<?xml version="1.0"?><methodResponse a="x>y" b='"'><params/></methodResponse>`,
		`<a><!-- <b> -- --><![CDATA[ <c> ]] ]> ]]></a>`,
		`<!DOCTYPE a [ <!ENTITY e "<>"> <!-- > --> <!x <y> > ]><a/>`,
		`<!DOCTYPE a [<!<!-- -->>]><a/>`, `<!'><a/>`, `<!<a>'>`, `<?p ??>?><a>?></a>`,
		`<a
b = "1" c='2'
/>`, `<a></a ><b/ >`, `<!----><a/>`, `<!---->-->`, `<![CDATA[]]]]>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		states := make([]int, len(doc))
		l := &markupLimiter{}
		for i := range len(doc) {
			if l.step(doc[i]) != nil {
				return // over a limit: what follows does not matter
			}
			states[i] = l.state
		}
		d := xml.NewDecoder(strings.NewReader(doc))
		d.Strict = true
		start := 0
		for {
			tok, err := d.RawToken()
			if err != nil {
				return
			}
			end := int(d.InputOffset())
			if end > 0 && states[end-1] != inText {
				t.Fatalf("%q: token %T ends at %d, limiter in state %d", doc, tok, end, states[end-1])
			}
			if _, text := tok.(xml.CharData); !text || doc[start] == '<' { // CDATA is markup too
				for i := start; i < end-1; i++ {
					if states[i] == inText {
						t.Fatalf("%q: token %T at %d-%d, limiter in text at %d", doc, tok, start, end, i)
					}
				}
			}
			start = end
		}
	})
}

// A task's result: one <value>, untyped as XAPI writes it, or nothing.
func TestDecodeValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		want any
	}{
		{"<value>OpaqueRef:abc</value>", "OpaqueRef:abc"},
		{" <value><string>a&amp;b</string></value>\n", "a&b"},
		{"", ""},
	} {
		got, err := DecodeValue(c.in)
		if err != nil || got != c.want {
			t.Errorf("DecodeValue(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"OpaqueRef:abc", "<value>a</value><value>b</value>", "<value>a", "<x/>"} {
		if _, err := DecodeValue(in); err == nil {
			t.Errorf("DecodeValue(%q) accepted", in)
		}
	}
}
