// Package wire is the XML-RPC codec shared by the XAPI client (package xapi)
// and the simulator (package xapi/sim).
//
// It follows XAPI's encoding (xapi-project/xen-api, ocaml-rpc xmlrpc.ml):
// strings may travel untyped (<value>text</value>) and are kept byte for
// byte, including surrounding white space; 64-bit integers travel as
// strings; <int>, <i4> and <i8> decode to int64; <nil/> decodes to nil; an
// empty <value></value> is the empty string. Struct member names are
// escaped, which github.com/kolo/xmlrpc's encoder does not do, and untyped
// values decode into dynamic (any) values, which kolo's decoder refuses
// ("can't unmarshal interface to string"): hence this small codec.
//
// The decoder treats its input as hostile: it bounds the nesting and the
// number of values (see Decoder), the size of each tag (MaxMarkup) and of
// all attributes (MaxAttributes), rejects <int>/<i4> beyond 32 bits, and
// its errors quote at most a short, redacted prefix of the document. So
// its heap stays within about 2.5 times the size of the document, plus
// what the values cost (see DefaultMaxValues): text costs that much while
// it is decoded (encoding/xml buffers it, and so comments and CDATA
// sections too), and markup, bounded, costs no more.
package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"libbioxen/core"
)

// TimeLayout is XML-RPC's dateTime.iso8601 layout as XAPI writes it.
const TimeLayout = "20060102T15:04:05Z"

var timeLayouts = []string{TimeLayout, "20060102T15:04:05", "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05", "20060102T15:04:05Z07:00"}

// Fault is an XML-RPC <fault>. XAPI never sends one (its errors are
// Status/Failure results), but other servers on the same port might.
type Fault struct {
	Code   int
	String string
}

func (f *Fault) Error() string { return fmt.Sprintf("xml-rpc fault %d: %s", f.Code, f.String) }

// Encoder turns Go values into XML-RPC <value> elements.
//
// Supported: nil (as the empty string, XAPI's void), string, bool, every
// integer type (always sent as a decimal string, XAPI's convention for
// int64), float32/64 (<double>), time.Time (<dateTime.iso8601>), slices and
// arrays (<array>), maps with string keys and structs with `xmlrpc` tags
// (<struct>). Map members are written in sorted key order.
type Encoder struct {
	// Untyped writes strings as <value>text</value> (what XAPI sends);
	// otherwise as <value><string>text</string></value> (what clients send).
	Untyped bool
}

// EncodeCall encodes a <methodCall>.
func (e Encoder) EncodeCall(method string, params []any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?>` + "\n<methodCall><methodName>")
	escape(&b, method)
	b.WriteString("</methodName><params>")
	for i, p := range params {
		b.WriteString("<param>")
		if err := e.value(&b, reflect.ValueOf(p)); err != nil {
			return nil, fmt.Errorf("parameter %d: %w", i+1, err)
		}
		b.WriteString("</param>")
	}
	b.WriteString("</params></methodCall>\n")
	return b.Bytes(), nil
}

// EncodeResponse encodes a <methodResponse> carrying v.
func (e Encoder) EncodeResponse(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?>` + "\n<methodResponse><params><param>")
	if err := e.value(&b, reflect.ValueOf(v)); err != nil {
		return nil, err
	}
	b.WriteString("</param></params></methodResponse>\n")
	return b.Bytes(), nil
}

