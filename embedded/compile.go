package embedded

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"
)

// Compiled chunks are shared by every VM in the process: a FunctionProto is
// immutable once compiled, and gopher-lua builds closures from it per state.
// Parsing and compiling costs ~25 µs for a one-liner; running a cached
// proto costs ~2 µs.
const (
	cacheMaxEntries    = 1024
	cacheMaxEntryBytes = 1 << 20
	cacheMaxBytes      = 32 << 20
)

type cacheEntry struct {
	key   string
	chunk *chunk
}

// chunk is a compiled chunk. pure is true when no instruction of it (or of
// the functions it defines) can change state that outlives the call: no
// calls, no global or table stores. Such a chunk needs no restore check
// after a fresh-environment call (with pristine libraries, no metamethod
// can run user code).
type chunk struct {
	proto *lua.FunctionProto
	pure  bool
}

// impure lists the opcodes that can write outside the chunk's own fresh
// values or run other code.
var impure = map[int]bool{
	lua.OP_SETGLOBAL: true, lua.OP_SETUPVAL: true, lua.OP_SETTABLE: true, lua.OP_SETTABLEKS: true,
	lua.OP_CALL: true, lua.OP_TAILCALL: true, lua.OP_TFORLOOP: true,
}

func isPure(p *lua.FunctionProto) bool {
	for _, inst := range p.Code {
		if impure[int(inst>>26)] { // gopher-lua keeps the opcode in the top 6 bits
			return false
		}
	}
	for _, sub := range p.FunctionPrototypes {
		if !isPure(sub) {
			return false
		}
	}
	return true
}

var protoCache = struct {
	sync.Mutex
	m     map[string]*list.Element
	lru   list.List
	bytes int
}{m: map[string]*list.Element{}}

// sourceName turns a Lua chunk name into the name messages print, as Lua
// 5.1's luaO_chunkid does (LUA_IDSIZE 60): "=input" gives "input" (at most
// 59 bytes), "@path" the path (a long one as "..." and its last 52 bytes),
// and anything else, the source of a loadstring without a name, `[string
// "first line..."]` (at most 43 bytes of its first line). gopher-lua
// printed the whole source, every line of it, in each message.
func sourceName(chunk string) string {
	const idSize = 60
	switch {
	case strings.HasPrefix(chunk, "="):
		return chunk[1:min(len(chunk), idSize)]
	case strings.HasPrefix(chunk, "@"):
		const keep = idSize - len(" '...' ") - 1
		if path := chunk[1:]; len(path) > keep {
			return "..." + path[len(path)-keep:]
		}
		return chunk[1:]
	}
	const keep = idSize - len(` [string "..."] `) - 1
	line := chunk[:min(len(chunk), keep+1)] // (IndexAny over a chunk of 128 MiB took 0.1 s)
	if i := strings.IndexAny(line, "\n\r"); i >= 0 {
		line = line[:i]
	}
	if len(line) > keep {
		line = line[:keep]
	}
	if len(line) < len(chunk) {
		return `[string "` + line + `..."]`
	}
	return `[string "` + line + `"]`
}

// syntaxError is a chunk that does not compile; its message reads like
// Lua's: "input:1: unexpected symbol near 'x'".
type syntaxError struct {
	msg string
	eof bool // the error is at the end of the input: the chunk is incomplete
}

func (e *syntaxError) Error() string { return e.msg }

// cachedChunk is the compiled chunk of code in the cache, or nil.
func cachedChunk(code []byte, chunkName string) *chunk {
	if len(code) > cacheMaxEntryBytes {
		return nil
	}
	protoCache.Lock()
	defer protoCache.Unlock()
	if el, ok := protoCache.m[chunkName+"\x00"+string(code)]; ok {
		protoCache.lru.MoveToFront(el)
		return el.Value.(*cacheEntry).chunk
	}
	return nil
}

