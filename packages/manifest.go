package packages

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// A LuaRocks manifest is a Lua file made only of assignments of table
// constructors (repository = {...}, modules = {...}, commands = {...}).
// It is read here as data, never run: no loop, call or concatenation can
// make it allocate without bound, and the size and the nesting depth are
// checked as it is read (a deep nesting cannot exhaust the Go stack).

// Bounds of what a manifest may hold.
var (
	maxManifestBytes    int64 = 64 << 20 // local file or HTTP body
	maxManifestDepth          = 64       // nested tables (a real manifest uses 5)
	maxManifestVersions       = 500000   // versions of all packages together
	// Values kept of the repository table: each costs ~50 bytes, and a
	// 64 MiB manifest of "{}," or "1," took 2.3-2.8 GB (a real one keeps
	// ~5 per version: luarocks.org has ~60,000 versions).
	maxManifestValues = 2 << 20
)

// mtable is a table of a manifest: its fields in order.
type mtable struct {
	keys []any // string, float64 or bool
	vals []any // string, float64, bool, nil or *mtable
}

type manifestParser struct {
	ctx    context.Context
	src    string
	pos    int
	steps  int
	keep   bool // the values read are kept (the repository table), not only checked
	values int  // values kept
}

type manifestError struct {
	line int
	msg  string
}

func (e *manifestError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func (p *manifestParser) fail(format string, args ...any) {
	panic(&manifestError{line: 1 + strings.Count(p.src[:min(p.pos, len(p.src))], "\n"), msg: fmt.Sprintf(format, args...)})
}

// parseManifest reads the global assignments of a manifest.
func parseManifest(ctx context.Context, src string) (globals map[string]any, err error) {
	p := &manifestParser{ctx: ctx, src: src}
	defer func() {
		if r := recover(); r != nil {
			me, ok := r.(*manifestError)
			if !ok {
				panic(r)
			}
			globals, err = nil, me
		}
	}()
	globals = map[string]any{}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return globals, nil
		}
		if p.src[p.pos] == ';' {
			p.pos++
			continue
		}
		save := p.pos
		name := p.name()
		if name == "" || luaKeywords[name] {
			p.pos = save
			p.fail("expected an assignment (name = {...}), found %q", p.peekText())
		}
		p.skipSpace()
		p.expect('=')
		// Only the repository table is used; the others (modules,
		// commands) are checked as data and dropped.
		p.keep = name == "repository"
		if v := p.value(0); p.keep {
			globals[name] = v
		}
	}
}

func (p *manifestParser) tick() {
	p.steps++
	if p.steps&4095 == 0 && p.ctx.Err() != nil {
		p.fail("reading the manifest took too long: %v", p.ctx.Err())
	}
}

func (p *manifestParser) peekText() string {
	end := min(p.pos+20, len(p.src))
	return p.src[p.pos:end]
}

func (p *manifestParser) expect(c byte) {
	p.skipSpace()
	if p.pos >= len(p.src) || p.src[p.pos] != c {
		p.fail("expected %q, found %q", c, p.peekText())
	}
	p.pos++
}

// luaKeywords are Lua's reserved words, which name no variable or field.
var luaKeywords = map[string]bool{
	"and": true, "break": true, "do": true, "else": true, "elseif": true, "end": true,
	"false": true, "for": true, "function": true, "if": true, "in": true, "local": true,
	"nil": true, "not": true, "or": true, "repeat": true, "return": true, "then": true,
	"true": true, "until": true, "while": true,
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameChar(c byte) bool { return isNameStart(c) || (c >= '0' && c <= '9') }

func (p *manifestParser) name() string {
	if p.pos >= len(p.src) || !isNameStart(p.src[p.pos]) {
		return ""
	}
	start := p.pos
	for p.pos < len(p.src) && isNameChar(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

// skipSpace skips blanks and comments.
func (p *manifestParser) skipSpace() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			p.pos++
		case strings.HasPrefix(p.src[p.pos:], "--"):
			p.pos += 2
			if level, ok := p.longBracketOpen(); ok {
				p.longBracketBody(level)
				continue
			}
			// A line comment ends at a newline, "\r" too, as Lua's does.
			if i := strings.IndexAny(p.src[p.pos:], "\n\r"); i >= 0 {
				p.pos += i + 1
			} else {
				p.pos = len(p.src)
			}
		default:
			return
		}
	}
}

