package embedded

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// Builtins replaced in every state (trusted or sandboxed): gopher-lua's
// versions are quadratic (gsub copies the whole string per match,
// table.concat pushes every item on the value stack), uninterruptible (the
// pattern matcher: see strlib.go) or unbounded
// (string.rep, unpack, huge string.format widths allocate whatever they are
// asked for in one Go call that no timeout can interrupt).

// maxStringBytes caps a string one builtin call may build.
const maxStringBytes = 256 << 20

// maxUnpack caps the values unpack may push (Lua 5.4's stack limit is 1e6).
const maxUnpack = 1_000_000

func (st *state) installBuiltins() {
	L := st.L
	str := L.GetGlobal("string").(*lua.LTable)
	L.SetFuncs(str, map[string]lua.LGFunction{
		"rep":     strRep,
		"format":  strFormat,
		"byte":    strByte,
		"char":    strChar,
		"sub":     strSub,
		"len":     strLen,
		"lower":   strCase(asciiLower),
		"upper":   strCase(asciiUpper),
		"reverse": strReverse,
	})
	st.installStrlib(str) // find, match, gmatch, gsub
	installStringMeta(L, str)
	strMt := L.GetMetatable(lua.LString("")).(*lua.LTable)
	st.typeErrMt = typeErrorMeta(L, strMt)
	strMt.RawSetString("__call", st.typeErrMt.RawGetString("__call"))
	L.SetGlobal("getmetatable", L.NewFunction(st.getMetatable))
	tbl := L.GetGlobal("table").(*lua.LTable)
	L.SetFuncs(tbl, map[string]lua.LGFunction{
		"concat": tableConcat,
		"insert": tableInsert,
		"remove": tableRemove,
		"sort":   tableSort(tbl.RawGetString("sort").(*lua.LFunction)),
		"maxn":   tableMaxn,
	})
	mathLib := L.GetGlobal("math").(*lua.LTable)
	mathLib.ForEach(func(k, v lua.LValue) {
		if fn, ok := v.(*lua.LFunction); ok && fn.IsG {
			name := lua.LVAsString(k)
			g := fn.GFunction
			if fix, ok := mathFixes[name]; ok {
				g = fix
			}
			n, ok := mathArity[name]
			if !ok {
				n = 1
			}
			mathLib.RawSet(k, L.NewFunction(numberArgs(g, n)))
		}
	})
	mathLib.RawSetString("huge", lua.LNumber(math.Inf(1)))
	installRandom(L, mathLib) // math.random, math.randomseed
	installOSDate(L)          // os.date, os.time
	st.installClock()
	L.GetGlobal("debug").(*lua.LTable).RawSetString("traceback", L.NewFunction(debugTraceback))
	origToString := L.GetGlobal("tostring").(*lua.LFunction)
	L.GetGlobal("os").(*lua.LTable).RawSetString("difftime", L.NewFunction(osDifftime))
	L.SetFuncs(L.G.Global, map[string]lua.LGFunction{
		"select":       baseSelect(L.GetGlobal("select").(*lua.LFunction).GFunction),
		"unpack":       baseUnpack,
		"tonumber":     baseToNumber,
		"setmetatable": baseSetMetatable,
		"rawset":       baseRawSet,
		"error":        baseError,
		"tostring": func(L *lua.LState) int {
			switch v := L.Get(1).(type) {
			case lua.LString:
				L.Push(v)
				return 1
			case lua.LNumber:
				if i := int(v); lua.LNumber(i) == v && i > 0 && i < numSmallInts {
					L.Push(smallInts()[i])
				} else {
					L.Push(lua.LString(fmtNumber(v)))
				}
				return 1
			}
			return origToString.GFunction(L)
		},
	})
	// next, and pairs returning it, on a tableScan (tablenext.go).
	next := L.NewFunction(luaNext)
	L.SetGlobal("next", next)
	L.SetGlobal("pairs", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		L.Push(next)
		L.Push(t)
		L.Push(lua.LNil)
		return 3
	}))
	st.installPcall()
	st.installCollectGarbage() // (the sandbox replaces it with its own)
}

// smallInts are the strings of 0..9999, boxed once (on first use, not at
// library load): tostring of a small integer (counts, positions, table keys
// in scientific code) allocates nothing.
const numSmallInts = 10000

var smallInts = sync.OnceValue(func() *[numSmallInts]lua.LValue {
	var t [numSmallInts]lua.LValue
	for i := range t {
		t[i] = lua.LString(strconv.Itoa(i))
	}
	return &t
})

