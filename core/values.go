package core

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ValueEncoder writes Lua values as JSON in libbioxen's value encoding
// (docs/values.md), which every engine produces and every binding decodes:
//
//	nil -> null, boolean -> true/false
//	number -> a JSON number (integers without a fraction); NaN and the
//	          infinities -> {"$f":"nan"|"inf"|"-inf"}
//	string -> a JSON string when it is valid UTF-8, else {"$b":"<base64>"}
//	table with keys exactly 1..n (n >= 1) -> a JSON array
//	any other table -> {"$t":[[key,value],...]} (the empty table too)
//	function, userdata, thread, cycles and cut-offs ->
//	          {"$o":"<lua type>","s":"<text>"}
//
// Every JSON object is one of these tags, so decoding is unambiguous.
type ValueEncoder struct {
	buf   []byte
	limit int
	full  bool
	// count[i] is the number of items written at nesting level i; kind[i]
	// is the container open there ('l' list, 'm' map, 'p' pair).
	count []int
	kind  []byte
	// tables is the number of open lists and maps (pairs do not count),
	// the top-level array excluded: see Depth.
	tables int
	// markEnd is len(buf) just after the last "<size limit>" marker, 0
	// while none was written (buf starts with "[").
	markEnd int
}

// sizeLimitText is the text of the "<size limit>" marker.
const sizeLimitText = "<size limit>"

// NewValueEncoder starts a top-level array of values, capped at limit bytes.
func NewValueEncoder(limit int) *ValueEncoder {
	e := &ValueEncoder{limit: limit, buf: make([]byte, 0, 64)}
	e.buf = append(e.buf, '[')
	e.count = append(e.count, 0)
	e.kind = append(e.kind, 'l')
	return e
}

// Full reports that the size limit was reached; callers stop encoding and
// call Finish, which records a "<size limit>" marker.
func (e *ValueEncoder) Full() bool {
	if !e.full && len(e.buf) > e.limit {
		e.full = true
	}
	return e.full
}

// fits reports whether the next item, n bytes long, stays within the
// limit; if not, the encoder is full from now on.
func (e *ValueEncoder) fits(n int) bool {
	if e.count[len(e.count)-1] > 0 {
		n++ // the separator
	}
	if e.full || n > e.limit-len(e.buf) {
		e.full = true
		return false
	}
	return true
}

// marker writes the "<size limit>" marker in the next item's place.
func (e *ValueEncoder) marker() {
	e.Opaque("nil", sizeLimitText)
}

func (e *ValueEncoder) sep() {
	n := len(e.count) - 1
	if e.count[n] > 0 {
		e.buf = append(e.buf, ',')
	}
	e.count[n]++
}

// Nil writes null.
func (e *ValueEncoder) Nil() { e.sep(); e.buf = append(e.buf, "null"...) }

// Bool writes a boolean.
func (e *ValueEncoder) Bool(b bool) { e.sep(); e.buf = strconv.AppendBool(e.buf, b) }

// Int writes an integer (Lua 5.3+ integer subtype).
func (e *ValueEncoder) Int(i int64) { e.sep(); e.buf = strconv.AppendInt(e.buf, i, 10) }

// Number writes a float; integral values within ±2^53 are written as
// integers, so 4.0 from gopher-lua arrives as 4.
func (e *ValueEncoder) Number(f float64) {
	e.sep()
	switch {
	case math.IsNaN(f):
		e.buf = append(e.buf, `{"$f":"nan"}`...)
	case math.IsInf(f, 1):
		e.buf = append(e.buf, `{"$f":"inf"}`...)
	case math.IsInf(f, -1):
		e.buf = append(e.buf, `{"$f":"-inf"}`...)
	case f == math.Trunc(f) && math.Abs(f) <= 1<<53:
		if f == 0 && math.Signbit(f) {
			e.buf = append(e.buf, "-0.0"...)
		} else {
			e.buf = strconv.AppendInt(e.buf, int64(f), 10)
		}
	default:
		e.buf = strconv.AppendFloat(e.buf, f, 'g', -1, 64)
	}
}

// String writes a Lua string. A string whose encoding would take the
// values past the size limit is not encoded (nor copied): the
// "<size limit>" marker stands in its place and the encoder is full.
func (e *ValueEncoder) String(s []byte) { encodeString(e, s) }