// longBracketOpen consumes "[[" or "[==[" and returns its level.
func (p *manifestParser) longBracketOpen() (int, bool) {
	if p.pos >= len(p.src) || p.src[p.pos] != '[' {
		return 0, false
	}
	i := p.pos + 1
	for i < len(p.src) && p.src[i] == '=' {
		i++
	}
	if i < len(p.src) && p.src[i] == '[' {
		level := i - p.pos - 1
		p.pos = i + 1
		return level, true
	}
	return 0, false
}

func (p *manifestParser) longBracketBody(level int) string {
	closer := "]" + strings.Repeat("=", level) + "]"
	i := strings.Index(p.src[p.pos:], closer)
	if i < 0 {
		p.fail("unfinished long string or comment")
	}
	s := p.src[p.pos : p.pos+i]
	p.pos += i + len(closer)
	// As Lua reads it: a newline right after the opening bracket is
	// skipped, and each newline ("\n", "\r", "\r\n" or "\n\r") is "\n".
	if !strings.ContainsRune(s, '\r') {
		return strings.TrimPrefix(s, "\n")
	}
	// newlineAt is the length of the newline at j (0 if none).
	newlineAt := func(j int) int {
		if s[j] != '\n' && s[j] != '\r' {
			return 0
		}
		if j+1 < len(s) && (s[j+1] == '\n' || s[j+1] == '\r') && s[j+1] != s[j] {
			return 2
		}
		return 1
	}
	var b strings.Builder
	j := 0
	if len(s) > 0 {
		j = newlineAt(0)
	}
	for j < len(s) {
		if n := newlineAt(j); n > 0 {
			b.WriteByte('\n')
			j += n
			continue
		}
		b.WriteByte(s[j])
		j++
	}
	return b.String()
}

// value reads a constant or a table constructor.
func (p *manifestParser) value(depth int) any {
	p.tick()
	p.skipSpace()
	if p.pos >= len(p.src) {
		p.fail("unexpected end of the manifest")
	}
	c := p.src[p.pos]
	switch {
	case c == '{':
		if depth >= maxManifestDepth {
			p.fail("tables nested deeper than %d", maxManifestDepth)
		}
		p.pos++
		return p.table(depth + 1)
	case c == '"' || c == '\'':
		return p.quoted(c)
	case c == '[':
		if level, ok := p.longBracketOpen(); ok {
			return p.longBracketBody(level)
		}
	case c == '-' || c == '.' || (c >= '0' && c <= '9'):
		return p.number()
	case isNameStart(c):
		switch n := p.name(); n {
		case "true":
			return true
		case "false":
			return false
		case "nil":
			return nil
		default:
			p.fail("%q: a manifest holds data only (no variables, calls or expressions)", n)
		}
	}
	p.fail("unexpected %q: a manifest holds data only (no variables, calls or expressions)", p.peekText())
	return nil
}

func (p *manifestParser) table(depth int) *mtable {
	t := &mtable{}
	n := 0.0
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			p.fail("unfinished table")
		}
		if p.src[p.pos] == '}' {
			p.pos++
			return t
		}
		var key any
		switch c := p.src[p.pos]; {
		case c == '[' && !strings.HasPrefix(p.src[p.pos:], "[[") && !strings.HasPrefix(p.src[p.pos:], "[="):
			p.pos++
			key = p.value(depth)
			if key == nil {
				p.fail("nil table key")
			}
			if _, ok := key.(*mtable); ok {
				p.fail("table used as a table key")
			}
			p.expect(']')
			p.expect('=')
		case isNameStart(c):
			save := p.pos
			name := p.name()
			p.skipSpace()
			if p.pos < len(p.src) && p.src[p.pos] == '=' && !strings.HasPrefix(p.src[p.pos:], "==") && !luaKeywords[name] {
				p.pos++
				key = name
			} else {
				p.pos = save // a value (true, false, nil) in the list part
			}
		}
		if key == nil {
			n++
			key = n
		}
		if v := p.value(depth); p.keep {
			if p.values++; p.values > maxManifestValues {
				p.fail("more than %d values in the repository table", maxManifestValues)
			}
			t.keys = append(t.keys, key)
			t.vals = append(t.vals, v)
		}
		p.skipSpace()
		if p.pos < len(p.src) && (p.src[p.pos] == ',' || p.src[p.pos] == ';') {
			p.pos++
		} else if p.pos < len(p.src) && p.src[p.pos] != '}' {
			p.fail("expected ',' or '}' in a table, found %q", p.peekText())
		}
	}
}

