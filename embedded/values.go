package embedded

import (
	"math"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// valueWriter writes returned values in the value encoding. Tables are
// read raw (no metamethod runs) on a tableScan, so the call's limits stop
// a long encoding: a shared table with a sparse array part returned 2,000
// times took 26 s past the deadline. Once stopped it writes nothing more
// (the call's result is then its stop).
type valueWriter struct {
	enc   *core.ValueEncoder
	depth int
	scan  tableScan
	path  []*lua.LTable // the tables being encoded above the value, to cut cycles
}

func (w *valueWriter) value(v lua.LValue) {
	enc := w.enc
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
		for _, p := range w.path {
			if p == x {
				enc.Opaque("table", "<cycle>")
				return
			}
		}
		if enc.Depth() >= w.depth {
			enc.Opaque("table", "<depth limit>")
			return
		}
		w.path = append(w.path, x)
		defer func() { w.path = w.path[:len(w.path)-1] }()
		if n := w.sequenceLen(x); n > 0 {
			enc.BeginList()
			for i := 1; i <= n; i++ {
				if enc.Full() || w.scan.stopped() {
					return
				}
				w.value(x.RawGetInt(i))
			}
			enc.End()
			return
		}
		if w.scan.stop != nil {
			return
		}
		enc.BeginMap()
		for k, val, ok := w.scan.next(x, lua.LNil); ok; k, val, ok = w.scan.next(x, k) {
			if enc.Full() {
				return
			}
			enc.BeginPair()
			w.value(k)
			if enc.Full() {
				return // Finish gives the pair its value
			}
			w.value(val)
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
func (w *valueWriter) sequenceLen(t *lua.LTable) int {
	count, maxKey := 0, 0.0
	for k, _, ok := w.scan.next(t, lua.LNil); ok; k, _, ok = w.scan.next(t, k) {
		f, isNum := k.(lua.LNumber)
		if !isNum || float64(f) < 1 || float64(f) != math.Trunc(float64(f)) || float64(f) > math.MaxInt32 {
			return 0
		}
		count++
		maxKey = max(maxKey, float64(f))
	}
	if count == 0 || maxKey != float64(count) || w.scan.stop != nil {
		return 0
	}
	return count
}