// getMetatable is getmetatable(v): nil for the types that share the
// type-error metatable (typeerrors.go), as in Lua; a protected metatable's
// __metatable field.
func (st *state) getMetatable(L *lua.LState) int {
	mt := L.GetMetatable(L.CheckAny(1))
	if st.isTypeErrorMeta(mt) {
		mt = lua.LNil
	} else if t, ok := mt.(*lua.LTable); ok {
		if protected := t.RawGetString("__metatable"); protected != lua.LNil {
			mt = protected
		}
	}
	L.Push(mt)
	return 1
}

// baseSetMetatable is setmetatable(table, metatable|nil): tables only, as
// in Lua (gopher-lua let setmetatable(1, mt) change every number's).
func baseSetMetatable(L *lua.LState) int {
	t := L.CheckTable(1)
	mt := L.Get(2)
	if mt != lua.LNil || L.GetTop() < 2 { // setmetatable(t) is an error, as in Lua
		if _, ok := mt.(*lua.LTable); !ok {
			L.ArgError(2, "nil or table expected")
		}
	}
	if old, ok := t.Metatable.(*lua.LTable); ok && old.RawGetString("__metatable") != lua.LNil {
		L.RaiseError("cannot change a protected metatable")
	}
	t.Metatable = mt
	L.SetTop(1)
	return 1
}

// baseError is error(message [, level]): a string message gets the
// position of the function at that level, "" when it is a Go function
// (gopher-lua counted levels from the caller of error's caller, so
// error(msg, 2) pointed at the function that raised, not at its caller).
func baseError(L *lua.LState) int {
	level := optInt(L, 2, 1) // read first, as Lua does: error(t, "x") is an argument error
	obj := L.Get(1)
	if s, ok := luaString(obj); ok && level > 0 {
		// A number becomes a string too (error(42) raises "42"), as in Lua.
		obj = lua.LString(joinPolled(L, where(L, level), s)) // a long message: polled
	}
	L.Error(obj, 0)
	return 0
}

// where is luaL_where: "source:line: " of the function at level (0: the
// running Go function), or "" for a Go function or no such level.
func where(L *lua.LState, level int) string {
	dbg, ok := L.GetStack(level)
	if !ok {
		return ""
	}
	if _, err := L.GetInfo("Sl", dbg, lua.LNil); err != nil || dbg.CurrentLine <= 0 {
		return ""
	}
	return dbg.Source + ":" + strconv.Itoa(dbg.CurrentLine) + ": "
}

// baseRawSet is rawset(t, k, v), which returns t.
func baseRawSet(L *lua.LState) int {
	t := L.CheckTable(1)
	k := L.CheckAny(2)
	v := L.CheckAny(3)
	switch x := k.(type) {
	case *lua.LNilType:
		L.RaiseError("table index is nil")
	case lua.LNumber:
		if x != x {
			L.RaiseError("table index is NaN")
		}
	}
	L.RawSet(t, k, v) // through L: a long growth of t polls the call's limits
	L.SetTop(1)
	return 1
}

// strCase is string.lower/upper byte by byte, as C's tolower/toupper in
// the C locale (gopher-lua's used Unicode case mapping, which rewrote
// bytes of invalid UTF-8 as U+FFFD). A long string is converted in pieces
// with polls of the call's limits between them, into room that is not
// zeroed first (a make([]byte) zeroes reused memory in one Go call).
func strCase(conv func(byte) byte) lua.LGFunction {
	var table [256]byte
	for i := range table {
		table[i] = conv(byte(i))
	}
	return func(L *lua.LState) int {
		s := argString(L, 1)
		if s == "" {
			L.Push(lua.LString(""))
			return 1
		}
		var b strings.Builder
		b.Grow(len(s))
		piece := make([]byte, min(len(s), pollBytes))
		inPieces(L, len(s), func(start, end int) {
			p := piece[:end-start]
			for i := range p {
				p[i] = table[s[start+i]]
			}
			b.Write(p)
		})
		L.Push(lua.LString(b.String()))
		return 1
	}
}