func (p *manifestParser) quoted(q byte) string {
	p.pos++
	var b strings.Builder
	for {
		if p.pos >= len(p.src) {
			p.fail("unfinished string")
		}
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String()
		case c == '\n' || c == '\r':
			p.fail("unfinished string")
		case c == '\\':
			p.pos++
			if p.pos >= len(p.src) {
				p.fail("unfinished string")
			}
			e := p.src[p.pos]
			p.pos++
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'v':
				b.WriteByte('\v')
			case '\\', '"', '\'', '\n':
				b.WriteByte(e)
			default:
				if e < '0' || e > '9' {
					p.fail("invalid escape \\%c in a string", e)
				}
				v := int(e - '0')
				for i := 0; i < 2 && p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9'; i++ {
					v = v*10 + int(p.src[p.pos]-'0')
					p.pos++
				}
				if v > 255 {
					p.fail("escape \\%d out of range", v)
				}
				b.WriteByte(byte(v))
			}
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

func (p *manifestParser) number() float64 {
	start := p.pos
	neg := false
	if p.src[p.pos] == '-' {
		neg = true
		p.pos++
		p.skipSpace()
		start = p.pos
	}
	// A numeral starts with a digit or a dot: "-inf" or "-nan" is no
	// constant (Lua reads the negation of a variable), though
	// strconv.ParseFloat takes them.
	if start >= len(p.src) || !(p.src[start] == '.' || (p.src[start] >= '0' && p.src[start] <= '9')) {
		p.fail("unexpected %q: a manifest holds data only (no variables, calls or expressions)", p.peekText())
	}
	// Decided once: lowercasing the rest of the manifest for every signed
	// exponent made a manifest of "1e+5"s take minutes.
	hex := len(p.src)-start >= 2 && p.src[start] == '0' && p.src[start+1]|0x20 == 'x'
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if isNameChar(c) || c == '.' || ((c == '+' || c == '-') && p.pos > start && (p.src[p.pos-1]|0x20) == 'e' && !hex) {
			p.pos++
			continue
		}
		break
	}
	text := p.src[start:p.pos]
	var v float64
	var err error
	if hex {
		var u uint64
		u, err = strconv.ParseUint(text[2:], 16, 64)
		v = float64(u)
	} else {
		v, err = strconv.ParseFloat(text, 64)
	}
	// strconv takes "0_1" (a Go literal); Lua has no '_' in numerals.
	if err != nil || text == "" || strings.ContainsRune(text, '_') {
		p.fail("bad number %q", text)
	}
	if neg {
		v = -v
	}
	return v
}

// versionKey is a version split once into parts for sorting.
type versionKey []versionPart

// versionPart is one part of a version: a number (digits, the value of
// its leading digits, as fmt.Sscanf("%d") reads them, of any length), or
// a word.
type versionPart struct {
	digits string // the number's digits without leading zeros
	isNum  bool
	s      string
}

func parseVersion(v string) versionKey {
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' })
	key := make(versionKey, len(fields))
	for i, f := range fields {
		key[i] = versionPart{s: f}
		// Like fmt.Sscanf("%d"): an optional sign and leading digits.
		j := 0
		if j < len(f) && (f[j] == '+' || f[j] == '-') {
			j++
		}
		k := j
		for k < len(f) && f[k] >= '0' && f[k] <= '9' {
			k++
		}
		if k > j {
			key[i].digits, key[i].isNum = strings.TrimLeft(f[j:k], "0"), true
		}
	}
	return key
}

// rank orders the kinds of part: a missing part ("1.0" against "1.0.1")
// before a number, a number before a word ("scm", "dev"). Comparing a
// number with a word by their text (as before) was no order: "+5" < "/"
// < "3" though 3 < 5, and a number past int64 counted as a word.
func (p versionPart) rank() int {
	switch {
	case p.isNum:
		return 1
	case p.s == "":
		return 0
	}
	return 2
}

func compareVersionKeys(a, b versionKey) int {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y versionPart
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if c := x.rank() - y.rank(); c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		if x.isNum {
			if c := len(x.digits) - len(y.digits); c != 0 {
				if c < 0 {
					return -1
				}
				return 1
			}
			if c := strings.Compare(x.digits, y.digits); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(x.s, y.s); c != 0 {
			return c
		}
	}
	return 0
}
