package embedded

import (
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/embedded/pattern"
)

// string.find, match, gmatch and gsub on our own matcher (package pattern):
// gopher-lua's is slow and cannot be interrupted, so a pathological pattern
// kept burning CPU past the call's deadline. Ours polls the call's context.
//
// The semantics are Lua 5.4's, checked against lua5.4 by
// strlib_diff_test.go. They differ from Lua 5.1's in corner cases only: an
// init past the end finds nothing, gsub and gmatch skip an empty match
// right where the previous match ended, %g is a class, a few error
// messages. Kept from 5.1: %z matches "\0", and gmatch takes no init
// argument (in both, gmatch treats a leading '^' as a plain character).

// strlib is the per-state part of the string functions: a small cache of
// compiled patterns (scripts call the same few patterns in loops).
type strlib struct {
	st    *state
	cache map[patternKey]*pattern.Pattern
}

type patternKey struct {
	pat    string
	anchor bool
}

const (
	maxCachedPatterns   = 64
	maxCachedPatternLen = 256
)

// specials are the bytes that make string.find use the matcher rather
// than a plain search (lstrlib's SPECIALS).
const specials = "^$*+?.([%-"

func (st *state) installStrlib(str *lua.LTable) {
	sl := &strlib{st: st, cache: map[patternKey]*pattern.Pattern{}}
	L := st.L
	L.SetFuncs(str, map[string]lua.LGFunction{
		"find":   func(L *lua.LState) int { return sl.findAux(L, true) },
		"match":  func(L *lua.LState) int { return sl.findAux(L, false) },
		"gmatch": sl.gmatch,
		"gsub":   sl.gsub,
	})
	if str.RawGetString("gfind") != lua.LNil { // Lua 5.0's name, still in gopher-lua
		str.RawSetString("gfind", str.RawGetString("gmatch"))
	}
}

func (sl *strlib) compile(L *lua.LState, pat string, anchor bool) *pattern.Pattern {
	if len(pat) > maxCachedPatternLen {
		return sl.compileLong(L, pat, anchor)
	}
	key := patternKey{pat, anchor}
	if p, ok := sl.cache[key]; ok {
		return p
	}
	if len(sl.cache) >= maxCachedPatterns {
		clear(sl.cache)
	}
	p := pattern.Compile(pat, anchor)
	sl.cache[key] = p
	return p
}

// patternBytesPerByte bounds what a compiled pattern takes per byte of its
// text while it is compiled (a 24-byte item per byte at most, gathered in
// blocks and then copied once; a 32-byte set per distinct bracket set of
// three bytes or more).
const patternBytesPerByte = 48

// compileLong compiles a pattern too long for the cache within the call's
// limits: one that would not fit under the memory limit is a memory
// breach before anything is built (a 24 MiB pattern took 900 MB), and the
// compilation polls the call's deadline and CPU budget.
func (sl *strlib) compileLong(L *lua.LState, pat string, anchor bool) *pattern.Pattern {
	c := sl.st.ctx
	if !sl.st.roomFor(L, int64(len(pat))*patternBytesPerByte) {
		c.stopNow(errMemLimit)
		sl.st.raiseStop(L)
	}
	p, err := pattern.CompileContext(L.Context(), pat, anchor)
	if err != nil {
		raiseMatchError(L, err)
	}
	return p
}

// startIndex turns a Lua init argument into a byte offset (Lua 5.4's
// posrelatI minus one); it may be past the end.
func startIndex(init, n int) int {
	switch {
	case init > 0:
		return init - 1
	case init == 0 || init < -n:
		return 0
	}
	return n + init
}

func raiseMatchError(L *lua.LState, err error) {
	L.RaiseError("%s", err.Error())
}

