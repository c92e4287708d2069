// Package pattern implements Lua string patterns (the matcher behind
// string.find, match, gmatch and gsub) on bytes, with the semantics of
// Lua 5.4's lstrlib: character classes of the C locale (%a %c %d %g %l %p
// %s %u %w %x and their upper-case complements, plus Lua 5.1's %z for
// "\0"), '.', sets, the quantifiers * + - ?, anchors, captures, position
// captures, back references, %b and %f.
//
// Like Lua, the matcher reports a malformed pattern only when matching
// reaches the malformed part ("a[" never fails on a subject without an
// "a"), bounds its recursion (MaxDepth, "pattern too complex") and the
// number of captures (MaxCaptures). Unlike Lua's, it can be stopped: a
// Matcher polls its Context every few thousand steps.
//
// Use: compile once with Compile, then call Matcher.Find as often as
// needed; a Matcher is reusable and does not allocate per match.
package pattern

import (
	"context"
	"fmt"
	"strings"
	"unsafe"
)

const (
	// MaxCaptures is the most captures one match may hold (LUA_MAXCAPTURES).
	MaxCaptures = 32
	// MaxDepth bounds the matcher's recursion (MAXCCALLS in lstrlib.c).
	MaxDepth = 200
	// pollInterval is about how many steps (match calls and bytes
	// scanned by a quantifier) pass between two looks at the Context.
	pollInterval = 4096
)

// Error is a pattern error; its message is Lua 5.4's.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

var (
	errEndsWithPercent = &Error{"malformed pattern (ends with '%')"}
	errMissingBracket  = &Error{"malformed pattern (missing ']')"}
	errFrontier        = &Error{"missing '[' after '%f' in pattern"}
	errBalance         = &Error{"malformed pattern (missing arguments to '%b')"}
	errInvalidCapture  = &Error{"invalid pattern capture"}
	errUnfinished      = &Error{"unfinished capture"}
	errTooManyCaptures = &Error{"too many captures"}
	errTooComplex      = &Error{"pattern too complex"}
)

func errCaptureIndex(l int) *Error {
	return &Error{fmt.Sprintf("invalid capture index %%%d", l)}
}

type opcode uint8

const (
	opChar     opcode = iota // a single-byte class, optionally quantified
	opOpen                   // '('
	opPosition               // '()'
	opClose                  // ')'
	opEnd                    // '$' at the end of the pattern
	opBalance                // %bxy
	opFrontier               // %f[set]
	opBackref                // %0-%9
	opError                  // the malformed rest of the pattern
)

// item is one element of a compiled pattern (24 bytes: a long pattern is
// compiled into a proportionate number of them).
type item struct {
	// set is what opChar and opFrontier match; shared (byteSets,
	// classSets) except for bracket sets.
	set *charSet
	// guard is the index of the item whose set the first byte of any
	// match of the items from this one on is in (this one, or the first
	// after capture marks), or -1 when there is no such item.
	guard  int32
	op     opcode
	rep    byte // opChar: 0, '*', '+', '-' or '?'
	a, b   byte // opBalance: the delimiters; opBackref: the digit; opChar: the only byte of a single set
	single bool // opChar: the set has one byte (a)
	full   bool // opChar: the set has every byte ('.')
}

// needsByte reports whether a match of the item needs a byte of its set.
func (it *item) needsByte() bool {
	return it.op == opChar && (it.rep == 0 || it.rep == '+')
}

// isMark reports whether the item is a capture mark: it consumes nothing,
// and whether it raises an error does not depend on the position.
func (it *item) isMark() bool {
	return it.op == opOpen || it.op == opPosition || it.op == opClose
}

// A Pattern is a compiled pattern. It is immutable and may be shared.
type Pattern struct {
	items    []item
	err      *Error // raised by the final opError item
	anchored bool
	// Every match starts with prefix (when set) or else with a byte of
	// first (when not nil): positions that cannot start a match are
	// skipped without trying them (see find).
	prefix  string
	first   *charSet
	literal bool // the pattern is prefix and nothing else
	single  bool // the pattern is one opChar item
	sets    int  // bracket sets made for this pattern (not shared)
}

