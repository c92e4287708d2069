package lua

import "slices"

const defaultArrayCap = 32
const defaultHashCap = 32

type lValueArraySorter struct {
	L      *LState
	Fn     *LFunction
	Values []LValue
}

func (lv lValueArraySorter) Len() int {
	return len(lv.Values)
}

func (lv lValueArraySorter) Swap(i, j int) {
	lv.Values[i], lv.Values[j] = lv.Values[j], lv.Values[i]
}

func (lv lValueArraySorter) Less(i, j int) bool {
	if lv.Fn != nil {
		lv.L.Push(lv.Fn)
		lv.L.Push(lv.Values[i])
		lv.L.Push(lv.Values[j])
		lv.L.Call(2, 1)
		return LVAsBool(lv.L.reg.Pop())
	}
	return lessThan(lv.L, lv.Values[i], lv.Values[j])
}

func newLTable(acap int, hcap int) *LTable {
	if acap < 0 {
		acap = 0
	}
	if hcap < 0 {
		hcap = 0
	}
	tb := &LTable{}
	tb.Metatable = LNil
	if acap != 0 {
		tb.array = make([]LValue, 0, acap)
	}
	if hcap != 0 {
		tb.strdict = make(map[string]LValue, hcap)
	}
	return tb
}

// Len returns length of this LTable without using __len.
//
// bioxen: the upstream version scanned every trailing nil of the array
// part, so popping a stack (t[#t] = nil) was quadratic: 40,000 pops took
// 4.9 s. It still looks at up to lenScan trailing slots (the largest border
// among them, as before), then finds a border below by binary search, as
// Lua 5.1's luaH_getn does.
func (tb *LTable) Len() int {
	n := len(tb.array)
	end := max(n-lenScan, 0)
	for j := n; j > end; j-- {
		if tb.array[j-1] != LNil {
			return j
		}
	}
	if end == 0 {
		return 0
	}
	// tb.array[end] is nil: a border lies in 0..end.
	i, j := 0, end+1 // tb.array[i-1] is not nil (or i is 0), tb.array[j-1] is nil
	for j-i > 1 {
		m := (i + j) / 2
		if tb.array[m-1] == LNil {
			j = m
		} else {
			i = m
		}
	}
	return i
}

// lenScan is how many trailing slots Len looks at one by one.
const lenScan = 64

// AppendInPlace stores value (not nil) at Len() + 1 when that takes no
// growth and moves no key: the slot is in the array part, or the array
// part has room for it and the hash part holds no keys other than
// strings. It reports whether it did (bioxen: table.insert's fast path,
// which leaves the other cases to the store that polls).
func (tb *LTable) AppendInPlace(value LValue) bool {
	if len(tb.dict) != 0 {
		return false
	}
	n := tb.Len()
	switch {
	case n < len(tb.array):
		tb.array[n] = value
	case n < cap(tb.array) && n+1 < MaxArrayIndex:
		tb.array = append(tb.array, value)
	default:
		return false
	}
	return true
}

// Append appends a given LValue to this LTable.
func (tb *LTable) Append(value LValue) {
	if value == LNil {
		return
	}
	if tb.array == nil {
		tb.array = make([]LValue, 0, defaultArrayCap)
	}
	if len(tb.array) == 0 || tb.array[len(tb.array)-1] != LNil {
		// bioxen: as a store to t[#t + 1], which takes over the keys of
		// the hash part the grown array part covers (appending left the
		// hash part's t[#t + 2] there: #t was no longer a border, and
		// the next push stored that key twice, which next then visited
		// again and again).
		tb.RawSetInt(len(tb.array)+1, value)
	} else {
		// bioxen: at #t + 1 (Len), not after a scan of every trailing nil,
		// which made pushes after pops quadratic.
		tb.array[tb.Len()] = value
	}
}

// Insert inserts a given LValue at position `i` in this table.
func (tb *LTable) Insert(i int, value LValue) {
	if tb.array == nil {
		tb.array = make([]LValue, 0, defaultArrayCap)
	}
	if i > len(tb.array) {
		tb.RawSetInt(i, value)
		return
	}
	if i <= 0 {
		tb.RawSet(LNumber(i), value)
		return
	}
	i -= 1
	tb.array = append(tb.array, LNil)
	copy(tb.array[i+1:], tb.array[i:])
	tb.array[i] = value
}

// MaxN returns a maximum number key that nil value does not exist before it.
func (tb *LTable) MaxN() int { return tb.MaxNPoll(func() {}) }

