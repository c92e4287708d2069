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

// traceback is gopher-lua's "stack traceback:" text for L from level on,
// without the engine's hidden frames: one line per level (a tail call's lost levels as "(tailcall): ?"), then
// "[G]: ?"; more than 20 lines are cut to the first 7 and the last 7.
func traceback(L *lua.LState, level int) string {
	const header = "stack traceback:"
	if frameLayoutErr != nil {
		return header + "\n\t(unavailable: " + frameLayoutErr.Error() + ")"
	}
	// entries: what each line shows, top first, as runs: a GetStack level
	// (gopher-lua counts a tail call's lost levels), a run of gaps (one
	// frame may have lost 10^8 tail calls: listing them one by one took
	// gigabytes), or the final "[G]: ?". The engine's hidden Go functions
	// (hiddenFrame) have no line and no level number: Lua raises type
	// errors in the instruction itself and calls xpcall's handler directly.
	const gap, final, ellipsis = -1, -2, -3
	type run struct{ entry, n int }
	var runs []run
	total, levels := 0, 0
	add := func(entry, n int) {
		if n > 0 {
			runs = append(runs, run{entry, n})
			total += n
		}
	}
	for fr := topFrame(L); !fr.IsNil(); fr = fr.parent() {
		if fr.isG() {
			if !hiddenFrame(fr.fn()) {
				add(levels, 1)
			}
			levels++
			continue
		}
		add(levels, 1)
		gaps := fr.tailCalls()
		add(gap, gaps)
		levels += 1 + gaps
	}
	add(final, 1)
	entryAt := func(i int) int {
		for _, r := range runs {
			if i < r.n {
				return r.entry
			}
			i -= r.n
		}
		return final
	}
	var entries []int
	first := max(0, min(level, total))
	if total-first > 20 { // the first 7 and the last 7
		for i := first; i < first+7; i++ {
			entries = append(entries, entryAt(i))
		}
		entries = append(entries, ellipsis)
		for i := total - 7; i < total; i++ {
			entries = append(entries, entryAt(i))
		}
	} else {
		for i := first; i < total; i++ {
			entries = append(entries, entryAt(i))
		}
	}
	var b strings.Builder
	b.WriteString(header)
	for _, e := range entries {
		b.WriteString("\n\t")
		switch e {
		case ellipsis:
			b.WriteString("...")
		case final:
			b.WriteString("[G]: ?")
		case gap:
			b.WriteString("(tailcall): ?")
		default:
			b.WriteString(levelLine(L, e))
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