// Compile compiles pat. When anchor is true a leading '^' anchors the
// pattern at the start position (string.find, match, gsub); gmatch passes
// false, which makes '^' an ordinary character (as in Lua). Compile never
// fails: errors are reported by Find when matching reaches them.
func Compile(pat string, anchor bool) *Pattern {
	p, _ := CompileContext(nil, pat, anchor)
	return p
}

// CompileContext is Compile for a pattern that may be long: it polls ctx
// (as a Matcher does; nil: never) every pollInterval items, and returns
// ctx's error once it is done. A pattern takes up to about 40 bytes per
// byte of its text (see MemSize).
func CompileContext(ctx context.Context, pat string, anchor bool) (*Pattern, error) {
	p := &Pattern{}
	if anchor && len(pat) > 0 && pat[0] == '^' {
		p.anchored = true
		pat = pat[1:]
	}
	m := Matcher{Context: ctx, steps: compilePollInterval}
	var cm compiler
	// Items are gathered in blocks and copied once at the end: growing one
	// slice copied megabytes at a time, which kept a long compilation from
	// polling for tens of milliseconds.
	var blocks [][]item
	cur := make([]item, 0, min(len(pat), itemBlock))
	for i := 0; i < len(pat) && p.err == nil; {
		var it item
		var err *Error
		i, err = cm.compileItem(pat, i, &it)
		if err != nil {
			it = item{op: opError}
			p.err = err
		}
		if len(cur) == cap(cur) {
			blocks = append(blocks, cur)
			cur = make([]item, 0, itemBlock)
		}
		cur = append(cur, it)
		if ctx != nil {
			if stop := m.tickCompile(); stop != nil {
				return nil, stop
			}
		}
	}
	p.items = cur
	if len(blocks) > 0 {
		p.items = make([]item, 0, len(blocks)*itemBlock+len(cur))
		for _, b := range append(blocks, cur) {
			p.items = append(p.items, b...)
			if ctx != nil {
				m.steps = 1 // poll after each block
				if stop := m.tickCompile(); stop != nil {
					return nil, stop
				}
			}
		}
	}
	p.sets = cm.made
	p.analyse()
	return p, nil
}

// compilePollInterval is how many items CompileContext compiles between
// two looks at its Context (~0.2 ms); itemBlock is how many it gathers in
// one block.
const (
	compilePollInterval = 1024
	itemBlock           = 4096
)

// compiler makes the bracket sets of one pattern: equal sets are one
// (a long pattern of "[a]" items made one allocation per item, whose
// collection kept the compilation from polling for 50-90 ms), allocated
// in slabs.
type compiler struct {
	sets map[charSet]*charSet
	slab []charSet
	made int // sets made
}

// maxInterned bounds the sets the map of a compilation holds (a pattern of
// many different sets is not worth it).
const maxInterned = 1 << 12

func (c *compiler) set(s charSet) *charSet {
	if p, ok := c.sets[s]; ok {
		return p
	}
	if len(c.slab) == cap(c.slab) {
		// Small first (most patterns have a set or two), up to 8 KiB.
		c.slab = make([]charSet, 0, min(max(2*cap(c.slab), 2), 256))
	}
	c.slab = append(c.slab, s)
	p := &c.slab[len(c.slab)-1]
	c.made++
	if c.sets == nil {
		c.sets = map[charSet]*charSet{}
	}
	if len(c.sets) < maxInterned {
		c.sets[s] = p
	}
	return p
}

// MemSize is about how many bytes p holds: its items and its own bracket
// sets (the memory walk of the embedded engine counts it for a pattern a
// gmatch iterator keeps).
func (p *Pattern) MemSize() int64 {
	return int64(cap(p.items))*int64(unsafe.Sizeof(item{})) + int64(p.sets)*int64(unsafe.Sizeof(charSet{})) +
		int64(len(p.prefix)) + int64(unsafe.Sizeof(Pattern{}))
}