// findAux is string.find (find) and string.match.
func (sl *strlib) findAux(L *lua.LState, find bool) int {
	s := argString(L, 1)
	pat := argString(L, 2)
	init := startIndex(optInt(L, 3, 1), len(s))
	if init > len(s) {
		L.Push(lua.LNil)
		return 1
	}
	var m pattern.Matcher
	m.Context = L.Context()
	if find && (lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(pat, specials)) {
		// In pieces with polls between: strings.Index of a long needle
		// in 128 MiB took 0.6 s, out of reach of the CPU budget.
		i, err := m.Index(s[init:], pat)
		if err != nil {
			raiseMatchError(L, err)
		}
		if i < 0 {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(lua.LNumber(init + i + 1))
		L.Push(lua.LNumber(init + i + len(pat)))
		return 2
	}
	found, err := m.Find(sl.compile(L, pat, true), s, init)
	if err != nil {
		raiseMatchError(L, err)
	}
	if !found {
		L.Push(lua.LNil)
		return 1
	}
	if find {
		L.Push(lua.LNumber(m.Start() + 1))
		L.Push(lua.LNumber(m.End()))
		return 2 + pushCaptures(L, &m, s, false)
	}
	return pushCaptures(L, &m, s, true)
}

// gmatch returns an iterator over the matches of a pattern. As in Lua 5.1
// a leading '^' is an ordinary character (an anchor would stop the
// iteration); as in Lua 5.4 an empty match right where the previous match
// ended is skipped.
func (sl *strlib) gmatch(L *lua.LState) int {
	s := argString(L, 1)
	p := sl.compile(L, argString(L, 2), false)
	m := new(pattern.Matcher)
	pos, lastEnd := 0, -1
	// s and p are also the closure's upvalues, unused but for the memory
	// walk: the iterator holds them (p as a userdata the walk asks for its
	// MemSize: a kept pattern can be many times its text).
	held := L.NewUserData()
	held.Value = p
	L.Push(L.NewClosure(func(L *lua.LState) int {
		m.Context = L.Context()
		for pos <= len(s) {
			found, err := m.Find(p, s, pos)
			if err != nil {
				raiseMatchError(L, err)
			}
			if !found {
				pos = len(s) + 1
				return 0
			}
			if m.End() == lastEnd { // empty, where the last match ended
				pos = m.Start() + 1
				continue
			}
			pos, lastEnd = m.End(), m.End()
			return pushCaptures(L, m, s, true)
		}
		return 0
	}, lua.LString(s), held))
	return 1
}

// gsub is string.gsub, built in one pass (gopher-lua's copied the whole
// string for every match: 16 s for 400 kB).
func (sl *strlib) gsub(L *lua.LState) int {
	s := argString(L, 1)
	pat := argString(L, 2)
	L.CheckTypes(3, lua.LTString, lua.LTTable, lua.LTFunction, lua.LTNumber)
	repl := L.Get(3)
	maxN := optInt(L, 4, len(s)+1)
	p := sl.compile(L, pat, true)
	if p.OneByte() && byteOnlyRepl(repl) {
		r, n := gsubOneByte(L, p, s, repl, maxN)
		L.Push(lua.LString(r))
		L.Push(lua.LNumber(n))
		return 2
	}
	var m pattern.Matcher
	b := gsubOut{tk: workTicker{L: L}}
	pos, lastEnd, n := 0, -1, 0
	for n < maxN {
		m.Context = L.Context()
		found, err := m.Find(p, s, pos)
		if err != nil {
			raiseMatchError(L, err)
		}
		if !found {
			break
		}
		start, end := m.Start(), m.End()
		b.write(s[pos:start]) // no match started in between
		if end == lastEnd {   // empty, where the last match ended: keep one byte
			if start == len(s) {
				pos = start
				break
			}
			b.write(s[start : start+1])
			pos = start + 1
		} else {
			n++
			addValue(L, &b, &m, s, repl)
			pos, lastEnd = end, end
		}
		if p.Anchored() {
			break
		}
	}
	b.write(s[pos:])
	L.Push(lua.LString(b.String()))
	L.Push(lua.LNumber(n))
	return 2
}

// byteOnlyRepl reports whether a gsub replacement of a one-byte match
// depends on that byte alone, without side effects: a string, a number,
// or a table without metatable (read raw).
func byteOnlyRepl(repl lua.LValue) bool {
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		return true
	case *lua.LTable:
		return r.Metatable == lua.LNil
	}
	return false
}

