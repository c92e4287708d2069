package embedded

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
	"github.com/yuin/gopher-lua/pm"
)

// Builtins replaced in every state (trusted or sandboxed): gopher-lua's
// versions are quadratic (gsub copies the whole string per match,
// table.concat pushes every item on the value stack) or unbounded
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
		"gsub":   strGsub,
		"rep":    strRep,
		"format": strFormat(str.RawGetString("format").(*lua.LFunction)),
	})
	tbl := L.GetGlobal("table").(*lua.LTable)
	tbl.RawSetString("concat", L.NewFunction(tableConcat))
	L.SetGlobal("unpack", L.NewFunction(baseUnpack))
	st.installPcall()
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
			b.WriteString(v.String())
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

// strGsub is string.gsub built in one pass (gopher-lua's copies the whole
// string for every match: 16 s for 400 kB).
func strGsub(L *lua.LState) int {
	s := L.CheckString(1)
	pat := L.CheckString(2)
	L.CheckTypes(3, lua.LTString, lua.LTTable, lua.LTFunction, lua.LTNumber)
	repl := L.Get(3)
	limit := L.OptInt(4, -1)
	mds, err := pm.Find(pat, []byte(s), 0, limit)
	if err != nil {
		L.RaiseError("%s", err.Error())
	}
	var b strings.Builder
	last := 0
	for _, md := range mds {
		start, end := md.Capture(0), md.Capture(1)
		b.WriteString(s[last:start])
		whole := s[start:end]
		var rep lua.LValue
		switch r := repl.(type) {
		case lua.LString, lua.LNumber:
			expandReplacement(L, &b, lua.LVAsString(r), s, md)
			rep = nil
		case *lua.LTable:
			rep = L.GetTable(r, firstCapture(s, md))
		case *lua.LFunction:
			L.Push(r)
			n := pushCaptures(L, s, md)
			L.Call(n, 1)
			rep = L.Get(-1)
			L.Pop(1)
		}
		if rep != nil {
			switch v := rep.(type) {
			case lua.LString, lua.LNumber:
				b.WriteString(lua.LVAsString(v))
			case *lua.LNilType:
				b.WriteString(whole)
			case lua.LBool:
				if v {
					L.RaiseError("invalid replacement value (a boolean)")
				}
				b.WriteString(whole)
			default:
				L.RaiseError("invalid replacement value (a %s)", v.Type().String())
			}
		}
		if b.Len() > maxStringBytes {
			tooLong(L, "string.gsub")
		}
		last = end
	}
	b.WriteString(s[last:])
	L.Push(lua.LString(b.String()))
	L.Push(lua.LNumber(len(mds)))
	return 2
}

func captureValue(s string, md *pm.MatchData, idx int) lua.LValue {
	if md.IsPosCapture(idx) {
		return lua.LNumber(md.Capture(idx) + 1)
	}
	return lua.LString(s[md.Capture(idx):md.Capture(idx+1)])
}

func firstCapture(s string, md *pm.MatchData) lua.LValue {
	if md.CaptureLength() > 2 {
		return captureValue(s, md, 2)
	}
	return captureValue(s, md, 0)
}

func pushCaptures(L *lua.LState, s string, md *pm.MatchData) int {
	if md.CaptureLength() <= 2 {
		L.Push(captureValue(s, md, 0))
		return 1
	}
	n := 0
	for i := 2; i < md.CaptureLength(); i += 2 {
		L.Push(captureValue(s, md, i))
		n++
	}
	return n
}

func expandReplacement(L *lua.LState, b *strings.Builder, repl, s string, md *pm.MatchData) {
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(repl) {
			L.RaiseError("invalid use of '%%' in replacement string")
		}
		c = repl[i]
		switch {
		case c == '%':
			b.WriteByte('%')
		case c == '0':
			b.WriteString(s[md.Capture(0):md.Capture(1)])
		case c >= '1' && c <= '9':
			idx := int(c-'0') * 2
			if idx >= md.CaptureLength() {
				if idx == 2 && md.CaptureLength() == 2 {
					b.WriteString(s[md.Capture(0):md.Capture(1)])
					continue
				}
				L.RaiseError("invalid capture index %%%d in replacement string", c-'0')
			}
			b.WriteString(lua.LVAsString(captureValue(s, md, idx)))
		default:
			L.RaiseError("invalid use of '%%' in replacement string")
		}
	}
}