// compileItem compiles the item at pat[i:] into it and returns where the
// next item starts.
func (cm *compiler) compileItem(pat string, i int, it *item) (int, *Error) {
	more := func(n int) bool { return i+n < len(pat) }
	switch c := pat[i]; {
	case c == '(' && more(1) && pat[i+1] == ')':
		it.op = opPosition
		return i + 2, nil
	case c == '(':
		it.op = opOpen
		return i + 1, nil
	case c == ')':
		it.op = opClose
		return i + 1, nil
	case c == '$' && i+1 == len(pat):
		it.op = opEnd
		return i + 1, nil
	case c == '%' && more(1) && pat[i+1] == 'b':
		if !more(3) {
			return 0, errBalance
		}
		it.op, it.a, it.b = opBalance, pat[i+2], pat[i+3]
		return i + 4, nil
	case c == '%' && more(1) && pat[i+1] == 'f':
		i += 2
		if i >= len(pat) || pat[i] != '[' {
			return 0, errFrontier
		}
		end, err := classEnd(pat, i)
		if err != nil {
			return 0, err
		}
		it.op, it.set = opFrontier, cm.set(bracketSet(pat, i, end-1))
		return end, nil
	case c == '%' && more(1) && isDigit(pat[i+1]):
		it.op, it.a = opBackref, pat[i+1]
		return i + 2, nil
	}
	end, err := classEnd(pat, i)
	if err != nil {
		return 0, err
	}
	it.op = opChar
	switch pat[i] {
	case '.':
		it.set = &anyByte
	case '%':
		it.set = &classSets[pat[i+1]]
	case '[':
		it.set = cm.set(bracketSet(pat, i, end-1))
	default:
		it.set = &byteSets[pat[i]]
	}
	it.a, it.single = it.set.single()
	it.full = it.set.full()
	if end < len(pat) && strings.IndexByte("*+-?", pat[end]) >= 0 {
		it.rep = pat[end]
		end++
	}
	return end, nil
}

// classEnd returns the end of the single-byte class at pat[i:] ("x", "%x"
// or "[set]").
func classEnd(pat string, i int) (int, *Error) {
	c := pat[i]
	i++
	switch c {
	case '%':
		if i >= len(pat) {
			return 0, errEndsWithPercent
		}
		return i + 1, nil
	case '[':
		if i < len(pat) && pat[i] == '^' {
			i++
		}
		// The first byte of a set is a member even when it is ']'.
		for {
			if i >= len(pat) {
				return 0, errMissingBracket
			}
			c := pat[i]
			i++
			if c == '%' && i < len(pat) {
				i++ // an escaped byte, '%]' included
			}
			if i < len(pat) && pat[i] == ']' {
				return i + 1, nil
			}
		}
	}
	return i, nil
}

// bracketSet returns the set pat[open:close+1] ("[...]") matches.
func bracketSet(pat string, open, close int) charSet {
	var set charSet
	negate := pat[open+1] == '^'
	i := open + 1
	if negate {
		i++
	}
	for ; i < close; i++ {
		switch {
		case pat[i] == '%':
			i++
			set.union(&classSets[pat[i]])
		case pat[i+1] == '-' && i+2 < close:
			set.addRange(pat[i], pat[i+2])
			i += 2
		default:
			set.add(pat[i])
		}
	}
	if negate {
		set.invert()
	}
	return set
}

// analyse finds what matches start with.
func (p *Pattern) analyse() {
	items := p.items
	p.single = len(items) == 1 && items[0].op == opChar
	for i := len(items) - 1; i >= 0; i-- {
		it := &items[i]
		switch {
		case it.needsByte():
			it.guard = int32(i)
		case it.isMark() && i+1 < len(items):
			it.guard = items[i+1].guard
		default:
			it.guard = -1
		}
	}
	n := 0
	for n < len(items) && items[n].isMark() {
		n++
	}
	lead := n
	var prefix []byte
	for n < len(items) && items[n].op == opChar && items[n].rep == 0 && items[n].single {
		prefix = append(prefix, items[n].a)
		n++
	}
	p.prefix = string(prefix)
	p.literal = lead == 0 && n == len(items)
	if len(prefix) == 0 && len(items) > 0 && items[0].guard >= 0 {
		p.first = items[items[0].guard].set
	}
}

// Anchored reports whether the pattern only matches at the start position.
func (p *Pattern) Anchored() bool { return p.anchored }