// StringOf is String for a Go string (no copy to a []byte is needed).
func (e *ValueEncoder) StringOf(s string) { encodeString(e, s) }

func encodeString[T string | []byte](e *ValueEncoder, s T) {
	n := len(s) + 2 // the least any encoding takes
	valid := n <= e.limit-len(e.buf) && utf8Valid(s)
	switch {
	case n > e.limit-len(e.buf):
		// Too long however encoded: not even read.
	case !valid:
		n = base64.StdEncoding.EncodedLen(len(s)) + len(`{"$b":""}`)
	case len(s) <= (e.limit-len(e.buf))/6-2:
		n = 6*len(s) + 2 // even all \u00XX escapes fit: no need to count
	default:
		n = jsonStringLen(s)
	}
	if !e.fits(n) {
		if e.markEnd != len(e.buf) { // one marker for a row of cut strings
			e.marker()
		}
		return
	}
	e.sep()
	if valid {
		e.buf = appendJSONString(e.buf, s)
		return
	}
	e.buf = append(e.buf, `{"$b":"`...)
	e.buf = base64.StdEncoding.AppendEncode(e.buf, []byte(s))
	e.buf = append(e.buf, `"}`...)
}

func utf8Valid[T string | []byte](s T) bool {
	switch v := any(s).(type) {
	case string:
		return utf8.ValidString(v)
	default:
		return utf8.Valid(v.([]byte))
	}
}

// Opaque writes a value that has no data form (function, userdata, thread)
// or a marker for a cycle or a cut-off.
// Its texts are for display: bytes that are not UTF-8 (a tostring cut at
// 1024 bytes in the middle of a character, a remote driver's bytes)
// become U+FFFD, so the JSON stays valid UTF-8, which decoders (Python's
// bytes.decode("utf-8")) require.
func (e *ValueEncoder) Opaque(luaType, text string) {
	if !utf8.ValidString(luaType) {
		luaType = strings.ToValidUTF8(luaType, "\uFFFD")
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	e.sep()
	e.buf = append(e.buf, `{"$o":`...)
	e.buf = appendJSONString(e.buf, luaType)
	e.buf = append(e.buf, `,"s":`...)
	e.buf = appendJSONString(e.buf, text)
	e.buf = append(e.buf, '}')
	if luaType == "nil" && text == sizeLimitText {
		e.markEnd = len(e.buf)
	}
}

// BeginList starts a sequence; items follow, then End.
func (e *ValueEncoder) BeginList() {
	e.sep()
	e.open('[', 'l')
	e.tables++
}

// BeginMap starts a key/value table; write key, value, key, value ... then End.
func (e *ValueEncoder) BeginMap() {
	e.sep()
	e.buf = append(e.buf, `{"$t":[`...)
	e.count = append(e.count, 0)
	e.kind = append(e.kind, 'm')
	e.tables++
}

// BeginPair starts one key/value pair inside a map; key, value, then End.
func (e *ValueEncoder) BeginPair() {
	e.sep()
	e.open('[', 'p')
}

func (e *ValueEncoder) open(c byte, kind byte) {
	e.buf = append(e.buf, c)
	e.count = append(e.count, 0)
	e.kind = append(e.kind, kind)
}

// End closes the innermost open container (list, map or pair).
func (e *ValueEncoder) End() {
	n := len(e.count) - 1
	if e.kind[n] == 'm' {
		e.buf = append(e.buf, "]}"...)
	} else {
		e.buf = append(e.buf, ']')
	}
	if n > 0 && e.kind[n] != 'p' {
		e.tables--
	}
	e.count = e.count[:n]
	e.kind = e.kind[:n]
}

// Depth is the current table nesting depth (0 at the top level): the
// number of open lists and maps. A map's key/value pairs are no level of
// their own, so maps and lists nest equally deep (MaxValueDepth).
func (e *ValueEncoder) Depth() int { return e.tables }

// Finish closes every container still open (after a cut-off) and the
// top-level array and returns the JSON. When the size limit was hit, a
// "<size limit>" marker stands at the point of the cut (unless one was
// written already, by String or by the producer): in a list as its next
// item, in a pair as its value (or as its key, the value then being null);
// a cut between the pairs of a map has no place for one. A pair left
// without its value gets null, one left empty the marker as its key, so
// the output is always well formed.
func (e *ValueEncoder) Finish() []byte {
	if e.full && e.markEnd == 0 {
		top := len(e.kind) - 1
		if e.kind[top] == 'l' || (e.kind[top] == 'p' && e.count[top] < 2) {
			e.marker()
		}
	}
	for len(e.count) > 0 {
		top := len(e.kind) - 1
		if e.kind[top] == 'p' && e.count[top] == 0 {
			e.marker() // a pair left empty: [] is no pair
		}
		if e.kind[top] == 'p' && e.count[top] == 1 {
			e.Nil()
		}
		e.End()
	}
	return e.buf
}

// jsonStringLen is the length of appendJSONString's output for s.
func jsonStringLen[T string | []byte](s T) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		switch c {
		case '"', '\\', '\n', '\t', '\r':
			n++
		default:
			n += 5
		}
	}
	return n
}

