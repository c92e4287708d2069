package embedded

import (
	"bytes"
	"fmt"

	"github.com/yuin/gopher-lua/parse"
)

// unclosedBlock words a syntax error at the end of src as Lua 5.1 does when
// the cause is a block left open ("'end' expected (to close 'if' at line
// 3) near '<eof>'"), the commonest mistake in a long script, where
// gopher-lua only said "syntax error". It finds the blocks still open at
// the end and checks that closing them makes src parse; otherwise (an
// unfinished expression, say) false, and the caller keeps gopher-lua's
// message.
func unclosedBlock(src []byte) (msg string, ok bool) {
	type opener struct {
		kind   string
		line   int
		wantDo bool // a while or for whose `do` has not come yet
	}
	var open []opener
	sc := parse.NewScanner(bytes.NewReader(src), "")
	lx := &parse.Lexer{}
	for {
		tok, err := sc.Scan(lx)
		if err != nil {
			return "", false
		}
		if tok.Type < 0 { // the end
			break
		}
		top := len(open) - 1
		switch tok.Type {
		case parse.TFunction:
			open = append(open, opener{kind: "function", line: tok.Pos.Line})
		case parse.TIf:
			open = append(open, opener{kind: "if", line: tok.Pos.Line})
		case parse.TRepeat:
			open = append(open, opener{kind: "repeat", line: tok.Pos.Line})
		case parse.TWhile, parse.TFor:
			open = append(open, opener{kind: tok.Str, line: tok.Pos.Line, wantDo: true})
		case parse.TDo:
			if top >= 0 && open[top].wantDo {
				open[top].wantDo = false
			} else {
				open = append(open, opener{kind: "do", line: tok.Pos.Line})
			}
		case parse.TEnd:
			if top < 0 || open[top].kind == "repeat" || open[top].wantDo {
				return "", false
			}
			open = open[:top]
		case parse.TUntil:
			if top < 0 || open[top].kind != "repeat" {
				return "", false
			}
			open = open[:top]
		}
	}
	if len(open) == 0 || open[len(open)-1].wantDo {
		return "", false
	}
	closed := append([]byte(nil), src...)
	for i := len(open) - 1; i >= 0; i-- {
		if open[i].kind == "repeat" {
			closed = append(closed, "\nuntil true"...)
		} else {
			closed = append(closed, "\nend"...)
		}
	}
	if _, err := parse.Parse(bytes.NewReader(closed), ""); err != nil {
		return "", false
	}
	in := open[len(open)-1]
	want := "end"
	if in.kind == "repeat" {
		want = "until"
	}
	if in.line == lastLine(src) {
		return fmt.Sprintf("'%s' expected", want), true
	}
	return fmt.Sprintf("'%s' expected (to close '%s' at line %d)", want, in.kind, in.line), true
}