// OneByte reports whether every match of the pattern is exactly one byte,
// wherever it stands, and every byte of its set matches: an unanchored
// class item without quantifier ("a", ".", "%a", "[ACGT]").
func (p *Pattern) OneByte() bool { return p.single && !p.anchored && p.items[0].rep == 0 }

// HasByte reports whether c matches a OneByte pattern.
func (p *Pattern) HasByte(c byte) bool { return p.items[0].set.has(c) }

const (
	capUnfinished = -1
	capPosition   = -2
)

type capture struct{ init, len int }

// Capture is one capture of a match: the substring s[Start:End], or for a
// position capture "()" the position Start (Position true, End == Start).
type Capture struct {
	Start, End int
	Position   bool
}

// A Matcher runs patterns. The zero value is ready to use; it may be reused
// for any number of Find calls but not by two goroutines at once.
type Matcher struct {
	// Context, when not nil, is polled every few thousand steps: once it is
	// done, Find stops and returns its error.
	Context context.Context

	p          *Pattern
	src        string
	level      int // captures opened
	depth      int // recursion left
	steps      int // steps left until the next poll
	start, end int
	caps       [MaxCaptures]capture
}

type stopped struct{ err error }

// Find looks for the first match of p in s that starts at or after byte
// offset init (only at init when p is anchored), 0 <= init <= len(s). It
// reports whether there is one; Start, End and Capture then describe it.
// The error is a *Error for a malformed pattern, or the Context's error.
func (m *Matcher) Find(p *Pattern, s string, init int) (bool, error) {
	m.level = 0
	if init < 0 || init > len(s) {
		return false, nil
	}
	switch {
	case p.literal && len(s)-init <= indexPiece:
		return m.findLiteral(p, s, init), nil // no poll on a small subject
	case p.single && len(s)-init <= indexPiece:
		return m.findSingle(p, s, init), nil
	case p.literal || p.single:
		return m.findSimple(p, s, init)
	}
	return m.find(p, s, init)
}

// findSimple is findLiteral or findSingle on a large subject, where they
// poll the Context.
func (m *Matcher) findSimple(p *Pattern, s string, init int) (found bool, err error) {
	if m.steps <= 0 {
		m.steps = pollInterval
	}
	defer func() {
		if err = stopError(recover()); err != nil {
			found = false
		}
	}()
	if p.literal {
		return m.findLiteral(p, s, init), nil
	}
	return m.findSingle(p, s, init), nil
}

// Start returns the byte offset where the last match starts.
func (m *Matcher) Start() int { return m.start }

// End returns the byte offset where the last match ends.
func (m *Matcher) End() int { return m.end }

// NumCaptures returns how many captures the last match has (0 when the
// pattern has none).
func (m *Matcher) NumCaptures() int { return m.level }

// Capture returns capture i (from 0) of the last match. When the match has
// no captures, capture 0 is the whole match (as gsub, gmatch and match see
// it). It fails like Lua for an index past the captures and for a capture
// that was opened but never closed.
func (m *Matcher) Capture(i int) (Capture, error) {
	if i < 0 || i >= m.level {
		if i != 0 {
			return Capture{}, errCaptureIndex(i + 1)
		}
		return Capture{Start: m.start, End: m.end}, nil
	}
	switch c := m.caps[i]; c.len {
	case capUnfinished:
		return Capture{}, errUnfinished
	case capPosition:
		return Capture{Start: c.init, End: c.init, Position: true}, nil
	default:
		return Capture{Start: c.init, End: c.init + c.len}, nil
	}
}

func (m *Matcher) findLiteral(p *Pattern, s string, init int) bool {
	at := init
	if p.anchored {
		if !strings.HasPrefix(s[at:], p.prefix) {
			return false
		}
	} else {
		j := m.index(s[at:], p.prefix)
		if j < 0 {
			return false
		}
		at += j
	}
	m.start, m.end = at, at+len(p.prefix)
	return true
}