func appendJSONString[T string | []byte](dst []byte, s T) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// EncodeValues is DecodeValues's inverse: the value encoding of vals, which
// hold what DecodeValues returns (nil, bool, int64, float64, string,
// []byte, Opaque, []any, map[any]any, and as keys *TableKey, written as
// its table, and *Opaque). A map's pairs are written in the
// order of their encoded keys (values break a tie of NaN keys), so equal
// values encode to equal bytes. Any other type is an *Error with code
// ErrInvalid.
func EncodeValues(vals []any) ([]byte, error) {
	e := NewValueEncoder(math.MaxInt32)
	for _, v := range vals {
		if err := encodeValue(e, v); err != nil {
			return nil, err
		}
	}
	return e.Finish(), nil
}

func encodeValue(e *ValueEncoder, v any) error {
	switch v := v.(type) {
	case nil:
		e.Nil()
	case bool:
		e.Bool(v)
	case int64:
		e.Int(v)
	case float64:
		e.Number(v)
	case string:
		e.StringOf(v)
	case []byte:
		e.String(v)
	case Opaque:
		e.Opaque(v.Type, v.Text)
	case *Opaque:
		e.Opaque(v.Type, v.Text)
	case *TableKey:
		return encodeValue(e, v.Table)
	case []any:
		e.BeginList()
		for _, it := range v {
			if err := encodeValue(e, it); err != nil {
				return err
			}
		}
		e.End()
	case map[any]any:
		type pair struct {
			kb   []byte
			k, x any
		}
		pairs := make([]pair, 0, len(v))
		for k, x := range v {
			kb, err := EncodeValues([]any{k})
			if err != nil {
				return err
			}
			pairs = append(pairs, pair{kb, k, x})
		}
		var err error
		sort.Slice(pairs, func(i, j int) bool {
			if c := bytes.Compare(pairs[i].kb, pairs[j].kb); c != 0 {
				return c < 0
			}
			a, err1 := EncodeValues([]any{pairs[i].x})
			b, err2 := EncodeValues([]any{pairs[j].x})
			err = errors.Join(err, err1, err2)
			return bytes.Compare(a, b) < 0
		})
		if err != nil {
			return err
		}
		e.BeginMap()
		for _, p := range pairs {
			e.BeginPair()
			if err := encodeValue(e, p.k); err != nil {
				return err
			}
			if err := encodeValue(e, p.x); err != nil {
				return err
			}
			e.End()
		}
		e.End()
	default:
		return Errorf(ErrInvalid, "encode", "cannot encode a %T as a Lua value", v)
	}
	return nil
}