// MaxNPoll is MaxN calling tick for every slot and key it looks at.
// bioxen: the caller's tick polls the call's limits now and then, so that
// table.maxn over millions of keys stops at a deadline (a sandboxed chunk
// runs on its caller's goroutine, which nothing else can stop).
func (tb *LTable) MaxNPoll(tick func()) int {
	n := 0
	for i := len(tb.array) - 1; i >= 0; i-- {
		tick()
		if tb.array[i] != LNil {
			n = i + 1
			break
		}
	}
	// bioxen: integer keys past the array part are in the hash part, also
	// those of 2^26 (MaxArrayIndex) and more, which isArrayKey leaves out
	// (table.maxn({[2^26] = 1}) was 0; Lua 5.1: 2^26).
	for k, v := range tb.dict {
		tick()
		if kn, ok := k.(LNumber); ok && v != LNil && kn > 0 && isInteger(kn) && int(kn) > n {
			n = int(kn)
		}
	}
	return n
}

// Remove removes from this table the element at a given position.
func (tb *LTable) Remove(pos int) LValue {
	if tb.array == nil {
		return LNil
	}
	larray := len(tb.array)
	if larray == 0 {
		return LNil
	}
	i := pos - 1
	oldval := LNil
	switch {
	case i >= larray:
		// nothing to do
	case i == larray-1 || i < 0:
		oldval = tb.array[larray-1]
		tb.array = tb.array[:larray-1]
	default:
		oldval = tb.array[i]
		copy(tb.array[i:], tb.array[i+1:])
		tb.array[larray-1] = nil
		tb.array = tb.array[:larray-1]
	}
	return oldval
}

// RawSet sets a given LValue to a given index without the __newindex metamethod.
// It is recommended to use `RawSetString` or `RawSetInt` for performance
// if you already know the given LValue is a string or number.
func (tb *LTable) RawSet(key LValue, value LValue) { tb.rawSet(key, value, nil) }

// rawSet is RawSet; a long growth of the array part polls ls's call
// limits (bioxen: see growArray).
func (tb *LTable) rawSet(key LValue, value LValue, ls *LState) {
	switch v := key.(type) {
	case LNumber:
		if isArrayKey(v) {
			tb.rawSetInt(int(v), value, ls) // bioxen: one place for array keys
			return
		}
	case LString:
		tb.rawSetStringKey(string(v), key, value, ls) // bioxen: key is boxed already
		return
	}

	tb.rawSetH(key, value, ls)
}

// RawSetInt sets a given LValue at a position `key` without the __newindex metamethod.
func (tb *LTable) RawSetInt(key int, value LValue) { tb.rawSetInt(key, value, nil) }

// rawSetInt is RawSetInt; a long growth of the array part polls ls's call
// limits (bioxen: see growArray).
func (tb *LTable) rawSetInt(key int, value LValue, ls *LState) {
	if key < 1 || key >= MaxArrayIndex {
		tb.rawSetH(LNumber(key), value, ls)
		return
	}
	if tb.array == nil {
		tb.array = make([]LValue, 0, 32)
	}
	index := key - 1
	alen := len(tb.array)
	switch {
	case index < alen:
		tb.array[index] = value
	case value == LNil:
		// bioxen: nothing is stored past the array part's end (upstream
		// appended the nil, and filled a hole up to it).
		if tb.dict != nil {
			tb.RawSetH(LNumber(key), LNil)
		}
	case index > alen+alen+arrayHole:
		// bioxen: a key far past the array part's end goes to the hash
		// part, as in Lua. Upstream filled the array part up to it: a
		// single store to t[2^26 - 1] took 15 s and 3 GB, which no limit
		// could stop.
		tb.rawSetH(LNumber(key), value, ls)
	case index > alen && tb.dict != nil && tb.dict[LNumber(key)] != nil:
		// bioxen: a key the hash part holds stays there: assigning to an
		// existing field must not move keys, as next, in a traversal
		// that changes or clears fields (which Lua allows), would then
		// visit keys twice or miss them.
		tb.dict[LNumber(key)] = value
	default:
		// bioxen: the array part grows to the key (at most doubling),
		// taking over the keys of the hash part it now covers.
		tb.growArray(key, value, ls)
	}
}

// growPoll is how many slots or keys the growth of an array part handles
// between two polls of the call's limits (bioxen).
const growPoll = 1 << 16

