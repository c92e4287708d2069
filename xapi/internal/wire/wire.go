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

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

type decoder struct {
	d *xml.Decoder
}

func newDecoder(r io.Reader) *decoder {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(label) {
		case "utf-8", "utf8", "us-ascii", "ascii":
			return in, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", label)
	}
	return &decoder{d: d}
}

// next returns the next start or end element, skipping white space,
// comments, processing instructions and directives. Non-space text is an
// error.
func (dc *decoder) next() (xml.Token, error) {
	for {
		tok, err := dc.d.Token()
		if err != nil {
			if err == io.EOF {
				return nil, malformed("unexpected end of document")
			}
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, malformed("unexpected text %q", string(t))
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
		return malformed("expected <%s>, got %s", name, describe(tok))
	}
	return nil
}

func (dc *decoder) expectEnd(name string) error {
	tok, err := dc.next()
	if err != nil {
		return err
	}
	if e, ok := tok.(xml.EndElement); !ok || e.Name.Local != name {
		return malformed("expected </%s>, got %s", name, describe(tok))
	}
	return nil
}

func describe(tok xml.Token) string {
	switch t := tok.(type) {
	case xml.StartElement:
		return "<" + t.Name.Local + ">"
	case xml.EndElement:
		return "</" + t.Name.Local + ">"
	}
	return fmt.Sprintf("%T", tok)
}

// text reads character data up to the end tag `name`.
func (dc *decoder) text(name string) (string, error) {
	var sb strings.Builder
	for {
		tok, err := dc.d.Token()
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrMalformed, err)
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
			return "", malformed("unexpected <%s> inside <%s>", t.Name.Local, name)
		}
	}
}

// value decodes the content of a <value> element whose start tag was read,
// up to and including </value>.
func (dc *decoder) value() (any, error) {
	var raw strings.Builder
	for {
		tok, err := dc.d.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
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
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, malformed("bad <%s> %q", name, s)
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
		return nil, malformed("bad <boolean> %q", s)
	case "double":
		s, err := dc.text(name)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, malformed("bad <double> %q", s)
		}
		return f, nil
	case "dateTime.iso8601":
		s, err := dc.text(name)
		if err != nil {
			return nil, err
		}
		s = strings.TrimSpace(s)
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t, nil
			}
		}
		return nil, malformed("bad dateTime %q", s)
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
				return nil, malformed("expected <value> in <data>, got %s", describe(tok))
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
				return nil, malformed("expected <member> in <struct>, got %s", describe(tok))
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
	return nil, malformed("unknown XML-RPC type <%s>", name)
}

// DecodeCall decodes a <methodCall> into its method name and parameters.
func DecodeCall(r io.Reader) (string, []any, error) {
	dc := newDecoder(r)
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
				return "", nil, malformed("expected <param>, got %s", describe(tok))
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
		return "", nil, malformed("expected </methodCall>, got %s", describe(tok))
	}
	if method == "" {
		return "", nil, malformed("empty method name")
	}
	return method, params, nil
}

// DecodeResponse decodes a <methodResponse>. A <fault> comes back as a
// *Fault error.
func DecodeResponse(r io.Reader) (any, error) {
	dc := newDecoder(r)
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
			f.String, _ = m["faultString"].(string)
		}
		return nil, f
	}
	return nil, malformed("unexpected <%s> in methodResponse", s.Name.Local)
}