// EncodeValue encodes a single <value> element (used for task results).
func (e Encoder) EncodeValue(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := e.value(&b, reflect.ValueOf(v)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var timeType = reflect.TypeOf(time.Time{})

func (e Encoder) str(b *bytes.Buffer, s string) {
	if e.Untyped {
		b.WriteString("<value>")
		escape(b, s)
		b.WriteString("</value>")
		return
	}
	b.WriteString("<value><string>")
	escape(b, s)
	b.WriteString("</string></value>")
}

func (e Encoder) value(b *bytes.Buffer, v reflect.Value) error {
	for v.IsValid() && (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) {
		if v.IsNil() {
			v = reflect.Value{}
			break
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		e.str(b, "")
		return nil
	}
	if v.Type() == timeType {
		b.WriteString("<value><dateTime.iso8601>")
		b.WriteString(v.Interface().(time.Time).UTC().Format(TimeLayout))
		b.WriteString("</dateTime.iso8601></value>")
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		e.str(b, v.String())
	case reflect.Bool:
		if v.Bool() {
			b.WriteString("<value><boolean>1</boolean></value>")
		} else {
			b.WriteString("<value><boolean>0</boolean></value>")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.str(b, strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.str(b, strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		b.WriteString("<value><double>")
		b.WriteString(strconv.FormatFloat(v.Float(), 'g', -1, 64))
		b.WriteString("</double></value>")
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			b.WriteString("<value><base64>")
			b.WriteString(base64.StdEncoding.EncodeToString(v.Bytes()))
			b.WriteString("</base64></value>")
			return nil
		}
		b.WriteString("<value><array><data>")
		for i := 0; i < v.Len(); i++ {
			if err := e.value(b, v.Index(i)); err != nil {
				return err
			}
		}
		b.WriteString("</data></array></value>")
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("xml-rpc: map key type %s is not a string", v.Type().Key())
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		b.WriteString("<value><struct>")
		for _, k := range keys {
			b.WriteString("<member><name>")
			escape(b, k.String())
			b.WriteString("</name>")
			if err := e.value(b, v.MapIndex(k)); err != nil {
				return err
			}
			b.WriteString("</member>")
		}
		b.WriteString("</struct></value>")
	case reflect.Struct:
		t := v.Type()
		b.WriteString("<value><struct>")
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("xmlrpc"), ",")
			if name == "-" {
				continue
			}
			if opts == "omitempty" && v.Field(i).IsZero() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			b.WriteString("<member><name>")
			escape(b, name)
			b.WriteString("</name>")
			if err := e.value(b, v.Field(i)); err != nil {
				return err
			}
			b.WriteString("</member>")
		}
		b.WriteString("</struct></value>")
	default:
		return fmt.Errorf("xml-rpc: cannot encode %s", v.Type())
	}
	return nil
}

// escape writes s as XML character data. Characters XML 1.0 cannot carry
// (NUL and most C0 controls) become U+FFFD, as encoding/xml does.
func escape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s))
}

// ErrMalformed is wrapped by every decoding error about the document itself.
var ErrMalformed = errors.New("malformed XML-RPC document")

// ErrLimit is wrapped, with ErrMalformed, by the decoding error of a
// document over one of the decoder's limits (Decoder.MaxDepth,
// Decoder.MaxValues, MaxMarkup, MaxAttributes).
var ErrLimit = errors.New("limit exceeded")

// Default limits of a Decoder whose fields are zero.
const (
	// DefaultMaxDepth bounds the nesting of <value> elements. XAPI's
	// deepest values (event snapshots holding maps) are a handful of
	// levels deep; the bound keeps a hostile document from exhausting the
	// stack, as the decoder recurses once per level.
	DefaultMaxDepth = 512
	// DefaultMaxValues bounds the number of <value> elements in a
	// document, and so the memory its decoded form takes beyond its text:
	// each value costs up to about 100 bytes (an interface in a slice, an
	// empty map, or a map entry with its key) however small it is on the
	// wire (`<value/>` is 8 bytes), so 2 Mi values keep the decoder's heap
	// under about 350 MiB at worst, 1.4 times the client's 256 MiB cap on
	// a response. A VM record holds a few hundred values: 2 Mi is room for
	// VM.get_all_records of several thousand VMs. (Text costs about 2.5
	// times its size while it is decoded, as encoding/xml buffers it:
	// one 256 MiB string peaks near 650 MiB.)
	DefaultMaxValues = 2 << 20
	// MaxMarkup bounds the size of each start or end tag (its name and
	// attributes), processing instruction (<?xml …?>) and directive
	// (<!DOCTYPE …>), from its '<' to its '>'. XML-RPC's are a few dozen
	// bytes; encoding/xml reads each whole before it returns it.
	MaxMarkup = 4 << 10
	// MaxAttributes bounds the bytes of attributes (but white space) in
	// all the start tags of a document. XML-RPC has no attributes, but a
	// namespace declaration (xmlns:ex="…") is harmless; encoding/xml
	// spends about 50 bytes of heap on each attribute however short (`a=""`
	// is 4 bytes), and keeps namespace declarations until their element
	// closes.
	MaxAttributes = 64 << 10
	// MaxQuoted bounds how much of a document's text an error quotes.
	MaxQuoted = 64
	// maxFault bounds a fault's string.
	maxFault = 1024
)

