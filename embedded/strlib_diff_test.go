package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"libbioxen/core"
)

// The differential test runs random string.find/match/gmatch/gsub calls in
// the real lua5.4 and in the embedded engine and requires the same results
// and the same error messages.

// diffHarness defines T(kind, s, p, ...), which prints one line per call:
// the call's number, then "ok" and its values, or "E" and its error.
const diffHarness = `
local unpack = table.unpack or unpack
local function pack(...) return {n = select('#', ...), ...} end
local n = 0
local function ser(...)
  local t = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    local ty = type(v)
    t[i] = ty:sub(1, 1) .. ((ty == "table" or ty == "function") and "" or tostring(v))
  end
  return table.concat(t, "|")
end
local function cat(...) return ser(...) end
local function pick(a) if type(a) == "string" and #a > 1 then return a:upper() elseif type(a) == "number" then return false end end
local tbl = setmetatable({}, {__index = function(_, k)
  if type(k) == "number" then return "N" .. k end
  if #k % 2 == 0 then return k:upper() end
  return false
end})
local repls = {cat = cat, pick = pick, tbl = tbl}
local calls = {
  find = string.find,
  match = string.match,
  gsub = function(s, p, r, m) return string.gsub(s, p, repls[r] or r, m) end,
  gmatch = function(s, p)
    local out = {}
    for a, b, c in string.gmatch(s, p) do
      out[#out + 1] = ser(a, b, c)
      if #out > 100 then break end
    end
    return table.concat(out, ";")
  end,
}
function T(kind, ...)
  n = n + 1
  local r = pack(pcall(calls[kind], ...))
  local call = n .. " " .. kind .. "(" .. ser(...) .. ") "
  if r[1] then
    print(call .. "ok " .. ser(unpack(r, 2, r.n)))
  else
    print(call .. "E " .. tostring(r[2]))
  end
end
`

var diffPieces = []string{
	"a", "b", ".", "%a", "%s", "%w", "%W", "%.", "%%", "%-", "[ab]", "[^a]", "[a-b]",
	"[%a.]", "[^%s]", "[]", "[", "]", "(", ")", "()", "*", "+", "-", "?", "%b()",
	"%b", "%f[a]", "%f[^a ]", "%f", "%1", "%2", "%0", "^", "$", "%", " ", "a*", "(a)",
}

var diffRepls = []string{`"x"`, `"%0"`, `"<%1>"`, `"%2"`, `"%%"`, `"%"`, `"[%1%2]"`, `"%a"`, `7`, `"cat"`, `"pick"`, `"tbl"`}

func luaQuote(s string) string { return strconv.Quote(s) } // the subjects and patterns are printable ASCII

