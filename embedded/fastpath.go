package embedded

import (
	"math"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Fast paths of the builtins sequence code calls in its inner loops
// (gopher-lua's LFastFunction, a bioxen patch): a call from Lua with a
// fixed number of arguments, and a generic for loop's call of its
// iterator, get the results without a call frame when the arguments are
// the usual ones, and call the builtin as before otherwise (which raises
// any error). Each fast path returns exactly what its builtin returns;
// TestFastPathsMatchBuiltins, TestFastIteratorsMatch and
// TestFastInsertMatches compare them.

// fastMaxSub is the longest string.sub result made on the fast path.
const fastMaxSub = 64

func (st *state) installFastPaths() {
	L := st.L
	str := L.GetGlobal("string").(*lua.LTable)
	setFast(str, "byte", fastByte)
	setFast(str, "sub", fastSub)
	setFast(str, "char", fastChar)
	mathLib := L.GetGlobal("math").(*lua.LTable)
	setFast(mathLib, "floor", fastMath(math.Floor))
	setFast(mathLib, "abs", fastMath(math.Abs))
	setFast(mathLib, "sqrt", fastMath(math.Sqrt))
	setFast(mathLib, "max", fastMax)
	setFast(mathLib, "min", fastMin)
	setFast(L.GetGlobal("table").(*lua.LTable), "insert", fastInsert)
	setFast(L.G.Global, "next", fastNext)
	ipairs := L.G.Global.RawGetString("ipairs").(*lua.LFunction)
	ipairs.Upvalues[0].Value().(*lua.LFunction).Fast = fastIpairsAux
	setFast(L.G.Global, "type", fastType)
	setFast(L.G.Global, "tostring", fastToString)
}

func setFast(t *lua.LTable, name string, fast lua.LFastFunction) {
	t.RawGetString(name).(*lua.LFunction).Fast = fast
}

// fastInt is a number argument that is an integer (|n| < 2^53), as an int.
func fastInt(v lua.LValue) (int, bool) {
	n, ok := v.(lua.LNumber)
	if !ok || n != n || math.Abs(float64(n)) >= 1<<53 {
		return 0, false
	}
	i := int(n)
	return i, lua.LNumber(i) == n
}

// fastRange is the 1-based range [i, j] of s that string.byte and
// string.sub compute from args[1:] (i, default def, then j, default i
// when sameJ, as for string.byte, else -1), clamped to s; ok is false
// when an argument is not an integer number.
func fastRange(s string, args []lua.LValue, def int, sameJ bool) (i, j int, ok bool) {
	i = def
	if len(args) >= 2 {
		if i, ok = fastInt(args[1]); !ok {
			return 0, 0, false
		}
	}
	l := len(s)
	j = -1
	if sameJ {
		j = i
	}
	if len(args) >= 3 {
		if j, ok = fastInt(args[2]); !ok {
			return 0, 0, false
		}
	}
	return max(strPos(i, l), 1), min(strPos(j, l), l), true
}

// fastByte is string.byte(s [, i [, j]]) with one byte as its result.
func fastByte(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) == 0 || len(args) > 3 {
		return nil, nil, -1
	}
	s, ok := args[0].(lua.LString)
	if !ok {
		return nil, nil, -1
	}
	i, j, ok := fastRange(string(s), args, 1, true)
	if !ok || i != j {
		return nil, nil, -1
	}
	return byteValues[s[i-1]], nil, 1
}

// fastSub is string.sub(s, i [, j]) with a result of up to fastMaxSub
// bytes.
func fastSub(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) < 2 || len(args) > 3 {
		return nil, nil, -1
	}
	s, ok := args[0].(lua.LString)
	if !ok {
		return nil, nil, -1
	}
	i, j, ok := fastRange(string(s), args, 0, false)
	switch {
	case !ok || j-i >= fastMaxSub:
		return nil, nil, -1
	case i > j:
		return lua.LString(""), nil, 1
	case i == j:
		return charStrings[s[i-1]], nil, 1
	case i == 1 && j == len(s):
		return args[0], nil, 1
	case len(s) > sharedSubstrings:
		return lua.LString(strings.Clone(string(s[i-1 : j]))), nil, 1
	}
	return s[i-1 : j], nil, 1
}

// fastChar is string.char(c) of one byte value.
func fastChar(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) != 1 {
		return nil, nil, -1
	}
	c, ok := fastInt(args[0])
	if !ok || c < 0 || c > 255 {
		return nil, nil, -1
	}
	return charStrings[c], nil, 1
}