// Decoder decodes XML-RPC documents. The zero value applies the default
// limits and quotes the document's text in its errors as it is.
type Decoder struct {
	// Redact, when set, is applied to text taken from the document before
	// an error quotes it, and to a fault's string, so that a server echoing
	// a secret back does not put it in an error.
	Redact func(string) string
	// MaxDepth bounds the nesting of values (DefaultMaxDepth if <= 0).
	MaxDepth int
	// MaxValues bounds the number of values (DefaultMaxValues if <= 0).
	MaxValues int
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func overLimit(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrMalformed, ErrLimit, fmt.Sprintf(format, args...))
}

type decoder struct {
	d         *xml.Decoder
	redact    func(string) string
	maxDepth  int
	maxValues int
	depth     int // <value> elements open
	values    int // <value> elements seen
}

func (o Decoder) newDecoder(r io.Reader) *decoder {
	d := xml.NewDecoder(&markupLimiter{r: r})
	d.Strict = true
	d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(label) {
		case "utf-8", "utf8", "us-ascii", "ascii":
			return in, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", core.Clip(label, MaxQuoted))
	}
	dc := &decoder{d: d, redact: o.Redact, maxDepth: o.MaxDepth, maxValues: o.MaxValues}
	if dc.maxDepth <= 0 {
		dc.maxDepth = DefaultMaxDepth
	}
	if dc.maxValues <= 0 {
		dc.maxValues = DefaultMaxValues
	}
	return dc
}

// clean redacts text taken from the document and clips it to n bytes:
// errors never carry more than a short, scrubbed prefix of what the peer
// sent. The redaction runs first, so that clipping cannot cut a secret
// in two and let its first part through.
func (dc *decoder) clean(s string, n int) string {
	if dc.redact != nil {
		s = dc.redact(s)
	}
	if len(s) > n {
		return fmt.Sprintf("%s (%d bytes)", core.Clip(s, n), len(s))
	}
	return s
}

// quote is clean, quoted.
func (dc *decoder) quote(s string) string {
	if dc.redact != nil {
		s = dc.redact(s)
	}
	return Quote(s)
}

// Quote quotes s for an error, clipped to a short prefix (MaxQuoted bytes)
// followed by its size; s must already be free of secrets.
func Quote(s string) string {
	if len(s) > MaxQuoted {
		return fmt.Sprintf("%q (%d bytes)", core.Clip(s, MaxQuoted), len(s))
	}
	return strconv.Quote(s)
}

// token returns the next token. The tokenizer's errors may quote the
// document (names, entities), so their text is cleaned.
func (dc *decoder) token() (xml.Token, error) {
	tok, err := dc.d.Token()
	if err != nil {
		if err == io.EOF {
			return nil, malformed("unexpected end of document")
		}
		if errors.Is(err, ErrLimit) { // from markupLimiter, through the tokenizer
			return nil, err
		}
		return nil, malformed("%s", dc.clean(err.Error(), 2*MaxQuoted))
	}
	return tok, nil
}

// next returns the next start or end element, skipping white space,
// comments, processing instructions and directives. Non-space text is an
// error.
func (dc *decoder) next() (xml.Token, error) {
	for {
		tok, err := dc.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, malformed("unexpected text %s", dc.quote(string(t)))
			}
		}
	}
}

func (dc *decoder) expectStart(name string) error {
	tok, err := dc.next()
	if err != nil {
		return err
	}
	if s, ok := tok.(xml.StartElement); !ok || s.Name.Local != name {
		return malformed("expected <%s>, got %s", name, dc.describe(tok))
	}
	return nil
}