// findSingle matches a pattern of one quantified class without recursion.
func (m *Matcher) findSingle(p *Pattern, s string, init int) bool {
	it := &p.items[0]
	at := init
	end := at
	switch it.rep {
	case 0, '+':
		switch {
		case p.anchored:
			if at == len(s) || !it.set.has(s[at]) {
				return false
			}
		case it.single:
			j := strings.IndexByte(s[at:], it.a)
			if j < 0 {
				return false
			}
			at += j
		case len(s)-at > indexPiece:
			at = m.skip(it.set, s, at)
			if at == len(s) {
				return false
			}
		default:
			for at < len(s) && !it.set.has(s[at]) {
				at++
			}
			if at == len(s) {
				return false
			}
		}
		end = at + 1
		if it.rep == '+' {
			end = m.span(it, s, end)
		}
	case '*':
		end = m.span(it, s, at)
	case '?':
		if at < len(s) && it.set.has(s[at]) {
			end++
		}
	}
	m.start, m.end = at, end
	return true
}

// span returns the end of the run of bytes of it's set from s[i].
func (m *Matcher) span(it *item, s string, i int) int {
	if it.full {
		return len(s)
	}
	if len(s)-i > indexPiece {
		return m.spanLong(it, s, i)
	}
	for i < len(s) && it.set.has(s[i]) {
		i++
	}
	return i
}

// spanLong is span in pieces counted as steps: a run through 128 MiB is
// long. Only a subject over indexPiece gets here (findSingle calls span
// without recovering a stop on a smaller one).
func (m *Matcher) spanLong(it *item, s string, i int) int {
	for {
		end := min(i+pollInterval, len(s))
		for i < end && it.set.has(s[i]) {
			i++
		}
		if i < end || end == len(s) {
			return i
		}
		m.tick(pollInterval)
	}
}

func (m *Matcher) find(p *Pattern, s string, init int) (found bool, err error) {
	m.p, m.src = p, s
	if m.steps <= 0 { // a new Matcher; later Finds go on counting, so
		// that many short finds (gsub's, gmatch's) poll too
		m.steps = pollInterval
	}
	defer func() {
		m.p, m.src = nil, "" // keep neither alive
		if r := recover(); r != nil {
			switch e := r.(type) {
			case *Error:
				err = e
			case stopped:
				err = e.err
			default:
				panic(r)
			}
			found = false
		}
	}()
	// The first attempt is made wherever it starts: a match of the
	// pattern first crosses capture marks (which raise their errors, if
	// any, wherever they are tried), then needs the prefix or a byte of
	// first. Once the first attempt failed without an error, positions
	// that do not hold those fail the same way and are skipped.
	for at := init; ; {
		m.level = 0
		m.depth = MaxDepth
		if e := m.match(at, 0); e >= 0 {
			m.start, m.end = at, e
			return true, nil
		}
		if p.anchored || at == len(s) {
			return false, nil
		}
		at++
		if p.prefix != "" {
			j := m.index(s[at:], p.prefix)
			if j < 0 {
				return false, nil
			}
			at += j
		} else if p.first != nil {
			if len(s)-at > indexPiece {
				at = m.skip(p.first, s, at)
			} else {
				for at < len(s) && !p.first.has(s[at]) {
					at++
				}
			}
			if at == len(s) {
				return false, nil
			}
		}
	}
}

// indexPiece is how much of the subject one strings.Index call searches
// (a few milliseconds at worst: a long needle of repeated bytes makes
// strings.Index fall back to Rabin-Karp, ~3 ns a byte here).
const indexPiece = 1 << 20

// Index is strings.Index(s, sub), searched in pieces with a poll of the
// Context after each: a search of a large subject stops once the Context
// is done (then Index returns its error).
func (m *Matcher) Index(s, sub string) (i int, err error) {
	if len(s) <= indexPiece {
		return strings.Index(s, sub), nil
	}
	if m.steps <= 0 {
		m.steps = pollInterval
	}
	defer func() {
		if err = stopError(recover()); err != nil {
			i = -1
		}
	}()
	return m.index(s, sub), nil
}

// stopError is the error of a stop the polling raised (r, recovered), or
// nil when there was none; another panic goes on.
func stopError(r any) error {
	if r == nil {
		return nil
	}
	st, ok := r.(stopped)
	if !ok {
		panic(r)
	}
	return st.err
}

