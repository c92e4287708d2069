package embedded

import (
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
		enc.String([]byte(x))
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
		n := x.Len()
		if n > 0 && isSequence(x, n) {
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
			encodeValue(enc, val, depth, path)
			enc.End()
		}
		enc.End()
	default:
		enc.Opaque(v.Type().String(), v.String())
	}
}

// isSequence reports whether t's keys are exactly 1..n.
func isSequence(t *lua.LTable, n int) bool {
	count := 0
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		count++
		if count > n {
			return false
		}
	}
	return count == n
}