func (dc *decoder) expectEnd(name string) error {
	tok, err := dc.next()
	if err != nil {
		return err
	}
	if e, ok := tok.(xml.EndElement); !ok || e.Name.Local != name {
		return malformed("expected </%s>, got %s", name, dc.describe(tok))
	}
	return nil
}

// describe names a token for an error; element names come from the
// document, so they are cleaned like its text.
func (dc *decoder) describe(tok xml.Token) string {
	switch t := tok.(type) {
	case xml.StartElement:
		return "<" + dc.clean(t.Name.Local, MaxQuoted) + ">"
	case xml.EndElement:
		return "</" + dc.clean(t.Name.Local, MaxQuoted) + ">"
	}
	return fmt.Sprintf("%T", tok)
}

// text reads character data up to the end tag `name`.
func (dc *decoder) text(name string) (string, error) {
	var sb strings.Builder
	for {
		tok, err := dc.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			sb.Write(t)
		case xml.EndElement:
			if t.Name.Local != name {
				return "", malformed("expected </%s>", name)
			}
			return sb.String(), nil
		case xml.StartElement:
			return "", malformed("unexpected %s inside <%s>", dc.describe(t), name)
		}
	}
}

// value decodes the content of a <value> element whose start tag was read,
// up to and including </value>. It counts the value against MaxValues and
// its nesting against MaxDepth: value and typed recurse once per level.
func (dc *decoder) value() (any, error) {
	dc.values++
	if dc.values > dc.maxValues {
		return nil, overLimit("more than %d values", dc.maxValues)
	}
	dc.depth++
	defer func() { dc.depth-- }()
	if dc.depth > dc.maxDepth {
		return nil, overLimit("values nested more than %d deep", dc.maxDepth)
	}
	var raw strings.Builder
	for {
		tok, err := dc.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			raw.Write(t)
		case xml.EndElement:
			if t.Name.Local != "value" {
				return nil, malformed("expected </value>")
			}
			return raw.String(), nil // untyped: a string, kept as is
		case xml.StartElement:
			if len(strings.TrimSpace(raw.String())) != 0 {
				return nil, malformed("mixed content in <value>")
			}
			v, err := dc.typed(t.Name.Local)
			if err != nil {
				return nil, err
			}
			if err := dc.expectEnd("value"); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

// typed decodes <type>…</type> whose start tag was read.
func (dc *decoder) typed(name string) (any, error) {
	switch name {
	case "string":
		return dc.text(name)
	case "int", "i4", "i8":
		s, err := dc.text(name)
		if err != nil {
			return nil, err
		}
		// <int> and <i4> are 32-bit (XAPI sends 64-bit integers as
		// strings); <i8> is the 64-bit extension.
		bits := 32
		if name == "i8" {
			bits = 64
		}
		t := strings.TrimSpace(s)
		if len(t) > 24 {
			// ParseInt's error would copy the whole text.
			return nil, malformed("bad <%s> %s", name, dc.quote(s))
		}
		n, err := strconv.ParseInt(t, 10, bits)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return nil, malformed("<%s> %s out of the %d-bit range", name, dc.quote(s), bits)
			}
			return nil, malformed("bad <%s> %s", name, dc.quote(s))
		}
		return n, nil
	case "boolean":
		s, err := dc.text(name)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, malformed("bad <boolean> %s", dc.quote(s))
	case "double":
		s, err := dc.text(name)
		if err != nil {
			return nil, err
		}
		t := strings.TrimSpace(s)
		if len(t) > 512 {
			return nil, malformed("bad <double> %s", dc.quote(s))
		}
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return nil, malformed("bad <double> %s", dc.quote(s))
		}
		return f, nil
	case "dateTime.iso8601":
		s, err := dc.text(name)
		if err != nil {
			return nil, err
		}
		s = strings.TrimSpace(s)
		if len(s) <= 64 { // time.Parse's error would copy the whole text
			for _, l := range timeLayouts {
				if t, err := time.Parse(l, s); err == nil {
					return t, nil
				}
			}
		}
		return nil, malformed("bad <dateTime.iso8601> %s", dc.quote(s))
	case "base64":
		s, err := dc.text(name)
		if err != nil {
			return nil, err
		}
		data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, malformed("bad <base64>")
		}
		return string(data), nil
	case "nil":
		if err := dc.expectEnd("nil"); err != nil {
			return nil, err
		}
		return nil, nil
	case "array":
		if err := dc.expectStart("data"); err != nil {
			return nil, err
		}
		out := []any{}
		for {
			tok, err := dc.next()
			if err != nil {
				return nil, err
			}
			if e, ok := tok.(xml.EndElement); ok && e.Name.Local == "data" {
				break
			}
			if s, ok := tok.(xml.StartElement); !ok || s.Name.Local != "value" {
				return nil, malformed("expected <value> in <data>, got %s", dc.describe(tok))
			}
			v, err := dc.value()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		if err := dc.expectEnd("array"); err != nil {
			return nil, err
		}
		return out, nil
	case "struct":
		out := map[string]any{}
		for {
			tok, err := dc.next()
			if err != nil {
				return nil, err
			}
			if e, ok := tok.(xml.EndElement); ok && e.Name.Local == "struct" {
				return out, nil
			}
			if s, ok := tok.(xml.StartElement); !ok || s.Name.Local != "member" {
				return nil, malformed("expected <member> in <struct>, got %s", dc.describe(tok))
			}
			if err := dc.expectStart("name"); err != nil {
				return nil, err
			}
			key, err := dc.text("name")
			if err != nil {
				return nil, err
			}
			if err := dc.expectStart("value"); err != nil {
				return nil, err
			}
			v, err := dc.value()
			if err != nil {
				return nil, err
			}
			out[key] = v
			if err := dc.expectEnd("member"); err != nil {
				return nil, err
			}
		}
	}
	return nil, malformed("unknown XML-RPC type <%s>", dc.clean(name, MaxQuoted))
}