// strReverse is string.reverse (gopher-lua's copied the string three
// times in one call nothing could stop), in pieces with polls between, as
// strCase.
func strReverse(L *lua.LState) int {
	s := argString(L, 1)
	if len(s) < 2 {
		L.Push(lua.LString(s))
		return 1
	}
	var b strings.Builder
	b.Grow(len(s))
	piece := make([]byte, min(len(s), pollBytes))
	inPieces(L, len(s), func(start, end int) { // positions of the result
		p := piece[:end-start]
		for i := range p {
			p[i] = s[len(s)-1-start-i]
		}
		b.Write(p)
	})
	L.Push(lua.LString(b.String()))
	return 1
}

// strLen is string.len; a number's length is that of its Lua text.
func strLen(L *lua.LState) int {
	if s, ok := L.Get(1).(lua.LString); ok {
		L.Push(lua.LNumber(len(s)))
		return 1
	}
	L.Push(lua.LNumber(len(argString(L, 1))))
	return 1
}

func asciiLower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func asciiUpper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// rawInt is t[k] without metamethods for any integer k (gopher-lua's
// RawGetInt sees only the array part: t[0] and t[-1] read as nil).
func rawInt(t *lua.LTable, k int) lua.LValue {
	if k >= 1 && k < lua.MaxArrayIndex {
		return t.RawGetInt(k)
	}
	return t.RawGet(lua.LNumber(k))
}

// tableInsert is table.insert(t, [pos,] v), with Lua 5.4's checks: pos in
// 1..#t+1 and no other argument count (gopher-lua inserted at 0 or -1
// without moving anything).
func tableInsert(L *lua.LState) int {
	t := L.CheckTable(1)
	// Stores that may grow t go through L: a long growth (the keys of the
	// hash part taken over) polls the call's limits.
	switch L.GetTop() {
	case 2:
		if v := L.Get(2); v != lua.LNil { // t.Append(v), through L
			L.RawSetInt(t, t.Len()+1, v)
		}
	case 3:
		e := t.Len() + 1
		pos := argInt(L, 2)
		if pos < 1 || pos > e {
			L.ArgError(2, "position out of bounds")
		}
		v := L.Get(3)
		if pos < e {
			last := t.RawGetInt(e - 1)
			L.RawSetInt(t, e, last) // grows the array part if needed
			if arr := arrayPart(t); arr != nil && len(*arr) >= e {
				// positions pos..e-2 up by one: indices pos-1..e-2
				if stop, undone := shiftPolled(L, (*arr)[pos-1:e-1], true); stop != nil {
					if undone {
						t.RawSetInt(e-1, last)
						t.RawSetInt(e, lua.LNil)
					} else {
						t.RawSetInt(pos, v)
					}
					L.RaiseError("%s", stop)
				}
			} else {
				for i := e - 1; i > pos; i-- {
					t.RawSetInt(i, t.RawGetInt(i-1))
				}
			}
		}
		L.RawSetInt(t, pos, v)
	default:
		L.RaiseError("wrong number of arguments to 'insert'")
	}
	return 0
}

// shiftPoll is how many slots table.insert and table.remove move between
// two polls of the call's limits (1 MiB, ~0.1 ms): shifting a table of 30
// million took 0.3 s that no deadline could stop.
const shiftPoll = 1 << 16

// shiftPolled moves s[0:n] to s[1:n+1] (up) or s[1:n+1] to s[0:n] (down),
// n = len(s)-1, in pieces, polling the call's limits between them. On a
// stop it finishes the move or undoes it, whichever is shorter (at most
// half the work), and returns the stop and whether it undid the move; an
// undone move leaves s as before except the slot the move overwrote first
// (s[n] up, s[0] down), which the caller restores.
func shiftPolled(L *lua.LState, s []lua.LValue, up bool) (stop error, undone bool) {
	n := len(s) - 1
	move := func(from, to int) { // steps [from, to) of the move
		if up { // from the top: s[k+1] = s[k] for k in [n-to, n-from)
			copy(s[n-to+1:n-from+1], s[n-to:n-from])
		} else { // s[k] = s[k+1] for k in [from, to)
			copy(s[from:to], s[from+1:to+1])
		}
	}
	for done := 0; done < n; {
		next := min(n, done+shiftPoll)
		move(done, next)
		done = next
		if done == n {
			break
		}
		if stop = pollLimits(L); stop != nil {
			if done > n-done {
				move(done, n)
				return stop, false
			}
			if up { // s[k] = s[k+1] for k in [n-done, n)
				copy(s[n-done:n], s[n-done+1:n+1])
			} else { // s[k+1] = s[k] for k in [0, done)
				copy(s[1:done+1], s[0:done])
			}
			return stop, true
		}
	}
	return nil, false
}