// growArray stores value at key, at or past the array part's end (key - 1
// >= len(tb.array)), growing the array part to it: the slots between take
// over the keys of the hash part they cover (nil where it has none), and
// the keys right after key that the hash part holds, in a row, move in too.
//
// bioxen: a hole of millions of slots, or millions of keys taken over,
// was one Go call of a second or more (a hole of 2^23 slots: 1.2 s; two
// million keys of a table filled backwards: 0.8 s) that no deadline
// stopped: a sandboxed chunk runs on its caller's goroutine. A long growth
// is now built aside, in a new array part (and a new hash part when many
// of its keys stay), polling ls's call limits (LState.PollLimits) every
// growPoll slots or keys: a stop raised there leaves the table as it was.
// The new parts then replace the old ones at once.
func (tb *LTable) growArray(key int, value LValue, ls *LState) {
	alen, index := len(tb.array), key-1
	hasDict := tb.dict != nil && len(tb.dict) > 0
	keyInDict := false // at index == alen only (rawSetInt updates it past that)
	if hasDict {
		_, keyInDict = tb.dict[LNumber(key)]
	}
	if index == alen && (!hasDict || tb.dict[LNumber(key+1)] == nil) {
		// An append, nothing to take over (the common case).
		tb.array = growSlice(tb.array, 1, ls)
		if keyInDict {
			tb.RawSetH(LNumber(key), LNil) // now in the array part
		}
		tb.array = append(tb.array, value)
		return
	}
	tick := func() {}
	if ls != nil {
		steps := 0
		tick = func() {
			if steps++; steps%growPoll == 0 {
				ls.PollLimits()
			}
		}
	}
	// The new length: the keys after key the hash part holds, in a row.
	n := key
	if hasDict {
		for {
			if _, ok := tb.dict[LNumber(n+1)]; !ok {
				break
			}
			n++
			tick()
		}
	}
	if n-alen < growPoll {
		// A short growth: in place, a few milliseconds at most (but for
		// the room, which growSlice makes first).
		tb.array = growSlice(tb.array, n-alen, ls)
		for k := alen + 1; k < key; k++ {
			tb.array = append(tb.array, tb.takeH(k))
		}
		tb.takeH(key)
		tb.array = append(tb.array, value)
		for k := key + 1; k <= n; k++ {
			tb.array = append(tb.array, tb.takeH(k))
		}
		return
	}
	arr := ls.makeValues(n, n+n/4) // bioxen: see makeValues
	for i := 0; i < alen; i += growPoll {
		copy(arr[i:min(i+growPoll, alen)], tb.array[i:])
		if ls != nil {
			ls.PollLimits() // a piece of growPoll values (not tick: one step)
		}
	}
	var moved []LValue // the keys of the hash part now in arr
	if !hasDict || len(tb.dict) < key-alen {
		for i := alen; i < index; i++ {
			arr[i] = LNil
			tick()
		}
		if hasDict {
			for k, v := range tb.dict {
				if kn, ok := k.(LNumber); ok {
					if i := int(kn); LNumber(i) == kn && i > alen && i < key {
						arr[i-1] = v
						moved = append(moved, k)
					}
				}
				tick()
			}
		}
	} else {
		for i := alen; i < index; i++ {
			arr[i] = LNil
			if v, ok := tb.dict[LNumber(i+1)]; ok {
				arr[i] = v
				moved = append(moved, LNumber(i+1))
			}
			tick()
		}
	}
	arr[index] = value
	if keyInDict {
		moved = append(moved, LNumber(key))
	}
	for i := key; i < n; i++ {
		arr[i] = tb.dict[LNumber(i+1)]
		moved = append(moved, LNumber(i+1))
		tick()
	}
	// The hash part without the moved keys: emptied, rid of a few, or a
	// new one without them (deleting millions of keys was as long).
	var dict map[LValue]LValue
	rebuild := len(moved) > growPoll && len(moved) < len(tb.dict)
	if rebuild {
		dict = make(map[LValue]LValue, len(tb.dict)-len(moved))
		for k, v := range tb.dict {
			if kn, ok := k.(LNumber); ok {
				if i := int(kn); LNumber(i) == kn && i > alen && i <= n {
					continue
				}
			}
			dict[k] = v
			tick()
		}
	}
	// No polls from here: the table changes.
	tb.array = arr
	switch {
	case hasDict && len(moved) == len(tb.dict):
		tb.dict = nil
	case rebuild:
		tb.dict = dict
	default:
		for _, k := range moved {
			delete(tb.dict, k)
		}
	}
}

