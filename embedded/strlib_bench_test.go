package embedded

import (
	"fmt"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/pm"

	"libbioxen/embedded/pattern"
)

// Scans of ~400 kB of text: our matcher and gopher-lua's (pm, which the
// string functions used before), and gsub/gmatch through Lua. For lua5.4:
//
//	lua5.4 -e 'local t = {} for i = 0, 10000 do t[#t+1] = ("line %d: the quick brown fox=%d jumps over (the lazy) dog\n"):format(i, i*7) end
//	  local s = table.concat(t):sub(1, 400000)
//	  for _, p in ipairs{"%s+", "(%w+)=(%w+)", "%f[%w]%w+", "o.-[xg]"} do
//	    local c = os.clock() for _ = 1, 20 do s:gsub(p, "") end local g = (os.clock() - c) / 20
//	    c = os.clock() for _ = 1, 20 do for _ in s:gmatch(p) do end end
//	    print(p, "gsub ms", g * 1000, "gmatch ms", (os.clock() - c) / 20 * 1000)
//	  end'

var benchStringPatterns = []string{"%s+", "(%w+)=(%w+)", "%f[%w]%w+", "o.-[xg]"}

const benchTextLua = `local t = {} for i = 0, 10000 do t[#t+1] = ("line %d: the quick brown fox=%d jumps over (the lazy) dog\n"):format(i, i*7) end s = table.concat(t):sub(1, 400000)`

func benchText() string {
	var b strings.Builder
	for i := 0; b.Len() < 400_000; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox=%d jumps over (the lazy) dog\n", i, i*7)
	}
	return b.String()[:400_000]
}

func BenchmarkMatcher(b *testing.B) {
	s := benchText()
	for _, pat := range benchStringPatterns {
		b.Run("ours/"+pat, func(b *testing.B) {
			p := pattern.Compile(pat, true)
			var m pattern.Matcher
			for b.Loop() {
				for pos, last := 0, -1; pos <= len(s); {
					if ok, _ := m.Find(p, s, pos); !ok {
						break
					}
					if m.End() == last {
						pos = m.Start() + 1
						continue
					}
					pos, last = m.End(), m.End()
				}
			}
		})
		b.Run("pm/"+pat, func(b *testing.B) {
			bs := []byte(s)
			for b.Loop() {
				pm.Find(pat, bs, 0, -1)
			}
		})
	}
}

func BenchmarkStringLib(b *testing.B) {
	st := newState(stateConfig{trusted: true})
	defer st.close()
	if err := st.L.DoString(benchTextLua); err != nil {
		b.Fatal(err)
	}
	for _, pat := range benchStringPatterns {
		st.L.SetGlobal("p", lua.LString(pat))
		for _, code := range []string{`s:gsub(p, "")`, `for _ in s:gmatch(p) do end`} {
			b.Run(code[:8]+pat, func(b *testing.B) {
				for b.Loop() {
					if err := st.L.DoString(code); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSubstrings: string.sub and captures, whose pieces of a source
// longer than sharedSubstrings are copies (10,000 / 2,000 per op).
func BenchmarkSubstrings(b *testing.B) {
	st := newState(stateConfig{trusted: true})
	defer st.close()
	if err := st.L.DoString(benchTextLua + ` line = s:sub(1, 60)`); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, code string }{
		{"sub of a long string", `local s = s for i = 1, 10000 do local x = s:sub(i, i + 5) end`},
		{"sub of a line", `local s = line for i = 1, 10000 do local x = s:sub(3, 9) end`},
		{"match captures", `local s = s for i = 1, 1000 do local a, b = s:match("(%w+)=(%w+)", i * 37) end`},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := st.L.DoString(c.code); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
