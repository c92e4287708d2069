package embedded

import "fmt"

// gopher-lua's parser (goyacc) keeps one ~200-byte entry per pending
// syntax level on a stack it grows by copying: 500,000 nested `do`
// (2 MB of source) took 1.1 s and hundreds of MB, in one Go call no
// deadline interrupts, and the collector stalled on the copies. Before
// parsing, sourceNesting scans the tokens once and bounds how deep the
// parser will have to go: brackets and blocks, plus runs of the operators
// it can only reduce at the end of the run (right-associative .. and ^,
// unary -, not, #). Left-associative chains (1 + 1 + ...) reduce as they
// go and do not count; compileTree bounds the depth of the tree they make.

// sourceNesting returns the line where the source first nests deeper than
// limit, or 0 when it never does.
func sourceNesting(src []byte, limit int) int {
	depth, run := 0, 0
	var runs []int // the run of each open bracket/block level
	line := 1
	prevOperand := false // the previous token ends an operand
	open := func() bool {
		runs = append(runs, run)
		depth++
		run = 0
		return depth+run > limit
	}
	closeLevel := func() {
		if depth > 0 {
			depth--
			run = runs[len(runs)-1]
			runs = runs[:len(runs)-1]
		}
	}
	grow := func() bool {
		run++
		return depth+run > limit
	}
	n := len(src)
	for i := 0; i < n; {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			i++
			continue
		case c == '-' && i+1 < n && src[i+1] == '-': // comment
			i += 2
			if lvl, ok := longBracket(src, i); ok {
				i, line = skipLong(src, i, lvl, line)
			} else {
				for i < n && src[i] != '\n' {
					i++
				}
			}
			continue
		case c == '"' || c == '\'':
			i++
			for i < n && src[i] != c {
				if src[i] == '\\' && i+1 < n {
					i++
				}
				if src[i] == '\n' {
					line++
				}
				i++
			}
			i++
			prevOperand = true
			continue
		case c == '[':
			if lvl, ok := longBracket(src, i); ok {
				i, line = skipLong(src, i, lvl, line)
				prevOperand = true
				continue
			}
			i++
			if open() {
				return line
			}
			prevOperand = false
			continue
		case c == '(' || c == '{':
			i++
			if open() {
				return line
			}
			prevOperand = false
			continue
		case c == ')' || c == '}' || c == ']':
			i++
			closeLevel()
			prevOperand = true
			continue
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(src[i+1])):
			for i < n && (isNameChar(src[i]) || src[i] == '.' ||
				((src[i] == '+' || src[i] == '-') && (src[i-1] == 'e' || src[i-1] == 'E' || src[i-1] == 'p' || src[i-1] == 'P'))) {
				i++
			}
			prevOperand = true
			continue
		case isNameStart(c):
			j := i
			for j < n && isNameChar(src[j]) {
				j++
			}
			word := string(src[i:j])
			i = j
			switch word {
			case "do", "if", "function", "repeat":
				if open() {
					return line
				}
				prevOperand = false
			case "end", "until":
				closeLevel()
				prevOperand = word == "end"
			case "not":
				if grow() {
					return line
				}
				prevOperand = false
			case "and", "or", "then", "else", "elseif", "while", "for", "in", "local", "return", "break", "goto":
				run = 0
				prevOperand = false
			default: // a name, nil, true, false
				prevOperand = true
			}
			continue
		}
		// Operators and punctuation.
		switch {
		case c == '.' && i+2 < n && src[i+1] == '.' && src[i+2] == '.':
			i += 3
			prevOperand = true
		case c == '.' && i+1 < n && src[i+1] == '.':
			i += 2
			if grow() {
				return line
			}
			prevOperand = false
		case c == '^' || c == '#' || (c == '-' && !prevOperand):
			i++
			if grow() {
				return line
			}
			prevOperand = false
		case c == ',' || c == ';' || c == '=' || c == '<' || c == '>' || c == '~':
			i++
			if i < n && src[i] == '=' {
				i++
			}
			run = 0
			prevOperand = false
		default:
			i++
			prevOperand = false
		}
	}
	return 0
}

// longBracket reports a long bracket [==[ at i and its level.
func longBracket(src []byte, i int) (int, bool) {
	if i >= len(src) || src[i] != '[' {
		return 0, false
	}
	j := i + 1
	for j < len(src) && src[j] == '=' {
		j++
	}
	if j < len(src) && src[j] == '[' {
		return j - i - 1, true
	}
	return 0, false
}

// skipLong skips a long string or comment opened at i; it returns the
// index after it and the line count.
func skipLong(src []byte, i, lvl, line int) (int, int) {
	i += lvl + 2
	for i < len(src) {
		if src[i] == '\n' {
			line++
		}
		if src[i] == ']' {
			j := i + 1
			for j < len(src) && src[j] == '=' {
				j++
			}
			if j-i-1 == lvl && j < len(src) && src[j] == ']' {
				return j + 1, line
			}
		}
		i++
	}
	return i, line
}

func isNameStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isNameChar(c byte) bool  { return isNameStart(c) || isDigit(c) }

// checkNesting is the syntax error for src nesting deeper than
// maxSyntaxDepth, or for a token Lua 5.1's lexer rejects and gopher-lua's
// accepts (lexcheck.go), or nil. Every compile path calls it on the source
// before parsing.
func checkNesting(src []byte, name string) error {
	if line := sourceNesting(src, maxSyntaxDepth); line > 0 {
		return &syntaxError{msg: fmt.Sprintf("%s:%d: chunk has too many syntax levels (limit %d)", name, line, maxSyntaxDepth)}
	}
	return lexicalError(src, name)
}