// DecodeCall decodes a <methodCall> with a zero Decoder.
func DecodeCall(r io.Reader) (string, []any, error) { return Decoder{}.DecodeCall(r) }

// DecodeResponse decodes a <methodResponse> with a zero Decoder.
func DecodeResponse(r io.Reader) (any, error) { return Decoder{}.DecodeResponse(r) }

// DecodeValue decodes a document that is one <value> (what XAPI puts in
// a task's result field) with a zero Decoder. An empty document (the
// result of a void method) is "".
func DecodeValue(doc string) (any, error) { return Decoder{}.DecodeValue(doc) }

// DecodeValue decodes a document that is one <value>; an empty one is "".
func (o Decoder) DecodeValue(doc string) (any, error) {
	if strings.TrimSpace(doc) == "" {
		return "", nil
	}
	dc := o.newDecoder(strings.NewReader(doc))
	if err := dc.expectStart("value"); err != nil {
		return nil, err
	}
	v, err := dc.value()
	if err != nil {
		return nil, err
	}
	for { // only white space may follow
		tok, err := dc.d.Token()
		if err == io.EOF {
			return v, nil
		}
		if err != nil {
			return nil, malformed("%s", dc.clean(err.Error(), 2*MaxQuoted))
		}
		if t, ok := tok.(xml.CharData); !ok || len(bytes.TrimSpace(t)) != 0 {
			return nil, malformed("expected the end after </value>, got %s", dc.describe(tok))
		}
	}
}

// DecodeCall decodes a <methodCall> into its method name and parameters.
func (o Decoder) DecodeCall(r io.Reader) (string, []any, error) {
	dc := o.newDecoder(r)
	if err := dc.expectStart("methodCall"); err != nil {
		return "", nil, err
	}
	if err := dc.expectStart("methodName"); err != nil {
		return "", nil, err
	}
	method, err := dc.text("methodName")
	if err != nil {
		return "", nil, err
	}
	method = strings.TrimSpace(method)
	params := []any{}
	tok, err := dc.next()
	if err != nil {
		return "", nil, err
	}
	if s, ok := tok.(xml.StartElement); ok && s.Name.Local == "params" {
		for {
			tok, err := dc.next()
			if err != nil {
				return "", nil, err
			}
			if e, ok := tok.(xml.EndElement); ok && e.Name.Local == "params" {
				break
			}
			if s, ok := tok.(xml.StartElement); !ok || s.Name.Local != "param" {
				return "", nil, malformed("expected <param>, got %s", dc.describe(tok))
			}
			if err := dc.expectStart("value"); err != nil {
				return "", nil, err
			}
			v, err := dc.value()
			if err != nil {
				return "", nil, err
			}
			params = append(params, v)
			if err := dc.expectEnd("param"); err != nil {
				return "", nil, err
			}
		}
		tok, err = dc.next()
		if err != nil {
			return "", nil, err
		}
	}
	if e, ok := tok.(xml.EndElement); !ok || e.Name.Local != "methodCall" {
		return "", nil, malformed("expected </methodCall>, got %s", dc.describe(tok))
	}
	if method == "" {
		return "", nil, malformed("empty method name")
	}
	return method, params, nil
}