// fastMath is a math function of one number, f (math.floor, math.abs,
// math.sqrt), of a number.
func fastMath(f func(float64) float64) lua.LFastFunction {
	return func(args []lua.LValue) (r1, r2 lua.LValue, n int) {
		if len(args) == 0 {
			return nil, nil, -1
		}
		x, ok := args[0].(lua.LNumber)
		if !ok {
			return nil, nil, -1
		}
		return lua.NumberValue(lua.LNumber(f(float64(x)))), nil, 1
	}
}

// fastMax is math.max of numbers: the first of the greatest, as Lua
// compares them (a NaN after the first is passed over).
func fastMax(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	return fastPick(args, func(a, b lua.LNumber) bool { return a > b })
}

// fastMin is math.min of numbers, likewise.
func fastMin(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	return fastPick(args, func(a, b lua.LNumber) bool { return a < b })
}

func fastPick(args []lua.LValue, better func(a, b lua.LNumber) bool) (r1, r2 lua.LValue, n int) {
	if len(args) == 0 {
		return nil, nil, -1
	}
	best, ok := args[0].(lua.LNumber)
	if !ok {
		return nil, nil, -1
	}
	k := 0
	for i, v := range args[1:] {
		n, ok := v.(lua.LNumber)
		if !ok {
			return nil, nil, -1
		}
		if better(n, best) {
			best, k = n, i+1
		}
	}
	return args[k], nil, 1
}

// fastToString is tostring of a string or a number.
func fastToString(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) == 0 {
		return nil, nil, -1
	}
	switch v := args[0].(type) {
	case lua.LString:
		return args[0], nil, 1
	case lua.LNumber:
		if i := int(v); lua.LNumber(i) == v && i > 0 && i < numSmallInts {
			return smallInts()[i], nil, 1
		}
		return lua.LString(fmtNumber(v)), nil, 1
	}
	return nil, nil, -1
}

// typeNames are type's results, boxed once.
var typeNames = func() (names [lua.LTChannel + 1]lua.LValue) {
	for t := range names {
		names[t] = lua.LString(lua.LValueType(t).String())
	}
	return names
}()

// fastType is type(v).
func fastType(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) == 0 || args[0] == nil {
		return nil, nil, -1
	}
	t := args[0].Type()
	if int(t) >= len(typeNames) {
		return nil, nil, -1
	}
	return typeNames[t], nil, 1
}

// fastNext is next(t [, key]) when the next key is within fastScanSlots
// slots or keys (tableScan); a longer scan, which polls the call's limits,
// and an invalid key, which raises, are left to next.
func fastNext(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) == 0 || len(args) > 2 || !layout.ok {
		return nil, nil, -1
	}
	t, ok := args[0].(*lua.LTable)
	if !ok {
		return nil, nil, -1
	}
	key := lua.LValue(lua.LNil)
	if len(args) == 2 && args[1] != nil {
		// (a register past the top may hold Go's nil: the control
		// variable of `for k in next, t`, which gopher-lua leaves unset)
		key = args[1]
	}
	var s tableScan
	k, v, ok := s.next(t, key)
	switch {
	case s.stop != nil:
		return nil, nil, -1
	case !ok:
		return lua.LNil, nil, 1
	}
	return k, v, 2
}

// fastIpairsAux is the iterator ipairs returns (gopher-lua's ipairsaux):
// the next index of t and its value, nothing at the first nil.
func fastIpairsAux(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) != 2 {
		return nil, nil, -1
	}
	t, ok := args[0].(*lua.LTable)
	if !ok {
		return nil, nil, -1
	}
	i, ok := fastInt(args[1])
	if !ok {
		return nil, nil, -1
	}
	i++
	v := t.RawGetInt(i)
	if v == lua.LNil {
		return nil, nil, 0
	}
	return lua.NumberValue(lua.LNumber(i)), v, 2
}

// fastInsert is table.insert(t, v) when v goes into t's array part without
// a growth (LTable.AppendInPlace).
func fastInsert(args []lua.LValue) (r1, r2 lua.LValue, n int) {
	if len(args) != 2 || args[1] == nil {
		return nil, nil, -1
	}
	t, ok := args[0].(*lua.LTable)
	if !ok || args[1] != lua.LNil && !t.AppendInPlace(args[1]) {
		return nil, nil, -1
	}
	return nil, nil, 0
}
