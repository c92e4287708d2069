package embedded

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// strFormat is string.format with C's conversions, as Lua 5.1 defines
// them (gopher-lua handed the format to Go's fmt: "%d" with no argument
// gave "%!d(MISSING)", "%g" gave Go's shortest form, Go-only verbs worked).
// Differences from Lua 5.1, from Lua 5.4: widths and precisions have at
// most two digits ("invalid conversion"), %s converts any value as
// tostring does (honouring __tostring), and %d of a number outside the
// 64-bit range is an error rather than undefined behaviour.
//
// The result is capped at maxStringBytes: %s and %q check before they
// write (a %q of NULs is four times as long as its argument), and the
// work polls the call's limits.
func strFormat(L *lua.LState) int {
	f := argString(L, 1)
	arg := 1
	var b strings.Builder
	tk := workTicker{L: L}
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			j := strings.IndexByte(f[i:], '%')
			if j < 0 {
				j = len(f) - i
			}
			if j > maxStringBytes-b.Len() {
				tooLong(L, "string.format")
			}
			writePolled(&b, &tk, f[i:i+j])
			i += j - 1
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			b.WriteByte('%')
			continue
		}
		start := i - 1
		spec, n, ok := parseSpec(f[i:])
		i += n
		if !ok || i >= len(f) {
			L.RaiseError("invalid conversion '%s' to 'format'", f[start:min(len(f), i+1)])
		}
		spec.verb = f[i]
		arg++
		tk.add(64)
		if !formatOne(L, &b, spec, arg) {
			L.RaiseError("invalid conversion '%s' to 'format'", f[start:i+1])
		}
		if b.Len() > maxStringBytes {
			tooLong(L, "string.format")
		}
	}
	L.Push(lua.LString(b.String()))
	return 1
}

type fmtSpec struct {
	flags       string
	width, prec int // -1: absent
	verb        byte
}

// parseSpec reads flags, width and precision after a '%': at most two
// digits each, as Lua 5.4 requires.
func parseSpec(s string) (spec fmtSpec, n int, ok bool) {
	spec.width, spec.prec = -1, -1
	for n < len(s) && strings.IndexByte("-+ #0", s[n]) >= 0 {
		n++
	}
	spec.flags = s[:n]
	if len(spec.flags) > 5 {
		return spec, n, false
	}
	readNum := func() (int, bool) {
		v, d := 0, 0
		for n < len(s) && isDigit(s[n]) {
			v = v*10 + int(s[n]-'0')
			n++
			d++
		}
		return v, d <= 2
	}
	if n < len(s) && isDigit(s[n]) {
		if spec.width, ok = readNum(); !ok {
			return spec, n, false
		}
	}
	if n < len(s) && s[n] == '.' {
		n++
		if spec.prec, ok = readNum(); !ok {
			return spec, n, false
		}
	}
	return spec, n, true
}

func (s fmtSpec) has(flag byte) bool { return strings.IndexByte(s.flags, flag) >= 0 }

// formatOne writes argument arg converted by spec; false for an unknown
// conversion.
func formatOne(L *lua.LState, b *strings.Builder, spec fmtSpec, arg int) bool {
	switch spec.verb {
	case 'c':
		pad(b, spec, string([]byte{byte(argInt(L, arg))}), false)
	case 'd', 'i':
		n := argInteger(L, arg)
		b.WriteString(fmt.Sprintf(goSpec(spec, 'd'), n))
	case 'u', 'o', 'x', 'X':
		// Unsigned: C ignores the sign flags; negative numbers wrap.
		n := argInteger(L, arg)
		spec.flags = strings.NewReplacer("+", "", " ", "").Replace(spec.flags)
		if n == 0 && spec.verb != 'o' {
			spec.flags = strings.ReplaceAll(spec.flags, "#", "") // C writes 0, not 0x0
		}
		verb := spec.verb
		if verb == 'u' {
			verb = 'd'
		}
		b.WriteString(fmt.Sprintf(goSpec(spec, verb), uint64(n)))
	case 'e', 'E', 'f', 'F', 'g', 'G':
		x := argNumber(L, arg)
		if math.IsInf(x, 0) || math.IsNaN(x) {
			s := formatG(x, 1, false)
			if x > 0 || (math.IsNaN(x) && !math.Signbit(x)) {
				if spec.has('+') {
					s = "+" + s
				} else if spec.has(' ') {
					s = " " + s
				}
			}
			if spec.verb == 'E' || spec.verb == 'F' || spec.verb == 'G' {
				s = strings.ToUpper(s)
			}
			pad(b, spec, s, false)
			return true
		}
		if spec.verb == 'g' || spec.verb == 'G' {
			prec := spec.prec
			if prec < 0 {
				prec = 6
			}
			s := formatG(x, prec, spec.has('#'))
			if spec.verb == 'G' {
				s = strings.ToUpper(s)
			}
			if !math.Signbit(x) {
				if spec.has('+') {
					s = "+" + s
				} else if spec.has(' ') {
					s = " " + s
				}
			}
			pad(b, spec, s, true)
			return true
		}
		if spec.prec < 0 {
			spec.prec = 6
		}
		b.WriteString(fmt.Sprintf(goSpec(spec, spec.verb), x))
	case 'q':
		quoteString(L, b, argString(L, arg))
	case 's':
		if arg > L.GetTop() {
			L.ArgError(arg, "no value")
		}
		s := L.ToStringMeta(L.Get(arg)).String()
		if n, ok := L.Get(arg).(lua.LNumber); ok {
			s = fmtNumber(n)
		}
		if spec.prec >= 0 && spec.prec < len(s) {
			s = s[:spec.prec]
		}
		if max(len(s), spec.width) > maxStringBytes-b.Len() {
			tooLong(L, "string.format")
		}
		if len(s) > pollWork && len(s) >= spec.width {
			tk := workTicker{L: L}
			writePolled(b, &tk, s) // in pieces, polling (see writePolled)
		} else {
			pad(b, spec, s, false)
		}
	default:
		return false
	}
	return true
}