// gsubOneByte is gsub for a pattern whose matches are single bytes
// (p.OneByte) and a replacement that depends on the byte alone
// (byteOnlyRepl): the general loop's result, made with one Find and
// addValue per distinct byte, at its first match, so that an invalid
// replacement raises its error where the general loop would, instead of
// one per match (reverse complement, gsub(s, ".", comp), took 48 ms per
// megabase, lua5.4 35 ms).
func gsubOneByte(L *lua.LState, p *pattern.Pattern, s string, repl lua.LValue, maxN int) (string, int) {
	var (
		made [256]bool
		rep  [256]string
		m    pattern.Matcher
	)
	// Room for len(s) bytes is reserved once a one-byte replacement is
	// seen, with no limit: the result is then likely as long as s (a
	// deletion or a small limit makes far fewer). Else the builder grows
	// by doubling, with polls.
	b := gsubOut{tk: workTicker{L: L}}
	pos, n, scanned := 0, 0, 0
	for i := 0; i < len(s) && n < maxN; i++ {
		if scanned++; scanned == pollBytes {
			scanned = 0
			b.tk.poll()
		}
		c := s[i]
		if !p.HasByte(c) {
			continue
		}
		if !made[c] {
			m.Context = L.Context()
			if found, err := m.Find(p, s, i); err != nil {
				raiseMatchError(L, err)
			} else if !found || m.Start() != i {
				L.RaiseError("string.gsub: internal error: one-byte match not at %d", i+1)
			}
			one := gsubOut{tk: workTicker{L: L}}
			addValue(L, &one, &m, s, repl)
			rep[c], made[c] = one.String(), true
			if len(rep[c]) == 1 && maxN > len(s) && b.b.Cap() < len(s) {
				growBuilder(&b.b, &b.tk, min(len(s), maxStringBytes)-b.b.Len())
			}
		}
		if pos < i {
			b.write(s[pos:i])
		}
		if r := rep[c]; len(r) == 1 && b.b.Len() < maxStringBytes {
			if b.b.Len() == b.b.Cap() {
				growBuilder(&b.b, &b.tk, 1)
			}
			b.b.WriteByte(r[0])
		} else {
			b.write(r)
		}
		n++
		pos = i + 1
	}
	b.write(s[pos:])
	return b.String(), n
}

// gsubOut is gsub's result being built. A write that would take it past
// maxStringBytes is an error before it is made (checked once per match,
// a replacement such as 2048 "%0" of a 1 MiB match asked for 2 GiB, 6 GB
// of heap with the regrowth, before the check), and the bytes written
// poll the call's limits every pollWork.
// (A long write is copied in pieces, with polls between, by writePolled.)
type gsubOut struct {
	b  strings.Builder
	tk workTicker
}

func (o *gsubOut) write(x string) {
	o.tk.work += 64 // a write costs more than its bytes (writePolled counts those)
	if len(x) > maxStringBytes-o.b.Len() {
		tooLong(o.tk.L, "string.gsub")
	}
	writePolled(&o.b, &o.tk, x)
}

// String is the result.
func (o *gsubOut) String() string { return o.b.String() }