func compile(code []byte, chunkName string) (*chunk, error) {
	cacheable := len(code) <= cacheMaxEntryBytes
	var key string
	if cacheable {
		if c := cachedChunk(code, chunkName); c != nil {
			return c, nil
		}
		key = chunkName + "\x00" + string(code)
	}
	if len(code) > 0 && code[0] == 0x1b {
		return nil, &syntaxError{msg: sourceName(chunkName) + ": attempt to load a binary chunk (only text chunks are accepted)"}
	}
	proto, err := compileSource(code, sourceName(chunkName))
	if err != nil {
		return nil, err
	}
	// The main chunk gets no Lua 5.1 `arg` table (it defines no local of
	// that name, so the table was built and thrown away on every call).
	proto.IsVarArg &^= lua.VarArgNeedsArg
	c := &chunk{proto: proto, pure: isPure(proto)}
	if cacheable {
		protoCache.Lock()
		if _, ok := protoCache.m[key]; !ok {
			protoCache.m[key] = protoCache.lru.PushFront(&cacheEntry{key: key, chunk: c})
			protoCache.bytes += len(key)
			for protoCache.lru.Len() > cacheMaxEntries || protoCache.bytes > cacheMaxBytes {
				old := protoCache.lru.Back()
				ent := old.Value.(*cacheEntry)
				protoCache.lru.Remove(old)
				delete(protoCache.m, ent.key)
				protoCache.bytes -= len(ent.key)
			}
		}
		protoCache.Unlock()
	}
	return c, nil
}

// formatParseError words a gopher-lua parse error as Lua 5.1 does: an
// error at the end of src names the last line and '<eof>' (gopher-lua
// gave no line), and an unfinished string or long bracket is called that
// (a string a line break ends names its own line, not the next; Lua also
// shows its opening quote, which is not known here).
func formatParseError(name string, src []byte, err error) string {
	var pe *parse.Error
	if !errors.As(err, &pe) {
		return name + ": " + strings.TrimSpace(err.Error())
	}
	msg := strings.TrimSpace(pe.Message)
	switch msg {
	case "unterminated string":
		msg = "unfinished string"
	case "unterminated multiline string":
		msg = "unfinished long string"
	case "invalid multiline comment":
		if pe.Pos.Line == parse.EOF {
			msg = "unfinished long comment"
		}
	}
	if pe.Pos.Line == parse.EOF {
		if m, ok := unclosedBlock(src); ok && msg == "syntax error" {
			msg = m
		}
		return fmt.Sprintf("%s:%d: %s near '<eof>'", name, lastLine(src), msg)
	}
	line := pe.Pos.Line
	if msg == "unfinished string" && line > 1 {
		line-- // the scanner is past the line break that ended the string
	}
	if pe.Token != "" {
		return fmt.Sprintf("%s:%d: %s near '%s'", name, line, msg, pe.Token)
	}
	return fmt.Sprintf("%s:%d: %s", name, line, msg)
}

// lastLine is the line number Lua's lexer has at the end of src: one plus
// its line breaks, where "\r\n" and "\n\r" count as one.
func lastLine(src []byte) int {
	line := 1
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '\n' && c != '\r' {
			continue
		}
		if i+1 < len(src) && (src[i+1] == '\n' || src[i+1] == '\r') && src[i+1] != c {
			i++
		}
		line++
	}
	return line
}

// fixNumerals gives every numeral of the tree the value Lua 5.1 reads.
// gopher-lua converts a numeral with strconv.ParseInt (base 0), then
// ParseFloat, and compiles NaN when both fail: hex numerals of 2^63 and
// more (0x8000000000000000, 0xFFFFFFFFFFFFFFFF) and decimals out of range
// (1e400) became NaN, and ParseInt's base prefixes read `0010` (which its
// lexer passes on as "010") as octal 8. Each numeral is read as Lua reads
// it (str2number) and its text replaced by one both of gopher-lua's
// conversions agree on: the shortest decimal that round-trips, or "Inf".
// Malformed numerals never get here: checkNesting rejects them.
func fixNumerals(tree []ast.Stmt) []ast.Stmt {
	var fix func(e ast.Expr) ast.Expr
	fix = func(e ast.Expr) ast.Expr {
		walkAST(reflect.ValueOf(e), nil, fix)
		if num, ok := e.(*ast.NumberExpr); ok {
			num.Value = canonicalNumeral(num.Value)
		}
		return e
	}
	walkAST(reflect.ValueOf(tree), nil, fix)
	return tree
}

// canonicalNumeral is the text of Lua numeral s that gopher-lua's
// parseNumber converts to s's Lua value (s itself when s is not a numeral).
func canonicalNumeral(s string) string {
	f, ok := str2number(s)
	if !ok {
		return s
	}
	if math.IsInf(f, 1) {
		return "Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
