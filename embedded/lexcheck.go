package embedded

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/yuin/gopher-lua/parse"
)

// gopher-lua's lexer accepts two kinds of token that Lua 5.1's rejects,
// and the parse tree no longer shows them:
//
//   - malformed numerals. It reads `1e` as "1e" plus whatever byte follows
//     (`{1e, 2}` swallowed the comma), and its compiler turns a numeral it
//     cannot convert into NaN without a word; Lua 5.1 reads a numeral as
//     digits and dots, an optional exponent sign, then every letter, digit
//     and underscore, and rejects the whole token: "malformed number near
//     '1e'" (also `1_000`, `0b101`, `3..2`, `1e5x`).
//   - decimal escapes above 255 ('\300'), which it stores modulo 256; Lua
//     5.1 says "escape sequence too large near ''...'" (the string read so
//     far).
//
// lexicalError scans the source the way Lua 5.1's lexer does (comments,
// long brackets, strings, numerals) and finds the first such token. Lua
// reports a lexical error only when the parser gets that far: the error is
// returned only when the source before the token parses, or fails only for
// want of more input; otherwise the parser's own (earlier) error stands.

// lexError is a lexical error at byte offset off of the source.
type lexError struct {
	off  int
	line int
	msg  string
	near string
}

// lexicalError is the syntax error Lua 5.1's lexer raises on src that
// gopher-lua's accepts, or nil.
func lexicalError(src []byte, name string) error {
	le := scanLexical(src)
	if le == nil {
		return nil
	}
	if _, err := parse.Parse(bytes.NewReader(src[:le.off]), name); err != nil {
		var pe *parse.Error
		if !errors.As(err, &pe) || pe.Pos.Line != parse.EOF {
			return nil // an earlier syntax error: the parser reports it
		}
	}
	return &syntaxError{msg: fmt.Sprintf("%s:%d: %s near '%s'", name, le.line, le.msg, le.near)}
}

func isLuaSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isLuaAlnum(c byte) bool { return isNameStart(c) || isDigit(c) }

// blankSpaces returns src with each vertical tab and form feed between
// tokens made a space (src itself is not changed): Lua's lexer skips
// them as it does blanks, gopher-lua's called them an invalid token, so a
// chunk with a form feed between two functions did not compile. Those in
// strings and comments stay. It also blanks the '[' of a line comment
// that starts "--[=" with no long bracket ("--[=0"), which gopher-lua
// called an invalid multiline comment.
func blankSpaces(src []byte) []byte {
	if bytes.IndexByte(src, '\v') < 0 && bytes.IndexByte(src, '\f') < 0 && !bytes.Contains(src, []byte("--[=")) {
		return src
	}
	out := bytes.Clone(src)
	scanSource(src, func(i int) { out[i] = ' ' })
	return out
}

// scanLexical returns the first token of src that Lua 5.1's lexer rejects
// and gopher-lua's does not, or nil. It stops (nil) at the errors both
// lexers raise (unfinished strings and long brackets).
func scanLexical(src []byte) *lexError { return scanSource(src, nil) }

// scanSource is scanLexical; it also calls onSpace, when not nil, with
// the offset of each byte blankSpaces makes a space (up to the first
// error).
func scanSource(src []byte, onSpace func(int)) *lexError {
	n := len(src)
	line := 1
	i := 0
	// newline skips a newline at i (\n, \r, \n\r or \r\n count as one).
	newline := func() {
		c := src[i]
		i++
		if i < n && (src[i] == '\n' || src[i] == '\r') && src[i] != c {
			i++
		}
		line++
	}
	// sep is Lua's skip_sep at i (a '[' or ']'): the level of a long
	// bracket, or -1 when the brackets do not match.
	sep := func(j int) (int, int) {
		c := src[j]
		j++
		count := 0
		for j < n && src[j] == '=' {
			j++
			count++
		}
		if j < n && src[j] == c {
			return count, j
		}
		return -1, j
	}
	// long skips a long string or comment whose opening bracket of level
	// lvl ends at j (the second '['); false when it is unfinished.
	long := func(j, lvl int) bool {
		i = j + 1
		for i < n {
			switch src[i] {
			case '\n', '\r':
				newline()
			case ']':
				if l, end := sep(i); l == lvl {
					i = end + 1
					return true
				}
				i++
			default:
				i++
			}
		}
		return false
	}
	for i < n {
		c := src[i]
		switch {
		case c == '\n' || c == '\r':
			newline()
		case isLuaSpace(c):
			if onSpace != nil && (c == '\v' || c == '\f') {
				onSpace(i)
			}
			i++
		case c == '-':
			if i+1 >= n || src[i+1] != '-' {
				i++
				continue
			}
			i += 2
			if i < n && src[i] == '[' {
				if lvl, j := sep(i); lvl >= 0 {
					if !long(j, lvl) {
						return nil
					}
					continue
				}
				// "--[=" with no second '[' is a line comment to Lua,
				// an invalid long one to gopher-lua: blank the '['.
				if onSpace != nil && i+1 < n && src[i+1] == '=' {
					onSpace(i)
				}
			}
			for i < n && src[i] != '\n' && src[i] != '\r' {
				i++
			}
		case c == '[':
			lvl, j := sep(i)
			if lvl < 0 {
				i++
				continue
			}
			if !long(j, lvl) {
				return nil
			}
		case c == '"' || c == '\'':
			start := i
			var buf []byte
			buf = append(buf, c)
			i++
			for {
				if i >= n || src[i] == '\n' || src[i] == '\r' {
					return nil // unfinished string
				}
				d := src[i]
				if d == c {
					i++
					break
				}
				if d != '\\' {
					buf = append(buf, d)
					i++
					continue
				}
				i++
				if i >= n {
					return nil
				}
				switch e := src[i]; {
				case e == '\n' || e == '\r':
					buf = append(buf, '\n')
					newline()
				case isDigit(e):
					v := 0
					for k := 0; k < 3 && i < n && isDigit(src[i]); k++ {
						v = v*10 + int(src[i]-'0')
						i++
					}
					if v > 255 {
						near := buf
						if z := bytes.IndexByte(near, 0); z >= 0 {
							near = near[:z] // Lua prints the token as a C string
						}
						return &lexError{off: start, line: line, msg: "escape sequence too large", near: string(near)}
					}
					buf = append(buf, byte(v))
				default:
					if k := bytes.IndexByte([]byte("abfnrtv"), e); k >= 0 {
						e = "\a\b\f\n\r\t\v"[k]
					}
					buf = append(buf, e)
					i++
				}
			}
		case c == '.' && i+1 < n && src[i+1] == '.':
			i += 2
		case isDigit(c) || c == '.' && i+1 < n && isDigit(src[i+1]):
			start := i
			for i < n && (isDigit(src[i]) || src[i] == '.') {
				i++
			}
			if i < n && (src[i] == 'e' || src[i] == 'E') {
				i++
				if i < n && (src[i] == '+' || src[i] == '-') {
					i++
				}
			}
			for i < n && (isLuaAlnum(src[i]) || src[i] == '_') {
				i++
			}
			tok := string(src[start:i])
			if _, ok := str2number(tok); !ok {
				return &lexError{off: start, line: line, msg: "malformed number", near: tok}
			}
		case isNameStart(c):
			for i < n && isLuaAlnum(src[i]) {
				i++
			}
		default:
			i++
		}
	}
	return nil
}