// addValue appends the replacement of the match m holds.
func addValue(L *lua.LState, b *gsubOut, m *pattern.Matcher, s string, repl lua.LValue) {
	whole := s[m.Start():m.End()]
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString:
		expandReplacement(L, b, string(r), m, s)
		return
	case lua.LNumber:
		expandReplacement(L, b, fmtNumber(r), m, s)
		return
	case *lua.LTable:
		key := captureValue(L, m, s, 0)
		if k, ok := key.(lua.LString); ok && r.Metatable == lua.LNil {
			v = r.RawGetString(string(k))
		} else {
			v = L.GetTable(r, key)
		}
	case *lua.LFunction:
		L.Push(r)
		L.Call(pushCaptures(L, m, s, true), 1)
		v = L.Get(-1)
		L.Pop(1)
	}
	switch rv := v.(type) {
	case lua.LString:
		b.write(string(rv))
	case lua.LNumber:
		b.write(fmtNumber(rv))
	case *lua.LNilType:
		b.write(whole)
	case lua.LBool:
		if rv {
			L.RaiseError("invalid replacement value (a boolean)")
		}
		b.write(whole)
	default:
		L.RaiseError("invalid replacement value (a %s)", v.Type().String())
	}
}

// captureValue is capture i as Lua sees it: a string, or a number for a
// position capture.
func captureValue(L *lua.LState, m *pattern.Matcher, s string, i int) lua.LValue {
	c, err := m.Capture(i)
	if err != nil {
		raiseMatchError(L, err)
	}
	if c.Position {
		return lua.LNumber(c.Start + 1)
	}
	if c.End == c.Start+1 {
		return charStrings[s[c.Start]] // preboxed: no allocation
	}
	return substring(L, s, c.Start, c.End)
}

// pushCaptures pushes the captures of a match; with none, the whole match
// when whole is set (match, gmatch, gsub) or nothing (find).
func pushCaptures(L *lua.LState, m *pattern.Matcher, s string, whole bool) int {
	n := m.NumCaptures()
	if n == 0 && whole {
		n = 1
	}
	for i := 0; i < n; i++ {
		L.Push(captureValue(L, m, s, i))
	}
	return n
}

// expandReplacement appends a replacement string, with %0-%9 and %%.
// With items, its length is counted first: one past maxStringBytes is an
// error before anything is written.
func expandReplacement(L *lua.LState, b *gsubOut, repl string, m *pattern.Matcher, s string) {
	if strings.IndexByte(repl, '%') < 0 {
		b.write(repl)
		return
	}
	if n := expansionSize(b, repl, m); n > maxStringBytes-b.b.Len() {
		tooLong(L, "string.gsub")
	} else {
		growBuilder(&b.b, &b.tk, n)
	}
	for {
		i := strings.IndexByte(repl, '%')
		if i < 0 {
			b.write(repl)
			return
		}
		b.write(repl[:i])
		if i+1 == len(repl) {
			L.RaiseError("%s", "invalid use of '%' in replacement string")
		}
		switch c := repl[i+1]; {
		case c == '%':
			b.write("%")
		case c == '0':
			b.write(s[m.Start():m.End()])
		case c >= '1' && c <= '9':
			cp, err := m.Capture(int(c - '1'))
			if err != nil {
				raiseMatchError(L, err)
			}
			if cp.Position {
				b.write(strconv.Itoa(cp.Start + 1))
			} else {
				b.write(s[cp.Start:cp.End])
			}
		default:
			L.RaiseError("%s", "invalid use of '%' in replacement string")
		}
		repl = repl[i+2:]
	}
}

// expansionSize is the length of repl expanded for the match m holds, up
// to its first invalid item (which expandReplacement then raises).
func expansionSize(b *gsubOut, repl string, m *pattern.Matcher) int {
	n := 0
	for {
		i := strings.IndexByte(repl, '%')
		if i < 0 || i+1 == len(repl) {
			return n + len(repl)
		}
		b.tk.add(i + 16)
		n += i
		switch c := repl[i+1]; {
		case c == '%':
			n++
		case c == '0':
			n += m.End() - m.Start()
		case c >= '1' && c <= '9':
			cp, err := m.Capture(int(c - '1'))
			switch {
			case err != nil:
				return n
			case cp.Position:
				n += len(strconv.Itoa(cp.Start + 1))
			default:
				n += cp.End - cp.Start
			}
		default:
			return n
		}
		repl = repl[i+2:]
	}
}