// arrayPart is t's array part (nil when gopher-lua's layout is not the one
// memory.go checked).
func arrayPart(t *lua.LTable) *[]lua.LValue {
	if !layout.ok {
		return nil
	}
	return (*[]lua.LValue)(unsafe.Add(unsafe.Pointer(t), layout.tArray))
}

// pollLimits reports the call's stop (deadline, CPU, memory), if any.
func pollLimits(L *lua.LState) error {
	if p, ok := L.Context().(interface{ Poll() error }); ok {
		return p.Poll()
	}
	return nil
}

// tableMaxn is table.maxn(t), polling the call's limits every 4K keys:
// gopher-lua's looked at every key in one Go call (two million: 0.14 s)
// that no deadline could stop.
func tableMaxn(L *lua.LState) int {
	t := L.CheckTable(1)
	L.Push(lua.LNumber(t.MaxNPoll(limitTicker(L))))
	return 1
}

// tableRemove is table.remove(t [, pos]) of Lua 5.1: a position outside
// 1..#t removes nothing and returns nothing (gopher-lua removed the last
// element for 0 and -1).
func tableRemove(L *lua.LState) int {
	t := L.CheckTable(1)
	e := t.Len()
	pos := optInt(L, 2, e)
	if pos < 1 || pos > e {
		return 0
	}
	v := t.RawGetInt(pos)
	if arr := arrayPart(t); arr != nil && len(*arr) >= e {
		// positions pos+1..e down by one: indices pos-1..e-1
		if stop, undone := shiftPolled(L, (*arr)[pos-1:e], false); stop != nil {
			if undone {
				t.RawSetInt(pos, v)
			} else {
				t.RawSetInt(e, lua.LNil)
			}
			L.RaiseError("%s", stop)
		}
	} else {
		for i := pos; i < e; i++ {
			t.RawSetInt(i, t.RawGetInt(i+1))
		}
	}
	t.RawSetInt(e, lua.LNil)
	L.Push(v)
	return 1
}

// tableSort is table.sort(t [, comp]) where an explicit nil comparator
// means the default order (gopher-lua raised "function expected"). With a
// comparator it is sortWithFunc (a comparator not a function is gopher-lua's
// error); without, sortDefault.
func tableSort(orig *lua.LFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if L.GetTop() >= 2 && L.Get(2) == lua.LNil {
			L.SetTop(1)
		}
		if L.GetTop() >= 2 {
			if fn, ok := L.Get(2).(*lua.LFunction); ok {
				sortWithFunc(L, L.CheckTable(1), fn)
				return 0
			}
			return orig.GFunction(L)
		}
		sortDefault(L, L.CheckTable(1))
		return 0
	}
}

// sortWithFunc sorts t[1..#t] with a comparator function. gopher-lua's
// sort sorted the whole array part, also the slots past #t: after
// table.remove(t), a comparator got the nil left in the array part
// ("attempt to compare nil"), and a sort with holes moved elements past
// #t. With a Go builtin as the comparator (table.sort(t, math.max)) it ran
// no Lua instruction, so nothing polled the call's limits: 1,000,000
// numbers ran 19 s past a 1 s CPU budget. This one polls them every 4K
// comparisons, and sorts a copy put in place in one step, as sortDefault
// does.
func sortWithFunc(L *lua.LState, t *lua.LTable, less *lua.LFunction) {
	tick := limitTicker(L)
	vals := arrayValues(t, t.Len(), tick)
	sort.Sort(byFunc{L: L, vals: vals, less: less, tick: tick})
	replaceArray(t, vals)
}

// arrayValues copies t[1..n], polling with tick.
func arrayValues(t *lua.LTable, n int, tick func()) []lua.LValue {
	vals := make([]lua.LValue, n)
	for i := range vals {
		tick()
		vals[i] = t.RawGetInt(i + 1)
	}
	return vals
}

type byFunc struct {
	L    *lua.LState
	vals []lua.LValue
	less *lua.LFunction
	tick func()
}

func (b byFunc) Len() int      { return len(b.vals) }
func (b byFunc) Swap(i, j int) { b.vals[i], b.vals[j] = b.vals[j], b.vals[i] }
func (b byFunc) Less(i, j int) bool {
	b.tick()
	b.L.Push(b.less)
	b.L.Push(b.vals[i])
	b.L.Push(b.vals[j])
	b.L.Call(2, 1)
	r := lua.LVAsBool(b.L.Get(-1))
	b.L.Pop(1)
	return r
}