// growSlice returns s with room for n more values: s itself when it has
// it, else a copy in a new slice, with room for a quarter more (as append
// grows a long slice), copied in pieces of growPoll values with polls of
// ls's call limits between them (ls nil: no polls).
//
// bioxen: append copied a long slice of values in one Go call, with a
// write barrier per value while the collector marks: appending to a table
// of 2 million values took 0.15 s once in a while, of 16 million 1 s, and
// a new key of a hash part of 3.4 million keys (the key list) 0.3 s, past
// any deadline. A stop raised there leaves s as it was.
func growSlice(s []LValue, n int, ls *LState) []LValue {
	if cap(s)-len(s) >= n {
		return s
	}
	if len(s) < growPoll || ls == nil {
		return slices.Grow(s, n)
	}
	ns := ls.makeValues(len(s), len(s)+max(n, len(s)/4))
	copyPolled(ns, s, ls)
	return ns
}

// copyPolled copies src into dst in pieces of growPoll values, polling
// ls's call limits between them (ls nil: no polls); a stop raised there
// leaves src as it was (bioxen).
func copyPolled(dst, src []LValue, ls *LState) {
	for i := 0; i < len(src); i += growPoll {
		copy(dst[i:min(i+growPoll, len(src))], src[i:])
		if ls != nil {
			ls.PollLimits()
		}
	}
}

// reserveArray makes room for n more values in the array part, in one
// allocation of the exact size, copying in pieces with polls of ls's call
// limits between them (ls nil: no polls).
//
// bioxen: a constructor fed by a call, {unpack(t)} of a million values,
// grew the array part a quarter at a time (a dozen copies and 80 MB
// allocated for 16 MB kept: 40 ms, most of it the collector's); Lua sizes
// the array part once in OP_SETLIST too.
func (tb *LTable) reserveArray(n int, ls *LState) {
	s := tb.array
	if n <= 0 || cap(s)-len(s) >= n {
		return
	}
	ns := ls.makeValues(len(s), len(s)+n)
	copyPolled(ns, s, ls)
	tb.array = ns
}

// arrayHole is how far past twice its length a store may grow the array
// part (bioxen).
const arrayHole = 64

// takeH removes integer key k from the hash part and returns its value, or
// LNil (bioxen).
func (tb *LTable) takeH(k int) LValue {
	if tb.dict == nil {
		return LNil
	}
	key := LNumber(k)
	v, ok := tb.dict[key]
	if !ok {
		return LNil
	}
	tb.RawSetH(key, LNil)
	return v
}

// RawSetString sets a given LValue to a given string index without the __newindex metamethod.
func (tb *LTable) RawSetString(key string, value LValue) { tb.rawSetString(key, value, nil) }

// rawSetString is RawSetString; the growth of a long key list polls ls's
// call limits (bioxen: see growSlice).
func (tb *LTable) rawSetString(key string, value LValue, ls *LState) {
	tb.rawSetStringKey(key, nil, value, ls)
}

// rawSetStringKey is rawSetString with the key boxed already as an LValue
// (lkey), or nil.
//
// bioxen: a key strdict holds is in k2i too (a new key goes there first),
// so a store to it only updates strdict: it no longer boxed the key (an
// allocation) and looked it up in k2i on every store. A new key is boxed
// once, or not at all when the caller had it boxed.
func (tb *LTable) rawSetStringKey(key string, lkey LValue, value LValue, ls *LState) {
	if tb.strdict == nil {
		tb.strdict = make(map[string]LValue, defaultHashCap)
	}
	if tb.keys == nil {
		tb.keys = []LValue{}
		tb.k2i = map[LValue]int{}
	}

	if value == LNil {
		// TODO tb.keys and tb.k2i should also be removed
		delete(tb.strdict, key)
		return
	}
	if _, ok := tb.strdict[key]; !ok {
		if lkey == nil {
			lkey = LString(key)
		}
		if _, ok := tb.k2i[lkey]; !ok {
			tb.keys = growSlice(tb.keys, 1, ls) // bioxen: first, it may stop
			tb.k2i[lkey] = len(tb.keys)
			tb.keys = append(tb.keys, lkey)
		}
	}
	tb.strdict[key] = value
}

// setStringIfPresent stores value under key when the table holds a value
// there, and reports whether it did (bioxen). This is what a store from
// Lua does to a key present (no __newindex, a raw store), with one lookup
// fewer than RawGetString then RawSetString.
func (tb *LTable) setStringIfPresent(key string, value LValue) bool {
	if tb.strdict == nil {
		return false
	}
	if _, ok := tb.strdict[key]; !ok {
		return false
	}
	if value == LNil {
		delete(tb.strdict, key)
	} else {
		tb.strdict[key] = value
	}
	return true
}

// RawSetH sets a given LValue to a given index without the __newindex metamethod.
func (tb *LTable) RawSetH(key LValue, value LValue) { tb.rawSetH(key, value, nil) }

