package core

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// The value encoding comes from an engine that may be a remote VM and is
// decoded by Go callers (DecodeValues): these targets feed the decoder any
// bytes and check the encoder against it.

var valueSeeds = []string{
	`[]`, `[null,true,false,-12,1.5,"a\u0000b",""]`, `[{"$f":"nan"},{"$f":"inf"},{"$f":"-inf"},-0.0]`,
	`[{"$b":"//4="}]`, `[[1,["x"]]]`, `[{"$t":[["a",1],[5,{"$t":[]}]]}]`,
	`[{"$o":"function","s":"function: 0x1234"},{"$o":"table","s":"<cycle>"}]`,
	`[{"$t":[[[1,{"$o":"nil","s":"<size limit>"}],{"$o":"nil","s":"<size limit>"}]]}]`,
	`[{"$t":[[{"$b":"/w=="},1],[[1],2]]}]`, `[1e400]`, `[9007199254740993]`, `[{}]`, `[{"$t":[[1]]}]`,
	`[{"$b":"!"}]`, `{"a":1}`, `[1,`, `[{"$t":1}]`,
}

// encodeAny is EncodeValues for values DecodeValues returned.
func encodeAny(vals []any) []byte {
	b, err := EncodeValues(vals)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzDecodeValues: any bytes decode or fail with an *Error of code
// ErrGeneric, in time linear in their size; what decodes re-encodes to a
// stable form (encode(decode(x)) decodes and re-encodes to itself).
func FuzzDecodeValues(f *testing.F) {
	for _, s := range valueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var vals []any
		var err error
		// The fastest of three runs, so that a pause of a shared machine
		// does not count.
		for try := 0; ; try++ {
			start := time.Now()
			vals, err = DecodeValues(data)
			d := time.Since(start)
			if d <= 50*time.Millisecond+time.Duration(len(data))*5*time.Microsecond {
				break
			}
			if try == 2 {
				t.Fatalf("%d bytes took %v", len(data), d)
			}
		}
		if err != nil {
			var e *Error
			if !asError(err, &e) || e.Code != ErrGeneric {
				t.Fatalf("%q: error %T %v, want an *Error with ErrGeneric", data, err, err)
			}
			return
		}
		once := encodeAny(vals)
		again, err := DecodeValues(once)
		if err != nil {
			t.Fatalf("%q: re-encoded %s does not decode: %v", data, once, err)
		}
		if twice := encodeAny(again); !bytes.Equal(once, twice) {
			t.Fatalf("%q: re-encoded %s, then %s", data, once, twice)
		}
	})
}

func asError(err error, e **Error) bool {
	x, ok := err.(*Error)
	*e = x
	return ok
}

// FuzzValueEncoder drives the encoder with a program of calls (as an
// engine makes them, stopping when it is full) and checks the output
// against a model of the values: valid JSON, within the limit plus one
// item and the closing brackets, and, when nothing was cut, decoding to
// the model.
func FuzzValueEncoder(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 3, 'a', 'b', 'c', 5, 2, 7, 6, 9, 2, 4, 1, 'x', 8}, uint16(1000))
	f.Add([]byte{5, 5, 5, 4, 10, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 7, 7, 7}, uint16(12))
	f.Add([]byte{6, 9, 5, 2, 8, 1, 8, 9, 4, 1, 0xff, 0, 8, 8}, uint16(30))
	f.Add([]byte{6, 9, 1, 2, 8, 9, 1, 3, 8, 9, 6, 8, 0, 8}, uint16(1000))
	f.Fuzz(func(t *testing.T, prog []byte, limit uint16) {
		e := NewValueEncoder(int(limit))
		type frame struct {
			kind  byte // 'l' list, 'm' map, 'p' pair
			items []any
		}
		stack := []*frame{{kind: 'l'}}
		add := func(v any) { top := stack[len(stack)-1]; top.items = append(top.items, v) }
		closeTop := func() {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch top.kind {
			case 'l':
				add(append([]any{}, top.items...))
			case 'p':
				if len(top.items) == 1 {
					top.items = append(top.items, nil)
				}
				add(top.items)
			case 'm':
				m := map[any]any{}
				shared := map[Opaque]int{}
				for _, it := range top.items {
					if o, ok := it.([]any)[0].(Opaque); ok {
						shared[o]++
					}
				}
				for _, it := range top.items {
					kv := it.([]any)
					k := kv[0]
					switch kk := k.(type) {
					case []any, map[any]any:
						k = &TableKey{Table: kk}
					case []byte:
						k = string(kk)
					case Opaque:
						if shared[kk] > 1 {
							k = &kk
						}
					}
					m[k] = kv[1]
				}
				add(m)
			}
		}
		str := func(b []byte) any {
			if utf8.Valid(b) {
				return string(b)
			}
			return append([]byte{}, b...)
		}
		biggest := 0
		i := 0
		for i < len(prog) && !e.Full() {
			top := stack[len(stack)-1]
			op := prog[i] % 10
			i++
			if top.kind == 'm' && op != 9 && op != 8 {
				op = 9 // a map holds pairs only
			}
			if top.kind == 'p' && len(top.items) == 2 {
				op = 8
			}
			before := len(e.buf)
			switch op {
			case 0:
				e.Nil()
				add(nil)
			case 1:
				e.Bool(true)
				add(true)
			case 2:
				e.Int(-1 << 62)
				add(int64(-1 << 62))
			case 3:
				e.Number(0.5)
				add(0.5)
			case 4, 7:
				n := 0
				if i < len(prog) {
					n = int(prog[i])
					i++
				}
				s := prog[i:min(i+n, len(prog))]
				i += len(s)
				if op == 4 {
					e.String(s)
					add(str(s))
				} else {
					e.Opaque("function", string(s))
					add(Opaque{"function", string(s)})
				}
			case 5:
				e.BeginList()
				stack = append(stack, &frame{kind: 'l'})
			case 6:
				e.BeginMap()
				stack = append(stack, &frame{kind: 'm'})
			case 9:
				e.BeginPair()
				stack = append(stack, &frame{kind: 'p'})
			case 8:
				if len(stack) == 1 || (top.kind == 'p' && len(top.items) < 2) {
					continue
				}
				e.End()
				closeTop()
			}
			biggest = max(biggest, len(e.buf)-before)
		}
		full := e.Full()
		depth := len(stack)
		out := e.Finish()
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %s", out)
		}
		vals, err := DecodeValues(out)
		if err != nil {
			t.Fatalf("%s does not decode: %v", out, err)
		}
		if max := int(limit) + biggest + 64 + 8*depth; len(out) > max { // ",null]" closes a pair
			t.Fatalf("%d bytes for a limit of %d (largest item %d)", len(out), limit, biggest)
		}
		if full || bytes.Contains(out, []byte("<size limit>")) {
			return
		}
		for len(stack) > 1 { // Finish closed what the program left open
			closeTop()
		}
		want := encodeAny(stack[0].items)
		if got := encodeAny(vals); !bytes.Equal(got, want) {
			t.Fatalf("encoded %s\ndecoded %s\n  model %s", out, got, want)
		}
	})
}