// argInteger is a number argument as a 64-bit integer (truncated toward
// zero, as Lua 5.1's cast does); out of range is an error.
func argInteger(L *lua.LState, n int) int64 {
	x := argNumber(L, n)
	if math.IsNaN(x) || x >= 1<<63 || x < -(1<<63) {
		L.ArgError(n, "number has no integer representation")
	}
	return int64(x)
}

// goSpec is the Go format of spec with the given verb (Go's flags, width
// and precision mean what C's do for integers and %e/%f).
func goSpec(spec fmtSpec, verb byte) string {
	var b strings.Builder
	b.WriteByte('%')
	b.WriteString(spec.flags)
	if spec.width >= 0 {
		b.WriteString(strconv.Itoa(spec.width))
	}
	if spec.prec >= 0 {
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(spec.prec))
	}
	b.WriteByte(verb)
	return b.String()
}

// pad writes s padded to spec's width in bytes (as C counts): left-aligned
// with '-', else with spaces, or zeros after the sign for a number with
// '0'.
func pad(b *strings.Builder, spec fmtSpec, s string, numeric bool) {
	fill := spec.width - len(s)
	switch {
	case fill <= 0:
		b.WriteString(s)
	case spec.has('-'):
		b.WriteString(s)
		b.WriteString(strings.Repeat(" ", fill))
	case numeric && spec.has('0'):
		sign := 0
		if s != "" && (s[0] == '-' || s[0] == '+' || s[0] == ' ') {
			sign = 1
		}
		b.WriteString(s[:sign])
		b.WriteString(strings.Repeat("0", fill))
		b.WriteString(s[sign:])
	default:
		b.WriteString(strings.Repeat(" ", fill))
		b.WriteString(s)
	}
}

// quoteEscapes are the escapes %q writes for the bytes that need one.
var quoteEscapes = [256]string{'"': `\"`, '\\': `\\`, '\n': "\\\n", '\r': `\r`, 0: `\000`}

// quoteString writes s as Lua 5.1's %q does: a string literal that reads
// back as s. Its length is counted first: past maxStringBytes it is an
// error before anything is written (it was checked after, when a string
// of NULs had been written four times as long). Both passes poll the
// call's limits.
func quoteString(L *lua.LState, b *strings.Builder, s string) {
	n := 2 + len(s)
	inPieces(L, len(s), func(start, end int) {
		for _, c := range []byte(s[start:end]) {
			n += int(quoteExtra[c])
		}
	})
	if n > maxStringBytes-b.Len() {
		tooLong(L, "string.format")
	}
	b.Grow(n)
	b.WriteByte('"')
	run := 0 // s[run:i] is yet to be written
	inPieces(L, len(s), func(start, end int) {
		for i := start; i < end; i++ {
			if quoteExtra[s[i]] != 0 {
				b.WriteString(s[run:i])
				b.WriteString(quoteEscapes[s[i]])
				run = i + 1
			}
		}
	})
	b.WriteString(s[run:])
	b.WriteByte('"')
}

// quoteExtra is how much longer than its byte each escape is.
var quoteExtra = func() (t [256]uint8) {
	for c, e := range quoteEscapes {
		if e != "" {
			t[c] = uint8(len(e) - 1)
		}
	}
	return t
}()