// DecodeResponse decodes a <methodResponse>. A <fault> comes back as a
// *Fault error, its string redacted and clipped to 1 KiB.
func (o Decoder) DecodeResponse(r io.Reader) (any, error) {
	dc := o.newDecoder(r)
	if err := dc.expectStart("methodResponse"); err != nil {
		return nil, err
	}
	tok, err := dc.next()
	if err != nil {
		return nil, err
	}
	s, ok := tok.(xml.StartElement)
	if !ok {
		return nil, malformed("empty methodResponse")
	}
	switch s.Name.Local {
	case "params":
		if err := dc.expectStart("param"); err != nil {
			return nil, err
		}
		if err := dc.expectStart("value"); err != nil {
			return nil, err
		}
		v, err := dc.value()
		if err != nil {
			return nil, err
		}
		if err := dc.expectEnd("param"); err != nil {
			return nil, err
		}
		return v, nil
	case "fault":
		if err := dc.expectStart("value"); err != nil {
			return nil, err
		}
		v, err := dc.value()
		if err != nil {
			return nil, err
		}
		f := &Fault{}
		if m, ok := v.(map[string]any); ok {
			switch c := m["faultCode"].(type) {
			case int64:
				f.Code = int(c)
			case string:
				f.Code, _ = strconv.Atoi(c)
			}
			s, _ := m["faultString"].(string)
			f.String = dc.clean(s, maxFault)
		}
		return nil, f
	}
	return nil, malformed("unexpected %s in methodResponse", dc.describe(s))
}

// States of a markupLimiter: where its input is in the XML grammar.
const (
	inText             = iota // character data, outside markup
	inOpen                    // just after '<'
	inBang                    // just after "<!"
	inDash                    // just after "<!-"
	inComment                 // after "<!--", up to "--" and the byte after it
	inCDATA                   // after "<![", up to "]]>"
	inPI                      // after "<?", up to "?>"
	inName                    // a start or end tag's name
	inAttrs                   // a tag after its name, up to an unquoted '>'
	inDirective               // after "<!x" (<!DOCTYPE …>), up to its '>'
	inDirectiveLt             // a '<' in a directive, maybe opening a comment
	inDirectiveComment        // a comment in a directive, up to "-->"
)

// markupLimiter passes a document to encoding/xml and fails (with an
// ErrLimit error, at the byte over the limit, once the bytes before it
// are read) on a start or end tag, processing instruction or directive
// longer than MaxMarkup bytes, and on attributes longer than
// MaxAttributes bytes in all. encoding/xml reads a whole tag before
// returning it and builds its attributes at about 50 bytes each (`a=""`
// is 4 on the wire): without the bounds, 100 MiB of attributes in one tag
// took 2.3 GiB of heap; namespace declarations (xmlns:p="u") are also
// kept until their element closes. Comments and CDATA sections are not
// bounded: they cost what character data costs.
//
// It follows encoding/xml's lexer (xml.go, Decoder.rawToken) closely
// enough to find where each piece of markup ends in any input that the
// tokenizer accepts up to there: where they disagree, the tokenizer has
// already failed on the document.
type markupLimiter struct {
	r      io.Reader
	err    error
	state  int
	n      int  // bytes of the current markup, from its '<'
	attrs  int  // bytes of attributes so far, but white space and '/'
	quote  byte // the quote open in a tag or directive, or 0
	b0, b1 byte // the bytes before this one, to find "-->", "]]>", "?>"
	depth  int  // '<' open in a directive, as encoding/xml counts them
	match  int  // how much of "!--" follows a '<' in a directive
}

