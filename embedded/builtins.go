package embedded

import (
	"math"
	"strconv"
	"strings"
	"sync"

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
		"rep":    strRep,
		"format": strFormat(str.RawGetString("format").(*lua.LFunction)),
		"byte":   strByte,
		"char":   strChar,
		"sub":    strSub,
	})
	st.installStrlib(str) // find, match, gmatch, gsub
	tbl := L.GetGlobal("table").(*lua.LTable)
	tbl.RawSetString("concat", L.NewFunction(tableConcat))
	L.SetGlobal("unpack", L.NewFunction(baseUnpack))
	orig := L.GetGlobal("tostring").(*lua.LFunction)
	L.SetGlobal("tostring", L.NewFunction(func(L *lua.LState) int {
		switch v := L.Get(1).(type) {
		case lua.LString:
			L.Push(v)
			return 1
		case lua.LNumber:
			if i := int(v); lua.LNumber(i) == v && i >= 0 && i < numSmallInts {
				L.Push(smallInts()[i])
			} else {
				L.Push(lua.LString(numberString(v)))
			}
			return 1
		}
		return orig.GFunction(L)
	}))
	st.installPcall()
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

// numberString is gopher-lua's LNumber.String without fmt for integral
// values (tostring of numbers was a quarter of a string-building loop).
func numberString(n lua.LNumber) string {
	f := float64(n)
	if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
		return strconv.FormatInt(int64(f), 10)
	}
	return n.String()
}

// installPcall replaces pcall and xpcall. gopher-lua closes the upvalues of
// every active frame when an error is raised outside an error handler, so
// after `pcall(error, "x")` closures no longer share the locals of the
// frames that survived (a counter updated by a closure stops counting).
// Our pcall always runs with an error handler (the identity), which keeps
// gopher-lua from closing anything, and then closes just the upvalues of
// the frames the error unwound, by returning from an empty Lua function at
// the unwound call's stack position (a Lua return closes the upvalues at
// and above its base).
func (st *state) installPcall() {
	L := st.L
	closer := L.NewFunctionFromProto(emptyProto)
	identity := L.NewFunction(func(L *lua.LState) int { return 1 })
	protect := func(L *lua.LState, nargs int, handler *lua.LFunction) int {
		if err := L.PCall(nargs, lua.MultRet, handler); err != nil {
			L.Push(closer)
			L.Call(0, 0)
			L.Push(lua.LFalse)
			if ae, ok := err.(*lua.ApiError); ok {
				L.Push(ae.Object)
			} else {
				L.Push(lua.LString(err.Error()))
			}
			return 2
		}
		L.Insert(lua.LTrue, 1)
		return L.GetTop()
	}
	L.SetGlobal("pcall", L.NewFunction(func(L *lua.LState) int {
		L.CheckAny(1)
		return protect(L, L.GetTop()-1, identity)
	}))
	L.SetGlobal("xpcall", L.NewFunction(func(L *lua.LState) int {
		fn := L.CheckAny(1)
		handler := L.CheckFunction(2)
		L.SetTop(0)
		L.Push(fn)
		return protect(L, 0, handler)
	}))
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
	s := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || len(s) == 0 {
		L.Push(lua.LString(""))
		return 1
	}
	if int64(len(s))*int64(n) > maxStringBytes {
		tooLong(L, "string.rep")
	}
	L.Push(lua.LString(strings.Repeat(s, n)))
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
	s := L.CheckString(1)
	i := L.OptInt(2, 1)
	l := len(s)
	i = max(strPos(i, l), 1)
	j := min(strPos(L.OptInt(3, L.OptInt(2, 1)), l), l)
	if i > j {
		return 0
	}
	if j-i >= maxUnpack {
		L.RaiseError("string slice too long")
	}
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
	c := L.CheckInt(n)
	if c < 0 || c > 255 {
		L.ArgError(n, "invalid value")
	}
	return byte(c)
}

// strSub is string.sub(s, i [, j]) without an allocation for one-byte
// results or the whole string.
func strSub(L *lua.LState) int {
	s := L.CheckString(1)
	l := len(s)
	i := max(strPos(L.CheckInt(2), l), 1)
	j := min(strPos(L.OptInt(3, -1), l), l)
	switch {
	case i > j:
		L.Push(lua.LString(""))
	case i == j:
		L.Push(charStrings[s[i-1]])
	case i == 1 && j == l && L.Get(1).Type() == lua.LTString:
		L.Push(L.Get(1))
	default:
		L.Push(lua.LString(s[i-1 : j]))
	}
	return 1
}

func tableConcat(L *lua.LState) int {
	tbl := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, tbl.Len())
	var b strings.Builder
	for k := i; k <= j; k++ {
		switch v := tbl.RawGetInt(k).(type) {
		case lua.LString:
			b.WriteString(string(v))
		case lua.LNumber:
			b.WriteString(numberString(v))
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
	start := L.OptInt(2, 1)
	end := L.OptInt(3, tb.Len())
	if start > end {
		return 0
	}
	if int64(end)-int64(start) >= maxUnpack {
		L.RaiseError("too many results to unpack")
	}
	for i := start; i <= end; i++ {
		L.Push(tb.RawGetInt(i))
	}
	return end - start + 1
}

// strFormat refuses widths and precisions over two digits, as Lua 5.4 does
// ("invalid conversion"), then calls gopher-lua's format.
func strFormat(orig *lua.LFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		f := L.CheckString(1)
		for i := 0; i < len(f); i++ {
			if f[i] != '%' {
				continue
			}
			i++
			if i < len(f) && f[i] == '%' {
				continue
			}
			for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
				i++
			}
			digits := 0
			for i < len(f) && f[i] >= '0' && f[i] <= '9' {
				i++
				digits++
			}
			if i < len(f) && f[i] == '.' {
				i++
				p := 0
				for i < len(f) && f[i] >= '0' && f[i] <= '9' {
					i++
					p++
				}
				if p > 2 {
					digits = 3
				}
			}
			if digits > 2 {
				L.RaiseError("invalid conversion '%s' to 'format' (width or precision over 99)", f[strings.LastIndexByte(f[:i], '%'):min(len(f), i+1)])
			}
		}
		return orig.GFunction(L)
	}
}