// index is strings.Index(s, sub) in pieces of indexPiece (or len(sub))
// starting positions, counting each piece as steps.
func (m *Matcher) index(s, sub string) int {
	if len(s) <= indexPiece {
		return strings.Index(s, sub)
	}
	piece := max(indexPiece, len(sub))
	for off := 0; ; off += piece {
		end := min(off+piece+len(sub)-1, len(s))
		if j := strings.Index(s[off:end], sub); j >= 0 {
			return off + j
		}
		if end == len(s) {
			return -1
		}
		m.tick(piece)
	}
}

// skip returns the first position from at on whose byte is in set, or
// len(s), counting the bytes passed as steps.
func (m *Matcher) skip(set *charSet, s string, at int) int {
	for at < len(s) {
		from, end := at, min(at+pollInterval, len(s))
		for at < end && !set.has(s[at]) {
			at++
		}
		m.tick(at - from)
		if at < end {
			break
		}
	}
	return at
}

// tickCompile counts one compiled item and polls the Context when it is
// time, returning its error (or a Poller's) instead of panicking.
func (m *Matcher) tickCompile() (err error) {
	if m.steps--; m.steps > 0 {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			s, ok := r.(stopped)
			if !ok {
				panic(r)
			}
			err = s.err
		}
	}()
	m.poll()
	return nil
}

// tick counts n steps and polls the Context when it is time.
func (m *Matcher) tick(n int) {
	m.steps -= n
	if m.steps <= 0 {
		m.poll()
	}
}

func (m *Matcher) poll() {
	m.steps = pollInterval
	if m.Context == nil {
		return
	}
	var err error
	if p, ok := m.Context.(Poller); ok {
		err = p.Poll()
	} else {
		err = m.Context.Err()
	}
	if err != nil {
		panic(stopped{err})
	}
}

// Poller is a Context that wants to run its own checks when polled (the
// embedded engine's call context checks the call's CPU and memory limits
// there); Poll returns what Err would once the context is done.
type Poller interface {
	Poll() error
}

// enter accounts for one more level of recursion, as lstrlib's match does
// on entry.
func (m *Matcher) enter() {
	if m.depth == 0 {
		panic(errTooComplex)
	}
	m.depth--
	m.tick(1)
}

// match matches items[i:] at s[at:] and returns the end of the match, or
// -1. It recurses exactly where lstrlib's match does (captures, '?', '*',
// '+', '-'), so that MaxDepth fails the same patterns as Lua.
func (m *Matcher) match(at, i int) int {
	m.enter()
	items, s := m.p.items, m.src
loop:
	for i < len(items) {
		it := &items[i]
		switch it.op {
		case opChar:
			if at < len(s) && it.set.has(s[at]) {
				switch it.rep {
				case 0:
					at++
					i++
					continue
				case '?':
					if e := m.match(at+1, i+1); e >= 0 {
						at = e
						break loop
					}
					i++
					continue
				case '+':
					at = m.maxExpand(at+1, i)
				case '*':
					at = m.maxExpand(at, i)
				default: // '-'
					at = m.minExpand(at, i)
				}
				break loop
			}
			if it.rep == 0 || it.rep == '+' {
				at = -1
				break loop
			}
			i++ // zero repetitions
		case opOpen:
			at = m.startCapture(at, i+1, capUnfinished)
			break loop
		case opPosition:
			at = m.startCapture(at, i+1, capPosition)
			break loop
		case opClose:
			at = m.endCapture(at, i+1)
			break loop
		case opEnd:
			if at != len(s) {
				at = -1
			}
			break loop
		case opBalance:
			if at = m.balance(at, it.a, it.b); at < 0 {
				break loop
			}
			i++
		case opFrontier:
			var prev, cur byte // "\0" before the start and at the end
			if at > 0 {
				prev = s[at-1]
			}
			if at < len(s) {
				cur = s[at]
			}
			if it.set.has(prev) || !it.set.has(cur) {
				at = -1
				break loop
			}
			i++
		case opBackref:
			if at = m.backref(at, it.a); at < 0 {
				break loop
			}
			i++
		default: // opError
			panic(m.p.err)
		}
	}
	m.depth++
	return at
}