// rawSetH is RawSetH; the growth of a long key list polls ls's call
// limits (bioxen: see growSlice).
func (tb *LTable) rawSetH(key LValue, value LValue, ls *LState) {
	if s, ok := key.(LString); ok {
		tb.rawSetStringKey(string(s), key, value, ls) // bioxen: key is boxed already
		return
	}
	if tb.dict == nil {
		tb.dict = make(map[LValue]LValue, len(tb.strdict))
	}
	if tb.keys == nil {
		tb.keys = []LValue{}
		tb.k2i = map[LValue]int{}
	}

	if value == LNil {
		// TODO tb.keys and tb.k2i should also be removed
		delete(tb.dict, key)
	} else {
		if _, ok := tb.k2i[key]; !ok {
			tb.keys = growSlice(tb.keys, 1, ls) // bioxen: first, it may stop
			tb.k2i[key] = len(tb.keys)
			tb.keys = append(tb.keys, key)
		}
		tb.dict[key] = value
	}
}

// RawGet returns an LValue associated with a given key without __index metamethod.
func (tb *LTable) RawGet(key LValue) LValue {
	switch v := key.(type) {
	case LNumber:
		if isArrayKey(v) {
			index := int(v) - 1
			if index < len(tb.array) {
				return tb.array[index]
			}
			// bioxen: past the array part, an integer key is in the hash part
		}
	case LString:
		if tb.strdict == nil {
			return LNil
		}
		if ret, ok := tb.strdict[string(v)]; ok {
			return ret
		}
		return LNil
	}
	if tb.dict == nil {
		return LNil
	}
	if v, ok := tb.dict[key]; ok {
		return v
	}
	return LNil
}

// RawGetInt returns an LValue at position `key` without __index metamethod.
func (tb *LTable) RawGetInt(key int) LValue {
	index := int(key) - 1
	if index >= len(tb.array) || index < 0 {
		// bioxen: past the array part, an integer key is in the hash part
		if tb.dict == nil || index < 0 {
			return LNil
		}
		if v, ok := tb.dict[LNumber(key)]; ok {
			return v
		}
		return LNil
	}
	return tb.array[index]
}

// RawGet returns an LValue associated with a given key without __index metamethod.
func (tb *LTable) RawGetH(key LValue) LValue {
	if s, sok := key.(LString); sok {
		if tb.strdict == nil {
			return LNil
		}
		if v, vok := tb.strdict[string(s)]; vok {
			return v
		}
		return LNil
	}
	if tb.dict == nil {
		return LNil
	}
	if v, ok := tb.dict[key]; ok {
		return v
	}
	return LNil
}

// RawGetString returns an LValue associated with a given key without __index metamethod.
func (tb *LTable) RawGetString(key string) LValue {
	if tb.strdict == nil {
		return LNil
	}
	if v, vok := tb.strdict[string(key)]; vok {
		return v
	}
	return LNil
}

// ForEach iterates over this table of elements, yielding each in turn to a given function.
func (tb *LTable) ForEach(cb func(LValue, LValue)) {
	if tb.array != nil {
		for i, v := range tb.array {
			if v != LNil {
				cb(LNumber(i+1), v)
			}
		}
	}
	if tb.strdict != nil {
		for k, v := range tb.strdict {
			if v != LNil {
				cb(LString(k), v)
			}
		}
	}
	if tb.dict != nil {
		for k, v := range tb.dict {
			if v != LNil {
				cb(k, v)
			}
		}
	}
}

// This function is equivalent to lua_next ( http://www.lua.org/manual/5.1/manual.html#lua_next ).
func (tb *LTable) Next(key LValue) (LValue, LValue) {
	init := false
	if key == LNil {
		key = LNumber(0)
		init = true
	}

	if init || key != LNumber(0) {
		if kv, ok := key.(LNumber); ok && isInteger(kv) && int(kv) >= 0 && kv < LNumber(MaxArrayIndex) {
			index := int(kv)
			if tb.array != nil {
				for ; index < len(tb.array); index++ {
					if v := tb.array[index]; v != LNil {
						return LNumber(index + 1), v
					}
				}
			}
			if index == len(tb.array) { // bioxen: not for an integer key of the hash part
				if (tb.dict == nil || len(tb.dict) == 0) && (tb.strdict == nil || len(tb.strdict) == 0) {
					return LNil, LNil
				}
				key = tb.keys[0]
				if v := tb.RawGetH(key); v != LNil {
					return key, v
				}
			}
		}
	}

	for i := tb.k2i[key] + 1; i < len(tb.keys); i++ {
		key := tb.keys[i]
		if v := tb.RawGetH(key); v != LNil {
			return key, v
		}
	}
	return LNil, LNil
}
