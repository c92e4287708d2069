package embedded

import (
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// gopher-lua builds a traceback with GetStack(i) for every level i, and
// GetStack walks from the top each time: an error 20,000 frames deep cost
// 1.1 s of uninterruptible Go (the same for debug.traceback there). This is
// the same text in linear time: one walk down the frame chain (frames.go) to
// count the levels and find the tail-call gaps, then GetStack only for the
// (at most 15) levels printed.

// traceback is gopher-lua's "stack traceback:" text for L from level on:
// one line per level (a tail call's lost levels as "(tailcall): ?"), then
// "[G]: ?"; more than 20 lines are cut to the first 7 and the last 7.
func traceback(L *lua.LState, level int) string {
	const header = "stack traceback:"
	if frameLayoutErr != nil {
		return header + "\n\t(unavailable: " + frameLayoutErr.Error() + ")"
	}
	// levels: the chain's frames and their tail-call gaps, top first.
	type span struct{ level, gaps int }
	var frames []span // only frames with gaps, in order
	levels := 0
	for fr := topFrame(L); !fr.IsNil(); fr = fr.parent() {
		gaps := 0
		if !fr.isG() {
			gaps = fr.tailCalls()
		}
		if gaps > 0 {
			frames = append(frames, span{levels, gaps})
		}
		levels += 1 + gaps
	}
	entries := levels + 1 // the levels and the final "[G]: ?"
	level = max(0, min(level, entries))
	var show []int
	if n := entries - level; n > 20 {
		for i := range 7 {
			show = append(show, level+i)
		}
		show = append(show, -1)
		for i := entries - 7; i < entries; i++ {
			show = append(show, i)
		}
	} else {
		for i := level; i < entries; i++ {
			show = append(show, i)
		}
	}
	isGap := func(i int) bool {
		for _, f := range frames {
			if i > f.level && i <= f.level+f.gaps {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	b.WriteString(header)
	for _, i := range show {
		b.WriteString("\n\t")
		switch {
		case i < 0:
			b.WriteString("...")
		case i == levels:
			b.WriteString("[G]: ?")
		case isGap(i):
			b.WriteString("(tailcall): ?")
		default:
			b.WriteString(levelLine(L, i))
		}
	}
	return b.String()
}

// levelLine is "where in what" for one level that is a frame.
func levelLine(L *lua.LState, i int) string {
	dbg, ok := L.GetStack(i)
	if !ok {
		return "?"
	}
	fn, err := L.GetInfo("Slnf", dbg, lua.LNil)
	if err != nil {
		return "?"
	}
	where := "[G]:"
	if f, ok := fn.(*lua.LFunction); ok && !f.IsG {
		where = fmt.Sprintf("%s:%d:", dbg.Source, dbg.CurrentLine)
	}
	name := dbg.Name
	switch {
	case dbg.What == "main":
		// the main chunk, or a coroutine's body ("corountine" in gopher-lua)
	case name != "" && name[0] != '(' && name[0] != '<':
		name = "function '" + name + "'"
	default:
		name = "function " + name
	}
	return where + " in " + name
}