// DecodeValues turns the value encoding into Go values for Go callers:
// nil, bool, int64 or float64, string or []byte, []any, map[any]any (a key
// that is a table becomes a *TableKey; keys of a table that share one
// Opaque, functions with the same tostring text say, become *Opaque, each
// equal only to itself; a string key that is not UTF-8, a []byte as a
// value, is a string holding its bytes, since a []byte cannot be a map
// key), Opaque. Bytes that are not the
// value encoding are an *Error with code ErrGeneric.
func DecodeValues(data []byte) ([]any, error) {
	// One pass of encoding/json over the whole input, then a walk of the
	// tree: decoding each nested value again from its raw bytes cost time
	// quadratic in the nesting (18 KB of "[[[...]]]" took 5 s).
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var top any
	if err := d.Decode(&top); err != nil {
		return nil, Wrap(ErrGeneric, "decode", "bad value encoding", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, badValue("data after the values")
	}
	var items []any
	switch v := top.(type) {
	case nil:
	case []any:
		items = v
	default:
		return nil, badValue("not an array of values")
	}
	out := make([]any, len(items))
	for i, it := range items {
		v, err := decodeValue(it)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// Opaque is a Lua value without a data form, or a cut-off marker.
type Opaque struct {
	Type string // Lua type name
	Text string // tostring() form or a marker such as "<cycle>"
}

func badValue(format string, args ...any) error {
	return Errorf(ErrGeneric, "decode", "bad value encoding: "+format, args...)
}

// decodeValue converts one value of the tree encoding/json decoded (its
// nesting is bounded by encoding/json's own depth limit).
func decodeValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, string:
		return v, nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, badValue("number %.40s out of range", v)
		}
		return f, nil
	case []any:
		list := make([]any, len(v))
		for i, it := range v {
			x, err := decodeValue(it)
			if err != nil {
				return nil, err
			}
			list[i] = x
		}
		return list, nil
	case map[string]any:
		return decodeTagged(v)
	}
	return nil, badValue("unexpected %T", v)
}

func decodeTagged(tag map[string]any) (any, error) {
	if b, ok := tag["$b"]; ok {
		s, ok := b.(string)
		if !ok {
			return nil, badValue(`"$b" is not a string`)
		}
		out, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, Wrap(ErrGeneric, "decode", "bad value encoding: bad base64", err)
		}
		return out, nil
	}
	if f, ok := tag["$f"]; ok {
		switch f {
		case "nan":
			return math.NaN(), nil
		case "inf":
			return math.Inf(1), nil
		case "-inf":
			return math.Inf(-1), nil
		}
		return nil, badValue(`"$f" is not "nan", "inf" or "-inf"`)
	}
	if o, ok := tag["$o"]; ok {
		var op Opaque
		op.Type, _ = o.(string)
		op.Text, _ = tag["s"].(string)
		return op, nil
	}
	pairs, ok := tag["$t"].([]any)
	if !ok {
		return nil, badValue(`an object that is no "$b", "$f", "$o" or "$t"`)
	}
	type pair struct{ k, v any }
	kvs := make([]pair, 0, len(pairs))
	var opaques map[Opaque]int // how many keys share each Opaque
	for _, p := range pairs {
		kv, ok := p.([]any)
		if !ok || len(kv) != 2 {
			return nil, badValue(`a "$t" entry that is no [key, value] pair`)
		}
		k, err := decodeValue(kv[0])
		if err != nil {
			return nil, err
		}
		v, err := decodeValue(kv[1])
		if err != nil {
			return nil, err
		}
		switch kk := k.(type) {
		case []any, map[any]any:
			// Each table key is a key of its own, as in Lua: one Opaque
			// for all of them kept one value of several.
			k = &TableKey{Table: kk}
		case []byte:
			// A string key that is not UTF-8: a Go string holds its
			// bytes (no UTF-8 string key can equal it).
			k = string(kk)
		case Opaque:
			if opaques == nil {
				opaques = make(map[Opaque]int)
			}
			opaques[kk]++
		}
		kvs = append(kvs, pair{k, v})
	}
	m := make(map[any]any, len(kvs))
	for _, kv := range kvs {
		if o, ok := kv.k.(Opaque); ok && opaques[o] > 1 {
			// Keys whose tostring text is the same (a __tostring, or
			// the cut at 1024 bytes) are distinct Lua keys: each becomes
			// an *Opaque, equal only to itself.
			kv.k = &o
		}
		m[kv.k] = kv.v
	}
	return m, nil
}

// TableKey is a key of a decoded table that is itself a table: Table holds
// its contents ([]any, map[any]any, or the Opaque cycle or depth marker
// that replaced them). As a map key it equals only itself, as a table key
// does in Lua.
type TableKey struct {
	Table any
}