func genDiffCases(r *rand.Rand, n int) string {
	const alphabet = "ab(). %-^"
	var b strings.Builder
	for i := 0; i < n; i++ {
		// Batches of calls in functions of their own: gopher-lua's compiler
		// looks constants up linearly, per function.
		if i%50 == 0 {
			if i > 0 {
				b.WriteString("end)()\n")
			}
			b.WriteString(";(function()\n")
		}
		var s strings.Builder
		for k := r.IntN(11); k > 0; k-- {
			s.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		var p strings.Builder
		for k := r.IntN(7); k > 0; k-- {
			p.WriteString(diffPieces[r.IntN(len(diffPieces))])
		}
		sq, pq := luaQuote(s.String()), luaQuote(p.String())
		inits := []string{"-20", "-3", "-1", "0", "1", "2", "5", strconv.Itoa(s.Len() + 1), strconv.Itoa(s.Len() + 2)}
		init := inits[r.IntN(len(inits))]
		fmt.Fprintf(&b, "T('find', %s, %s)\n", sq, pq)
		fmt.Fprintf(&b, "T('find', %s, %s, %s)\n", sq, pq, init)
		if r.IntN(4) == 0 {
			fmt.Fprintf(&b, "T('find', %s, %s, %s, true)\n", sq, pq, init)
		}
		fmt.Fprintf(&b, "T('match', %s, %s)\n", sq, pq)
		fmt.Fprintf(&b, "T('match', %s, %s, %s)\n", sq, pq, init)
		fmt.Fprintf(&b, "T('gmatch', %s, %s)\n", sq, pq)
		max := []string{"nil", "0", "1", "2"}[r.IntN(4)]
		fmt.Fprintf(&b, "T('gsub', %s, %s, %s, %s)\n", sq, pq, diffRepls[r.IntN(len(diffRepls))], max)
	}
	if n > 0 {
		b.WriteString("end)()\n")
	}
	return b.String()
}

// fixedDiffCases are calls worth checking every time.
const fixedDiffCases = `
T('gsub', "abc", "%w*", "-")
T('gsub', "abc d", "%w*", "-")
T('gsub', "abc", "", "-")
T('gsub', "", "", "-")
T('gsub', "hello world", "(o)", "[%1]", 1)
T('gsub', "abc", "^", "x")
T('gsub', "abc", "$", "x")
T('gsub', "a,b,,c", "[^,]*", "<%0>")
T('gmatch', "abc", "%w*")
T('gmatch', "^a^a", "^a")
T('gmatch', "one two  three", "%a+")
T('gmatch', "k=v, x=y", "(%w+)=(%w+)")
T('find', "abc", "", 10)
T('find', "abc", "", 4)
T('find', "abc", "", -10)
T('find', "abc(", ")")
T('match', "abc)", ")")
T('find', "a+b", "+", 1, true)
T('find', "THE (quick) fox", "%((%a+)%)")
T('match', "  trim  ", "^%s*(.-)%s*$")
T('match', "key = value", "(%w+)%s*=%s*(%w+)")
T('match', "hello", "()ll()")
T('find', "x[y]z", "[]]")
T('find', "x]y", "[^]]")
T('find', "a-b", "[a-]", 2)
T('find', "THE", "%f[%a]%a+")
T('find', "the end", "%f[%z]")
T('find', "the end", "%f[%Z]")
T('match', "a\0b", "%z")
T('find', "aaa", "a-b")
T('find', "aaab", "a-b")
T('gsub', "abc", "%w", "%1")
T('gsub', "abc", "(%w)", "%2")
T('gsub', "abc", "a", "%")
T('gsub', "abc", "(a", "x")
T('gsub', "abc", "(a", "cat")
T('find', "abc", "(a")
T('match', "abc", "(a")
T('find', "x", "(()")
T('find', string.rep("a", 300), string.rep("a?", 300))
T('find', string.rep("a", 300), string.rep("a?", 198))
T('find', string.rep("a", 300), string.rep("a?", 199))
T('find', string.rep("a", 300), string.rep("a?", 200))
T('find', "a", string.rep("%f[a]", 300))
T('find', "a", string.rep("(", 32) .. string.rep(")", 32))
T('find', "a", string.rep("(", 33) .. string.rep(")", 33))
T('find', "b", string.rep("(", 33) .. "a")
T('find', "", "a[")
T('find', "xa", "a[")
T('match', "a.b", "%.")
T('match', "%", "%%")
T('match', "[x]", "%[(.)%]")
T('match', "f(a(b)c)d", "%b()")
T('match', "''x'", "%b''")
T('gsub', "f(a(b)c)d(e)", "%b()", "")
T('find', "abcabc", "(abc)%1")
T('find', "abcab", "(abc)%1")
T('find', "aa", "()%1")
T('find', "ab12", "%d+$")
T('find', "a$b", "a$b")
T('find', "a$b", "%a$")
T('gsub', "x = 1, y = 2", "(%w+) = (%w+)", "%2 = %1")
T('gsub', "abc", ".", {a = 1, b = true})
T('gsub', "abc", ".", {b = {}})
T('gsub', "abc", "%w", "%0%0")
T('gsub', "hello", "", "-", 3)
T('gsub', "hello", "l*", "-")
T('gsub', "hello", "l-", "-")
T('gsub', "hello", "l?", "-")
T('gsub', "hello", "l+", "-")
T('match', "2024-01-02", "(%d+)-(%d+)-(%d+)")
T('find', "a.b.c", ".", 3, true)
T('find', "a\nb", "%c")
T('match', "Ab1_ \t!", "%u%l%d%p%s%s%p")
T('match', "Ab1_ \t!", "%U%L%D%P%S%S%P")
T('match', "0xFFg", "%x+")
T('match', "#~", "%g%G?")
T('match', "the end", "%f[%w]%w+$")
for _, piece in ipairs{"a?", "a*", "a-", "a+", "()", "(a)", "%f[a]", "[ab]?", ".-", "(a*)", "(a?)", "()a?"} do
  for n = 197, 201 do
    T('find', "aa", string.rep(piece, n))
    T('find', "aa", string.rep(piece, n) .. "b")
    T('find', "aab", string.rep(piece, n) .. "b")
    T('match', "aa", string.rep(piece, n) .. "$")
    T('gsub', "aa", string.rep(piece, n), "x")
  end
end
`

var luaPrefix = regexp.MustCompile(`\) E [^ :]*:\d+: `)

func normalizeDiffOutput(out string) []string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i, l := range lines {
		lines[i] = luaPrefix.ReplaceAllString(l, ") E ")
	}
	return lines
}

func TestPatternsMatchLua54(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.4")
	if err != nil {
		t.Skip("lua5.4 not on PATH")
	}
	script := diffHarness + fixedDiffCases + genDiffCases(rand.New(rand.NewPCG(1, 2)), 1500)

	cmd := exec.Command(luaBin, "-")
	cmd.Stdin = strings.NewReader(script)
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("lua5.4: %v", err)
	}

	// The sandboxed library (the default) has the same string functions
	// as the trusted one (TestStringPatternFunctions checks both).
	got := runEmbeddedScript(t, script, false)
	gotLines, wantLines := normalizeDiffOutput(string(got)), normalizeDiffOutput(string(want))
	if len(gotLines) != len(wantLines) {
		t.Fatalf("%d result lines, lua5.4 printed %d", len(gotLines), len(wantLines))
	}
	bad := 0
	for i := range wantLines {
		if gotLines[i] != wantLines[i] {
			if bad++; bad <= 20 {
				t.Errorf("\n  got  %s\n  want %s", gotLines[i], wantLines[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d calls differ from lua5.4", bad, len(wantLines))
	}
}

// runEmbeddedScript runs script in a fresh embedded VM (trusted: without
// the sandbox) and returns what it printed; any failure ends the test.
func runEmbeddedScript(t *testing.T, script string, trusted bool) []byte {
	t.Helper()
	vm, err := core.Open(core.Options{Engine: "embedded", Trusted: trusted, Limits: core.Limits{MaxOutputBytes: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	res, err := vm.Exec(context.Background(), []byte(script), core.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Success {
		t.Fatalf("embedded: %s", res.Stderr)
	}
	return res.Stdout
}
