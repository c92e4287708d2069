package pattern

import (
	"fmt"
	"strings"
	"testing"
)

// benchText is ~400 kB of lines like
// "line 12: the quick brown fox=84 jumps over (the lazy) dog".
var benchText = func() string {
	var b strings.Builder
	for i := 0; b.Len() < 400_000; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox=%d jumps over (the lazy) dog\n", i, i*7)
	}
	return b.String()
}()

// benchPatterns are scanned over benchText the way gmatch and gsub do.
// The same scans by lua5.4's gsub (ms per scan):
//
//	lua5.4 -e 'local t = {} for i = 0, 10000 do t[#t+1] = ("line %d: the quick brown fox=%d jumps over (the lazy) dog\n"):format(i, i*7) end
//	  local s = table.concat(t):sub(1, 400000)
//	  for _, p in ipairs{"%s+", "%a+", "fox", "(%w+)=(%w+)", "%((.-)%)", "%f[%w]%w+", "[^\n]*\n", "%d+: [a-z ]+", "o.-[xg]", "(%a+) (%a+)$?"} do
//	    local c = os.clock() for _ = 1, 20 do s:gsub(p, "") end print(p, (os.clock() - c) / 20 * 1000)
//	  end'
var benchPatterns = []string{
	"%s+",           // one class, quantified
	"%a+",           // likewise
	"fox",           // literal
	"(%w+)=(%w+)",   // captures
	"%((.-)%)",      // lazy
	"%f[%w]%w+",     // frontier
	"[^\n]*\n",      // lines
	"%d+: [a-z ]+",  // first-byte skip
	"o.-[xg]",       // lazy with set after it
	"(%a+) (%a+)$?", // general
}

// scan counts the matches like gmatch (an empty match where the previous
// one ended is skipped).
func scan(m *Matcher, p *Pattern, s string) int {
	n, pos, last := 0, 0, -1
	for pos <= len(s) {
		ok, err := m.Find(p, s, pos)
		if err != nil {
			panic(err)
		}
		if !ok {
			break
		}
		if m.End() == last {
			pos = m.Start() + 1
			continue
		}
		n++
		pos, last = m.End(), m.End()
	}
	return n
}

func BenchmarkScan(b *testing.B) {
	s := benchText[:400_000]
	for _, pat := range benchPatterns {
		b.Run(pat, func(b *testing.B) {
			p := Compile(pat, true)
			var m Matcher
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				scan(&m, p, s)
			}
		})
	}
}