// sortDefault sorts t[1..#t] by Lua's < . gopher-lua's sort ran as one Go
// call the deadline could not stop (5 million numbers: 7 s); this one polls
// the call's limits in every pass and every 4K comparisons (limitTicker), and sorts
// numbers and strings by value kept next to each one (5 million numbers:
// under 2 s here, lua5.4: 4 s). It sorts a copy and puts it in place in one
// step (replaceArray): stopped or failed half-way, t is as it was.
func sortDefault(L *lua.LState, t *lua.LTable) {
	tick := limitTicker(L)
	n := t.Len()
	allNum, allStr := true, true
	for i := 1; i <= n; i++ {
		tick()
		switch t.RawGetInt(i).(type) {
		case lua.LNumber:
			allStr = false
		case lua.LString:
			allNum = false
		default:
			allNum, allStr = false, false
		}
	}
	var vals []lua.LValue
	switch {
	case allNum:
		vals = sortByKey(t, n, tick, func(v lua.LValue) lua.LNumber { return v.(lua.LNumber) }, cmpNumber)
	case allStr:
		vals = sortByKey(t, n, tick, func(v lua.LValue) string { return string(v.(lua.LString)) }, strings.Compare)
	default:
		vals = arrayValues(t, n, tick)
		slices.SortFunc(vals, func(a, b lua.LValue) int {
			tick()
			switch {
			case L.LessThan(a, b):
				return -1
			case L.LessThan(b, a):
				return 1
			}
			return 0
		})
	}
	replaceArray(t, vals)
}

type sortEntry[K any] struct {
	key K
	v   lua.LValue
}

// sortByKey returns t[1..n] sorted by cmp of key(value), the keys kept next
// to the values (no type switch or pointer chase per comparison).
func sortByKey[K any](t *lua.LTable, n int, tick func(), key func(lua.LValue) K, cmp func(a, b K) int) []lua.LValue {
	es := make([]sortEntry[K], n)
	for i := range es {
		tick()
		v := t.RawGetInt(i + 1)
		es[i] = sortEntry[K]{key(v), v}
	}
	slices.SortFunc(es, func(a, b sortEntry[K]) int {
		tick()
		return cmp(a.key, b.key)
	})
	vals := make([]lua.LValue, n)
	for i := range es {
		tick()
		vals[i] = es[i].v
	}
	return vals
}

func cmpNumber(a, b lua.LNumber) int {
	switch {
	case a < b:
		return -1
	case b < a:
		return 1
	}
	return 0
}

// replaceArray stores vals at t[1..len(vals)]: in one step when gopher-lua's
// table layout is the expected one (t[1..#t] is then its array part), so
// that a stop cannot land between two stores.
func replaceArray(t *lua.LTable, vals []lua.LValue) {
	if layout.ok {
		arr := (*[]lua.LValue)(unsafe.Add(unsafe.Pointer(t), layout.tArray))
		if len(*arr) >= len(vals) {
			*arr = append(vals, (*arr)[len(vals):]...)
			return
		}
	}
	for i, v := range vals {
		t.RawSetInt(i+1, v)
	}
}

// callStackReserve is the call-stack room a protected call needs besides
// its function's frames.
const callStackReserve = 8

