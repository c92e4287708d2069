package embedded

import (
	"math"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// encodeValue writes v in the value encoding. path holds the tables being
// encoded above v, to cut cycles. Tables are read raw: no metamethod runs.
func encodeValue(enc *core.ValueEncoder, v lua.LValue, depth int, path []*lua.LTable) {
	switch x := v.(type) {
	case *lua.LNilType, nil: // nil: a Go nil a gopher-lua bug can leave in a register
		enc.Nil()
	case lua.LBool:
		enc.Bool(bool(x))
	case lua.LNumber:
		enc.Number(float64(x))
	case lua.LString:
		// No []byte copy: the encoder checks the size limit first.
		enc.StringOf(string(x))
	case *lua.LTable:
		for _, p := range path {
			if p == x {
				enc.Opaque("table", "<cycle>")
				return
			}
		}
		if enc.Depth() >= depth {
			enc.Opaque("table", "<depth limit>")
			return
		}
		path = append(path, x)
		if n := sequenceLen(x); n > 0 {
			enc.BeginList()
			for i := 1; i <= n; i++ {
				if enc.Full() {
					return
				}
				encodeValue(enc, x.RawGetInt(i), depth, path)
			}
			enc.End()
			return
		}
		enc.BeginMap()
		for k, val := x.Next(lua.LNil); k != lua.LNil; k, val = x.Next(k) {
			if enc.Full() {
				return
			}
			enc.BeginPair()
			encodeValue(enc, k, depth, path)
			if enc.Full() {
				return // Finish gives the pair its value
			}
			encodeValue(enc, val, depth, path)
			enc.End()
		}
		enc.End()
	default:
		enc.Opaque(v.Type().String(), v.String())
	}
}

// sequenceLen returns n when t's keys are exactly 1..n (n >= 1), else 0:
// every key is an integer between 1 and the number of keys. (t.Len() is
// no help: it is a border of the array part, blind to holes and to the
// other keys.)
func sequenceLen(t *lua.LTable) int {
	count, maxKey := 0, 0.0
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		f, ok := k.(lua.LNumber)
		if !ok || float64(f) < 1 || float64(f) != math.Trunc(float64(f)) || float64(f) > math.MaxInt32 {
			return 0
		}
		count++
		maxKey = max(maxKey, float64(f))
	}
	if count == 0 || maxKey != float64(count) {
		return 0
	}
	return count
}