func (l *markupLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for i := 0; i < n; i++ {
		switch b := p[i]; {
		case l.state == inText:
			j := bytes.IndexByte(p[i:n], '<')
			if j < 0 {
				return n, err
			}
			i += j
		case l.state == inName && l.n < MaxMarkup && b != '>' && b != '/' && !isSpace(b):
			l.n++ // fast paths for the common bytes of a tag
			continue
		case l.state == inAttrs && l.n < MaxMarkup && l.quote == 0 && isSpace(b):
			l.n++
			continue
		}
		if l.err = l.step(p[i]); l.err != nil {
			return i, l.err
		}
	}
	return n, err
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

func (l *markupLimiter) step(b byte) error {
	switch l.state {
	case inText:
		if b == '<' {
			l.state, l.n, l.quote = inOpen, 1, 0
		}
		return nil
	case inComment: // encoding/xml ends a comment at the byte after "--"
		if l.b0 == '-' && l.b1 == '-' {
			l.state = inText
		}
		l.b0, l.b1 = l.b1, b
		return nil
	case inCDATA:
		if l.b0 == ']' && l.b1 == ']' && b == '>' {
			l.state = inText
		}
		l.b0, l.b1 = l.b1, b
		return nil
	}
	if l.n++; l.n > MaxMarkup {
		what := "tag"
		switch l.state {
		case inPI:
			what = "processing instruction"
		case inDirective, inDirectiveLt, inDirectiveComment:
			what = "directive"
		}
		return overLimit("%s longer than %d bytes", what, MaxMarkup)
	}
	switch l.state {
	case inOpen:
		switch b {
		case '!':
			l.state = inBang
		case '?':
			l.state, l.b0 = inPI, 0
		case '/':
			l.state = inName
		default:
			l.state = inName
			l.name(b)
		}
	case inBang:
		switch b {
		case '-':
			l.state = inDash
		case '[':
			l.state, l.b0, l.b1 = inCDATA, 0, 0
		default: // the directive's first byte is not interpreted
			l.state, l.quote, l.depth = inDirective, 0, 0
		}
	case inDash:
		l.state, l.b0, l.b1 = inComment, 0, 0
	case inPI:
		if l.b0 == '?' && b == '>' {
			l.state = inText
		}
		l.b0 = b
	case inName:
		l.name(b)
	case inAttrs:
		switch {
		case l.quote != 0:
			if b == l.quote {
				l.quote = 0
			}
			l.attrs++
		case b == '>':
			l.state = inText
		case isSpace(b) || b == '/':
		default:
			if b == '"' || b == '\'' {
				l.quote = b
			}
			l.attrs++
		}
		if l.attrs > MaxAttributes {
			return overLimit("attributes longer than %d bytes in all", MaxAttributes)
		}
	case inDirective:
		if l.quote == 0 && b == '>' && l.depth == 0 {
			l.state = inText
		} else {
			l.directive(b)
		}
	case inDirectiveLt:
		if b == "!--"[l.match] {
			if l.match++; l.match == 3 {
				l.state, l.b0, l.b1 = inDirectiveComment, 0, 0
			}
		} else {
			l.state = inDirective
			l.depth++
			l.directive(b)
		}
	case inDirectiveComment:
		if l.b0 == '-' && l.b1 == '-' && b == '>' {
			l.state = inDirective
		}
		l.b0, l.b1 = l.b1, b
	}
	return nil
}

// name handles a byte of a tag's name.
func (l *markupLimiter) name(b byte) {
	switch {
	case b == '>':
		l.state = inText
	case b == '/' || isSpace(b):
		l.state = inAttrs
	}
}

// directive handles a byte of a directive as encoding/xml does (its
// HandleB label).
func (l *markupLimiter) directive(b byte) {
	switch {
	case b == l.quote:
		l.quote = 0
	case l.quote != 0:
	case b == '\'' || b == '"':
		l.quote = b
	case b == '>':
		l.depth--
	case b == '<':
		l.state, l.match = inDirectiveLt, 0
	}
}