// installPcall replaces pcall and xpcall, so that an error closes the
// upvalues of exactly the frames it unwinds, keeping their values (see
// closeUnwound), and so that an error in xpcall's handler gives Lua's
// "error in error handling".
func (st *state) installPcall() {
	L := st.L
	st.closer = L.NewFunctionFromProto(emptyProto)
	var pcallFn, xpcallFn *lua.LFunction
	unwind := L.NewFunction(func(L *lua.LState) int {
		closeUnwound(L, pcallFn)
		return 1
	})
	protect := func(L *lua.LState, nargs int, handler *lua.LFunction) int {
		// Nested protected calls nest Go calls: past 200, Lua's "C stack
		// overflow" (gopher-lua's own limit was the call stack, where a
		// full stack under pcalls in tail position broke its frame stack).
		if !st.enterCCall(L) {
			L.SetTop(0)
			L.Push(lua.LFalse)
			L.Push(lua.LString("C stack overflow"))
			return 2
		}
		defer st.leaveCCall()
		// A protected call needs frames of its own beyond the function's
		// (its error function, the upvalue closer): gopher-lua, out of
		// call stack there, returned garbage (`return pcall(f)` at the
		// last frame gave a function value and 8).
		if top := topFrame(L); !top.IsNil() && top.index() >= luaOptions.CallStackSize-callStackReserve {
			L.SetTop(0)
			L.Push(lua.LFalse)
			L.Push(lua.LString("stack overflow"))
			return 2
		}
		if err := pcallKeepingFlag(L, nargs, lua.MultRet, handler); err != nil {
			st.raiseExit(L)
			if pollLimits(L) != nil {
				// The call was stopped: the stop goes on unwinding, with
				// the position where it was raised (the closer below
				// would fail at its first instruction and name itself,
				// "=(close):1: interrupted!"); the chunk's own closer
				// closes what is left open.
				L.Error(errorObject(err), 0)
			}
			// Upvalues still open (the handler could not run: the call
			// stack was full) are closed now, with nil values.
			L.Push(st.closer)
			L.Call(0, 0)
			L.Push(lua.LFalse)
			L.Push(errorObject(err))
			return 2
		}
		L.Insert(lua.LTrue, 1)
		return L.GetTop()
	}
	pcallFn = L.NewFunction(func(L *lua.LState) int {
		L.CheckAny(1)
		return protect(L, L.GetTop()-1, unwind)
	})
	xpcallFn = L.NewFunction(func(L *lua.LState) int {
		fn := L.CheckAny(1)
		handler := L.CheckFunction(2)
		L.SetTop(0)
		L.Push(fn)
		var runner *lua.LFunction
		inner := L.NewFunction(xpcallInner(&runner))
		runner = L.NewFunction(xpcallRunner(st, xpcallFn, handler, inner))
		return protect(L, 0, runner)
	})
	L.SetGlobal("pcall", pcallFn)
	L.SetGlobal("xpcall", xpcallFn)
	// The chunk's own error handler records the traceback (in linear
	// time: see traceback.go), closes the upvalues, and passes the error
	// on unchanged.
	st.tracer = L.NewFunction(func(L *lua.LState) int {
		if !st.exited {
			st.trace = traceback(L, 1)
		}
		closeUnwound(L, nil)
		return 1
	})
}

// xpcallRunner is the error function of one xpcall: it closes the upvalues
// of the frames the error unwinds and calls handler with the error, under
// inner. Its frame is hidden from tracebacks (hiddenFrame).
//
// Not inlined: hiddenFns knows its closures by their code.
//
//go:noinline
func xpcallRunner(st *state, xpcallFn, handler, inner *lua.LFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		closeUnwound(L, xpcallFn)
		if st.exited || pollLimits(L) != nil {
			// os.exit unwinds past the handler, and so does a stop (the
			// handler would fail at its first instruction: "error in
			// error handling").
			return 1
		}
		msg := luaErrorValue(L.Get(1))
		L.SetTop(0)
		L.Push(handler)
		L.Push(msg)
		if err := pcallKeepingFlag(L, 1, 1, inner); err != nil {
			L.Push(lua.LString("error in error handling"))
		}
		return 1
	}
}

// xpcallInner is the error function of an xpcall's handler (*runner).
//
// Not inlined: hiddenFns knows its closures by their code.
//
//go:noinline
func xpcallInner(runner **lua.LFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		closeUnwound(L, *runner)
		return 1
	}
}

// pcallKeepingFlag is L.PCall that puts back gopher-lua's hasErrorFunc as
// it was (see errFuncFlag): PCall clears it on leaving.
func pcallKeepingFlag(L *lua.LState, nargs, nret int, handler *lua.LFunction) error {
	flag := errFuncFlag(L)
	outer := *flag
	err := L.PCall(nargs, nret, handler)
	*flag = outer
	return err
}

// debugTraceback is debug.traceback([thread,] [message [, level]]) as in
// Lua 5.4: a message that is neither a string, a number nor nil is returned
// untouched; the level defaults to 1 (0 for another thread).
func debugTraceback(L *lua.LState) int {
	th, arg := L, 1
	if co, ok := L.Get(1).(*lua.LState); ok {
		th, arg = co, 2
	}
	msg := L.Get(arg)
	if msg != lua.LNil {
		if _, ok := luaString(msg); !ok {
			L.Push(msg)
			return 1
		}
	}
	level := 1
	if th != L {
		level = 0
	}
	if L.Get(arg+1) != lua.LNil {
		level = argInt(L, arg+1)
	}
	tb := traceback(th, level)
	if s, ok := luaString(msg); ok {
		tb = joinPolled(L, s, "\n"+tb) // a long message: polled
	}
	L.Push(lua.LString(tb))
	return 1
}