// maxExpand matches items[i] (a class with '*' or '+') as often as possible
// from at, then gives back one byte at a time until the rest matches.
func (m *Matcher) maxExpand(at, i int) int {
	items, s := m.p.items, m.src
	n := m.span(&items[i], s, at)
	m.tick(n - at)
	if m.depth == 0 { // the first attempt below would fail so
		panic(errTooComplex)
	}
	next := i + 1
	switch {
	case next == len(items):
		return n
	case items[next].op == opEnd:
		if n == len(s) {
			return n
		}
		return -1
	}
	// The attempt at n raises the errors the rest raises before its first
	// byte; then only positions holding a byte the rest needs are tried.
	if e := m.match(n, next); e >= 0 {
		return e
	}
	g := items[next].guard
	switch {
	case g < 0:
		for k := n - 1; k >= at; k-- {
			if e := m.match(k, next); e >= 0 {
				return e
			}
		}
	case items[g].single:
		c := items[g].a
		for k := n; k > at; {
			j := strings.LastIndexByte(s[at:k], c)
			if j < 0 {
				break
			}
			k = at + j
			if e := m.match(k, next); e >= 0 {
				return e
			}
		}
	default:
		set := items[g].set
		for k := n - 1; k >= at; k-- {
			if set.has(s[k]) {
				if e := m.match(k, next); e >= 0 {
					return e
				}
			}
		}
	}
	return -1
}

// minExpand matches items[i] (a class with '-') as few times as possible
// from at: it tries the rest first and takes one more byte when that fails.
func (m *Matcher) minExpand(at, i int) int {
	items, s := m.p.items, m.src
	it := &items[i]
	if m.depth == 0 { // the first attempt below would fail so
		panic(errTooComplex)
	}
	next := i + 1
	if next == len(items) {
		return at
	}
	// As in maxExpand: the first attempt always, then only where the
	// rest can start.
	if e := m.match(at, next); e >= 0 {
		return e
	}
	g := items[next].guard
	if g >= 0 && it.full && items[g].single {
		// ".-x": the rest can only start at an 'x'.
		c := items[g].a
		for at < len(s) {
			j := strings.IndexByte(s[at+1:], c)
			if j < 0 {
				m.tick(len(s) - at)
				return -1
			}
			m.tick(j + 1)
			at += j + 1
			if e := m.match(at, next); e >= 0 {
				return e
			}
		}
		return -1
	}
	for at < len(s) && it.set.has(s[at]) {
		at++
		if g < 0 || (at < len(s) && items[g].set.has(s[at])) {
			if e := m.match(at, next); e >= 0 {
				return e
			}
		} else {
			m.tick(1)
		}
	}
	return -1
}

func (m *Matcher) startCapture(at, i, what int) int {
	if m.level >= MaxCaptures {
		panic(errTooManyCaptures)
	}
	m.caps[m.level] = capture{at, what}
	m.level++
	e := m.match(at, i)
	if e < 0 {
		m.level--
	}
	return e
}

func (m *Matcher) endCapture(at, i int) int {
	l := m.level - 1
	for l >= 0 && m.caps[l].len != capUnfinished {
		l--
	}
	if l < 0 {
		panic(errInvalidCapture)
	}
	m.caps[l].len = at - m.caps[l].init
	e := m.match(at, i)
	if e < 0 {
		m.caps[l].len = capUnfinished
	}
	return e
}

// balance matches %bxy at s[at:].
func (m *Matcher) balance(at int, open, close byte) int {
	s := m.src
	if at >= len(s) || s[at] != open {
		return -1
	}
	depth := 1
	for k := at + 1; k < len(s); k++ {
		switch s[k] {
		case close:
			if depth--; depth == 0 {
				m.tick(k - at)
				return k + 1
			}
		case open:
			depth++
		}
	}
	m.tick(len(s) - at)
	return -1
}

// backref matches %1-%9 (digit) at s[at:].
func (m *Matcher) backref(at int, digit byte) int {
	l := int(digit) - '1'
	if l < 0 || l >= m.level || m.caps[l].len == capUnfinished {
		panic(errCaptureIndex(l + 1))
	}
	c := m.caps[l]
	if c.len < 0 { // a position capture matches nothing
		return -1
	}
	s := m.src
	if len(s)-at >= c.len && s[at:at+c.len] == s[c.init:c.init+c.len] {
		return at + c.len
	}
	return -1
}
