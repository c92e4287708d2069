package embedded

import (
	"errors"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// Table traversal that the call's limits can stop. gopher-lua's next scans
// empty array slots and deleted keys (which it never takes out of a
// table's key list) inside one Go call: next(t) on a table with 4 million
// deleted keys took 1.2 s that no deadline could stop, and encoding a
// returned table with a sparse array part (t[2^20] = true fills a million
// empty slots) took 13 ms per table, which 2,000 references to it made 26
// s after the deadline. A tableScan polls the limits every scanPoll slots
// it looks at.

const scanPoll = 1 << 16

// A tableScan without L is fastNext's: it neither polls nor raises. It
// stops after fastScanSlots slots and at a key that is not in the table,
// and leaves the call to next.
type tableScan struct {
	L       *lua.LState
	scanned int
	stop    error // the call's stop, once seen
}

// fastScanSlots is how many slots or keys fastNext looks at.
const fastScanSlots = 64

var errFastScan = errors.New("left to next")

// stopped counts one slot looked at; it reports the call's stop.
func (s *tableScan) stopped() bool {
	if s.L == nil {
		if s.scanned++; s.scanned > fastScanSlots {
			s.stop = errFastScan
		}
		return s.stop != nil
	}
	if s.scanned++; s.scanned >= scanPoll && s.stop == nil {
		s.scanned = 0
		s.stop = pollLimits(s.L)
	}
	return s.stop != nil
}

// next is next(t, key) in gopher-lua's order (the array part, then the
// hash part in insertion order); ok is false at the end, and when the call
// was stopped (s.stop). A key that is not in t is Lua's "invalid key to
// 'next'" (gopher-lua started over from the hash part's second key).
func (s *tableScan) next(t *lua.LTable, key lua.LValue) (k, v lua.LValue, ok bool) {
	if !layout.ok {
		k, v = t.Next(key)
		return k, v, k != lua.LNil
	}
	p := unsafe.Pointer(t)
	array := *(*[]lua.LValue)(unsafe.Add(p, layout.tArray))
	keys := *(*[]lua.LValue)(unsafe.Add(p, layout.tKeys))
	from := 0 // the first key-list index to look at
	switch n, isNum := key.(lua.LNumber); {
	case key == lua.LNil:
		from = -1
	case isNum && float64(n) >= 1 && float64(n) <= float64(len(array)) && float64(n) == float64(int(n)):
		from = -int(n) - 1 // the array part from index n (0-based)
	default:
		i, found := (*(*map[lua.LValue]int)(unsafe.Add(p, layout.tK2i)))[key]
		if !found {
			if s.L == nil {
				s.stop = errFastScan
				return lua.LNil, lua.LNil, false
			}
			s.L.RaiseError("invalid key to 'next'")
		}
		from = i + 1
	}
	if from < 0 {
		for i := -from - 1; i < len(array); i++ {
			if s.stopped() {
				return lua.LNil, lua.LNil, false
			}
			if v := array[i]; v != lua.LNil && v != nil {
				return lua.NumberValue(lua.LNumber(i + 1)), v, true
			}
		}
		from = 0
	}
	for i := from; i < len(keys); i++ {
		if s.stopped() {
			return lua.LNil, lua.LNil, false
		}
		if v := t.RawGetH(keys[i]); v != lua.LNil {
			return keys[i], v, true
		}
	}
	return lua.LNil, lua.LNil, false
}

// luaNext is next(t [, key]) on a tableScan.
func luaNext(L *lua.LState) int {
	t := L.CheckTable(1)
	s := tableScan{L: L}
	k, v, ok := s.next(t, L.Get(2))
	if s.stop != nil {
		L.RaiseError("%s", s.stop)
	}
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(k)
	L.Push(v)
	return 2
}