// errorObject is the Lua value of an error from PCall.
func errorObject(err error) lua.LValue {
	if ae, ok := err.(*lua.ApiError); ok && ae.Object != nil {
		return luaErrorValue(ae.Object)
	}
	return lua.LString(err.Error())
}

// luaErrorValue is an error value with Lua's words for gopher-lua's: a
// full call stack is Lua's "stack overflow" (gopher-lua panics with "lua
// callstack overflow").
func luaErrorValue(v lua.LValue) lua.LValue {
	if v == lua.LString("lua callstack overflow") {
		return lua.LString("stack overflow")
	}
	return v
}

// emptyProto is a compiled `function() end` (not vararg, so its frame
// starts right above its function slot), used to close upvalues.
var emptyProto = func() *lua.FunctionProto {
	chunk, err := parse.Parse(strings.NewReader("return function() end"), "=(close)")
	if err != nil {
		panic(err)
	}
	p, err := lua.Compile(chunk, "=(close)")
	if err != nil {
		panic(err)
	}
	return p.FunctionPrototypes[0]
}()

func tooLong(L *lua.LState, what string) {
	L.RaiseError("%s: resulting string too large (limit %d bytes)", what, maxStringBytes)
}

func strRep(L *lua.LState) int {
	s := argString(L, 1)
	n := argInt(L, 2)
	if n <= 0 || len(s) == 0 {
		L.Push(lua.LString(""))
		return 1
	}
	if n > maxStringBytes/len(s) { // len(s) * n could wrap
		tooLong(L, "string.rep")
	}
	size := len(s) * n
	if size <= pollWork {
		L.Push(lua.LString(strings.Repeat(s, n)))
		return 1
	}
	if n == 1 {
		L.Push(lua.LString(s)) // s itself: strings do not change
		return 1
	}
	// strings.Repeat's doubling copies, at most pollWork bytes each, with
	// polls of the call's limits between them, into room that is not
	// zeroed first (zeroing reused memory is a long Go call of its own).
	tk := workTicker{L: L}
	var b strings.Builder
	b.Grow(size)
	writePolled(&b, &tk, s)
	for k := b.Len(); k < size; k = b.Len() {
		// b repeats s, so it goes on as from r (where in s position k
		// falls), with bytes already written.
		r := k % len(s)
		piece := b.String()[r : r+min(k-r, size-k, pollWork)]
		b.WriteString(piece) // within b's room: no growth
		if len(piece) == pollWork {
			tk.poll()
		}
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// byteValues and charStrings are the numbers 0..255 and the one-byte
// strings, boxed once: string.byte and one-character string.sub, the inner
// loop of most sequence code, allocate nothing.
var byteValues, charStrings = func() (nums, strs [256]lua.LValue) {
	for i := range nums {
		nums[i] = lua.LNumber(i)
		strs[i] = lua.LString([]byte{byte(i)})
	}
	return nums, strs
}()

// strPos turns a Lua string position (negative: from the end) into a
// 1-based one, 0 when before the start (Lua 5.1's posrelat).
func strPos(pos, l int) int {
	if pos < 0 {
		pos += l + 1
	}
	return max(pos, 0)
}

// strByte is string.byte(s [, i [, j]]): j defaults to i (gopher-lua's
// returned every byte from i to the end when j was absent).
func strByte(L *lua.LState) int {
	s := argString(L, 1)
	i := optInt(L, 2, 1)
	l := len(s)
	j := min(strPos(optInt(L, 3, i), l), l)
	i = max(strPos(i, l), 1)
	if i > j {
		return 0
	}
	if j-i >= maxUnpack {
		L.RaiseError("string slice too long")
	}
	reserveStack(L, j-i+1)
	for k := i; k <= j; k++ {
		L.Push(byteValues[s[k-1]])
	}
	return j - i + 1
}

// strChar is string.char: each argument must be a byte value, as in Lua
// (gopher-lua wrapped 256 to 0).
func strChar(L *lua.LState) int {
	n := L.GetTop()
	if n == 1 {
		L.Push(charStrings[charArg(L, 1)])
		return 1
	}
	b := make([]byte, n)
	for k := range b {
		b[k] = charArg(L, k+1)
	}
	L.Push(lua.LString(b))
	return 1
}

func charArg(L *lua.LState, n int) byte {
	c := argInt(L, n)
	if c < 0 || c > 255 {
		L.ArgError(n, "invalid value")
	}
	return byte(c)
}

// strSub is string.sub(s, i [, j]) without an allocation for one-byte
// results or the whole string.
func strSub(L *lua.LState) int {
	s := argString(L, 1)
	l := len(s)
	i := max(strPos(argInt(L, 2), l), 1)
	j := min(strPos(optInt(L, 3, -1), l), l)
	switch {
	case i > j:
		L.Push(lua.LString(""))
	case i == j:
		L.Push(charStrings[s[i-1]])
	case i == 1 && j == l && L.Get(1).Type() == lua.LTString:
		L.Push(L.Get(1))
	default:
		L.Push(substring(L, s, i-1, j))
	}
	return 1
}

// sharedSubstrings is the length up to which a substring may share its
// source's bytes. Go substrings do, and a short piece kept from a long
// string held all of it while the memory walk (memory.go) charged the
// piece's length: 80 two-byte pieces of 24 MB strings held 1.9 GB under a
// 64 MiB limit. A piece of a longer source is a copy. The test is on the
// source alone, not on how much shorter the piece is: a chain of sub
// calls that each keep most of their source would still share the first
// one. So no string holds more than this many bytes besides its own.
const sharedSubstrings = 32

// substring is s[i:j] as a Lua string that does not hold on to s (see
// sharedSubstrings).
func substring(L *lua.LState, s string, i, j int) lua.LString {
	if len(s) > sharedSubstrings && j-i < len(s) {
		return lua.LString(clonePolled(L, s[i:j]))
	}
	return lua.LString(s[i:j])
}

// clonePolled is a copy of s; a long one is copied in pieces of pollWork
// bytes, polling the call's limits between them, into room that is not
// zeroed first (writePolled). One copy of 128 MiB took up to 0.45 s on a
// 2-core VM in one Go call: its pages are touched for the first time there
// (and a make([]byte) zeroes reused memory first, in one Go call too).
func clonePolled(L *lua.LState, s string) string {
	if len(s) <= pollWork {
		return strings.Clone(s)
	}
	var b strings.Builder
	tk := workTicker{L: L}
	writePolled(&b, &tk, s)
	return b.String()
}

func tableConcat(L *lua.LState) int {
	tbl := L.CheckTable(1)
	sep := ""
	if L.Get(2) != lua.LNil {
		sep = argString(L, 2)
	}
	i := optInt(L, 3, 1)
	j := optInt(L, 4, tbl.Len())
	// Size the result first (numbers at their longest, %.14g is at most
	// 21 bytes): one allocation, no regrowth copies.
	size := 0
	tk := workTicker{L: L} // long tables and long strings poll the call's limits
sizing:
	for k := i; k <= j && size <= maxStringBytes; k++ {
		tk.add(16)
		switch v := rawInt(tbl, k).(type) {
		case lua.LString:
			size += len(v) + len(sep)
		case lua.LNumber:
			size += 21 + len(sep)
		default:
			break sizing // the loop below raises the error at k
		}
	}
	var b strings.Builder
	b.Grow(min(size, maxStringBytes+1))
	for k := i; k <= j; k++ {
		tk.add(16)
		switch v := rawInt(tbl, k).(type) {
		case lua.LString:
			writePolled(&b, &tk, string(v))
		case lua.LNumber:
			b.WriteString(fmtNumber(v))
		default:
			L.RaiseError("invalid value (at index %d) in table for 'concat'", k)
		}
		if k < j {
			b.WriteString(sep)
		}
		if b.Len() > maxStringBytes {
			tooLong(L, "table.concat")
		}
	}
	L.Push(lua.LString(b.String()))
	return 1
}

func baseUnpack(L *lua.LState) int {
	tb := L.CheckTable(1)
	start := optInt(L, 2, 1)
	end := optInt(L, 3, tb.Len())
	if start > end {
		return 0
	}
	if int64(end)-int64(start) >= maxUnpack {
		L.RaiseError("too many results to unpack")
	}
	reserveStack(L, end-start+1)
	for i := start; i <= end; i++ {
		L.Push(rawInt(tb, i))
		if (i-start)&0xffff == 0xffff {
			L.PollLimits() // a million values take 5 ms
		}
	}
	return end - start + 1
}
