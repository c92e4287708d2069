package embedded

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTableFuzz is a randomized differential test of the table code
// (gopher-lua's table.go with bioxen's patches: #t, table.insert(t, v),
// integer keys in the hash part; tablenext.go's next; the table library in
// builtins.go). It generates random Lua programs, each a sequence of
// operations on three tables t1, t2, t3, runs every program in lua5.1 and
// in the sandboxed embedded engine (runStdlibCases, as TestStdlibDiff does)
// and compares what they log. The operations:
//
//   - stores t[k] = v, t[k] = nil and rawset, reads t[k] and rawget, with
//     keys drawn from small integers, integers around the table's end
//     (max integer key + -2..70, twice it + 60..70, #t + -2..70, 2 * #t +
//     60..70), large integers (2^26 +- 1, 2^30, 2^31, 2^32 + 1, 1e15,
//     2^53 - 1, +-2^53, 2^60, 1e300), negative integers, 0 and -0,
//     fractions, integer-valued floats written as 2.0 or 1e1, strings,
//     booleans, +-inf and a table;
//   - loops of stores ascending and descending, of nils (holes), of sparse
//     stores, of pushes and pops;
//   - table.insert with 1 and 2 arguments, table.remove (no position, a
//     position in 1..#t+1, and positions 0, -1, 100...), #t, table.maxn,
//     ipairs, unpack(t) and unpack(t, i, j), table.sort (ascending or with a
//     comparator) and table.concat (whole or a range) on sequences;
//   - next and pairs traversals that clear or change the visited key, or a
//     list of other keys, during the traversal (which Lua allows: existing
//     fields may be changed and cleared);
//   - table constructors with holes ({1, nil, 3}, {n = 1, [5] = 2}, {...}
//     with nils).
//
// After the operations each program logs a canonical dump of each table (all
// pairs from pairs(), sorted, so traversal order does not matter), whether
// #t is a border (and its value when the table is a sequence), ipairs'
// results and table.maxn.
//
// Besides the comparison, the Lua helpers check every operation in the
// program itself (logging "BAD ..." when one fails, which fails the test
// whatever lua5.1 says): every pairs and next traversal (also those of the
// dump and the helpers) visits each key once, only keys of the table, with
// their current values, and stops at a key visited again rather than loop
// forever; #t is a border; table.insert,
// table.remove and unpack did what Lua 5.1 defines for the border #t gave
// (the rest of the table unchanged); ipairs stops at the first nil.
//
// #t of a table with holes may be any border, and lua5.1's choice differs
// from gopher-lua's. An operation whose effect depends on it (a push, an
// insert, a remove, a store at #t + d) on a table with holes is checked,
// then undone, so that both tables hold the same again; in a third of the
// programs (those that set REAL) it stays, and logs the border as "H#n":
// the comparison with lua5.1 ends at the first such entry where the two
// differ (the self-checks still run to the end). The other known
// differences are kept out of the comparison as tableFuzzKnown lists.
//
// On a difference the test reports the program minimized (operations
// removed while it still fails). Every bug this found is fixed, its program
// in tableFuzzFixed.
//
// TABLE_FUZZ_SEED=n TABLE_FUZZ_PROGRAMS=n go test ./embedded -run TableFuzz
// runs another sample.
func TestTableFuzz(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not on PATH")
	}
	seed, n := uint64(1), 600
	if raceEnabled {
		n = 60 // gopher-lua is about ten times slower under -race
	}
	if s := os.Getenv("TABLE_FUZZ_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	if s := os.Getenv("TABLE_FUZZ_PROGRAMS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	start := time.Now()
	for _, k := range tableFuzzKnown {
		t.Logf("known difference, kept out: %s: %s", k.what, k.why)
	}

	var progs [][]string
	for _, p := range tableFuzzFixed {
		progs = append(progs, strings.Split(strings.TrimSpace(p), "\n"))
	}
	r := rand.New(rand.NewPCG(seed, 11))
	for range n {
		progs = append(progs, tfProgram(r))
	}
	want, got := tfRun(t, luaBin, progs)
	bad, shown, diverged, entries := 0, 0, 0, 0
	for i, p := range progs {
		fail, div, nent := tfCompare(want[i], got[i])
		entries += nent
		if div {
			diverged++
		}
		if i < len(tableFuzzFixed) {
			if fail != "" {
				t.Errorf("fixed case %d fails again: %s\n%s", i, fail, strings.Join(p, "\n"))
			}
			continue
		}
		if fail == "" {
			continue
		}
		if bad++; shown < tfShow {
			shown++
			m := tfMinimize(t, luaBin, p)
			mw, mg := tfRun(t, luaBin, [][]string{m})
			mfail, _, _ := tfCompare(mw[0], mg[0])
			t.Errorf("program %d (seed %d) fails: %s\nminimized (%d of %d operations):\n%s\nfails with: %s\n  lua5.1:   %s\n  embedded: %s",
				i-len(tableFuzzFixed), seed, fail, len(m), len(p), strings.Join(m, "\n"), mfail, mw[0], mg[0])
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d programs fail", bad, n)
	}
	if diverged > len(progs)/2 {
		t.Errorf("%d of %d programs end their comparison at a border choice: the generator is too weak", diverged, len(progs))
	}
	t.Logf("%d programs (seed %d) and %d fixed cases, %d log entries compared, %d comparisons ended at a border lua5.1 chose differently; %v",
		n, seed, len(tableFuzzFixed), entries, diverged, time.Since(start))
}

// tfShow is how many failing programs the test minimizes and shows.
const tfShow = 4

// tableFuzzKnown are the differences from lua5.1 the test keeps out of the
// comparison, and how.
var tableFuzzKnown = []struct{ what, why string }{
	{"error message texts", "a program that raises logs \"err\" only (no program should raise: an error is a difference when only one side raises)"},
	{"#t of a table with holes", "any border is valid and gopher-lua's choice differs from lua5.1's: #t is checked to be a border, its value compared only on sequences; the comparison ends where an operation depending on it (push, insert, remove, t[#t + d]) saw a different border (\"H#n\" entries)"},
	{"table.maxn with non-integer keys", "gopher-lua considers only integer keys (lua5.1 any positive number, TestStdlibDiff's sdMaxn): MAXN logs \"maxn skipped\" when the table has a positive non-integer (or infinite) key"},
	{"table.insert(t, pos, v) with pos outside 1..#t+1", "raises, as in Lua 5.4 (sdInsPos): INSERT takes its position in 1..#t+1"},
	{"table.sort and table.concat of a table with holes or mixed values", "undefined order or an error in Lua: SORT and CONCAT run on sequences of numbers or of strings only, CONCATR on a range without holes"},
	{"unpack of more than ~8000 values", "lua5.1's C stack limit (sdUnpackLimit): UNPACKN is given at most 300"},
	{"-0 as a constant", "lua5.1's compiler keeps 0 and -0.0 in one constant (sdKZero): the key -0 is NZ, tonumber(\"-0\")"},
	{"the sign of the key 0", "t[0] and t[-0] are one field, but which zero pairs gives as its key depends on which was stored first, in lua5.1 also on a nil stored to an absent key or a dead key (Lua 5.3+ always gives 0): the dump shows \"n0\" for both"},
}

// tableFuzzFixed are programs (one operation a line) that found bugs, fixed
// since; they run before the random ones and must not fail.
var tableFuzzFixed = []string{
	// table.insert(t, v) appended to the array part without taking over
	// t[#t + 2] from the hash part: #t was 65 with t[66] set, and the next
	// push stored t[66] a second time, so that pairs never ended.
	`REAL = true
t1 = {[66] = 66}
for i = 1, 64 do t1[i] = i end
PUSH(t1, 65)
PUSH(t1, "x")`,
	// An assignment to an existing integer key of the hash part (t[100]
	// here) grew the array part over it, during a traversal: next then
	// started the hash part over ("x" visited twice) or skipped keys.
	`t1.x = 1
t1[100] = 1
t1.y = 2
for i = 1, 50 do t1[i] = i end
EACH(t1, function(k, v) t1[k] = v end)`,
	`t2[2^31] = 7
t2[120] = -1
for i = 121, 187 do t2[i] = i end
t2[53] = 7
TRAV(t2, 2, true, {2.0, 3, 4, 189}, nil)`,
	// table.maxn saw integer keys below 2^26 only.
	`t1[2^26] = 1
t2[2^53] = 2
t3[2^30] = 3
t3[5] = 5`,
	// table.sort(t, comp) (gopher-lua's) sorted the whole array part:
	// after table.remove(t) the comparator got the nil left past #t.
	`t1 = {3, 1, 2}
REMOVE(t1, 0)
SORT(t1, true)
t2 = {"c", "a", "b", "d"}
t2[4] = nil
SORT(t2, true)`,
}

// tableFuzzHarness defines the operations' helpers (on top of
// stdlibHarness, whose locals pack, ser1 and ser it uses) and RUN, which
// runs a program on fresh globals t1, t2, t3 and returns its log, entries
// separated by "|".
const tableFuzzHarness = `
KT, NZ = {}, tonumber("-0")
local LOGT, LOGN, NBAD
function LOG(s) LOGN = LOGN + 1; LOGT[LOGN] = s end
-- bad logs a failed self-check (the first 5 of a program).
local function bad(s)
  NBAD = NBAD + 1
  if NBAD <= 5 then LOG("BAD " .. s) end
end
local floor = math.floor
-- keystr is a key as the dump shows it: the key 0 as "n0" whichever
-- zero (tableFuzzKnown).
local function keystr(k) if k == 0 then return "n0" end return ser1(k) end
local function posint(k) return type(k) == "number" and k >= 1 and k == floor(k) end
-- EACH is pairs(t), stopped (as a failure) at a key visited twice: a
-- traversal that never ends fails, not hangs.
function EACH(t, f)
  local seen = {}
  for k, v in pairs(t) do
    if seen[k] then bad("pairs visits " .. ser1(k) .. " twice") return end
    seen[k] = true
    f(k, v)
  end
end
function COPY(t) local c = {} EACH(t, function(k, v) c[k] = v end) return c end
-- SAME checks that t holds exactly exp's pairs.
function SAME(t, exp, what)
  local n, wrong = 0, nil
  EACH(t, function(k, v)
    n = n + 1
    if not wrong and rawget(exp, k) ~= v then
      wrong = what .. ": t[" .. ser1(k) .. "] is " .. ser1(v) .. ", expected " .. ser1(rawget(exp, k))
    end
  end)
  if wrong then bad(wrong) return end
  EACH(exp, function() n = n - 1 end)
  if n ~= 0 then bad(what .. ": " .. -n .. " keys missing") end
end
-- SEQN is n when t's positive integer keys are exactly 1..n (#t is then n),
-- nil when t has holes.
function SEQN(t)
  local cnt, mx = 0, 0
  EACH(t, function(k)
    if posint(k) then cnt = cnt + 1; if k > mx then mx = k end end
  end)
  if cnt == mx then return mx end
end
-- E is t's largest positive integer key below 2^26 (0 if none): an end
-- that does not depend on the border #t chooses.
function E(t)
  local m = 0
  EACH(t, function(k) if posint(k) and k < 2^26 and k > m then m = k end end)
  return m
end
local function isborder(t, b) return (b == 0 or rawget(t, b) ~= nil) and rawget(t, b + 1) == nil end
local function border(t)
  local b = #t
  if not isborder(t, b) then bad("#t = " .. ser1(b) .. " is not a border") end
  return b
end
-- begin starts an operation that depends on #t: it returns a copy of t,
-- #t, and whether t has holes. Its log entry is #t when t is a sequence;
-- when t has holes, "H#" and #t in a program that sets REAL (lua5.1 may
-- choose another border: the comparison ends there), else "H" (the
-- operation is undone: finish restores t).
local function begin(t)
  local snap = COPY(t)
  local b = border(t)
  local holey = not SEQN(t)
  if not holey then LOG("#" .. b) elseif REAL then LOG("H#" .. b) else LOG("H") end
  return snap, b, holey
end
-- finish checks that t holds exactly exp's pairs, and undoes the operation
-- (t as snap) when t had holes, in a program that does not set REAL. It
-- reports whether the operation stays (its results may be logged).
local function finish(t, exp, what, snap, holey)
  SAME(t, exp, what)
  if not holey or REAL then return true end
  EACH(t, function(k) if rawget(snap, k) == nil then t[k] = nil end end)
  EACH(snap, function(k, v) if rawget(t, k) ~= v then t[k] = v end end)
  SAME(t, snap, "undoing " .. what)
  return false
end
-- LENR is #t read only: its value is logged for sequences.
function LENR(t)
  local b = border(t)
  if SEQN(t) then LOG("#" .. b) else LOG("holes") end
end
function GET(t, k) LOG("g" .. ser1(t[k]) .. "/" .. ser1(rawget(t, k))) end
function PUSH(t, v)
  local snap, b, holey = begin(t)
  local exp = COPY(snap)
  table.insert(t, v)
  exp[b + 1] = v
  finish(t, exp, "table.insert(t, " .. ser1(v) .. ") at #t = " .. b, snap, holey)
end
function INSERT(t, r, v)
  local snap, b, holey = begin(t)
  local exp = COPY(snap)
  local pos = 1 + r % (b + 1)
  table.insert(t, pos, v)
  for i = b, pos, -1 do exp[i + 1] = exp[i] end
  exp[pos] = v
  finish(t, exp, "table.insert(t, " .. pos .. ", " .. ser1(v) .. ") at #t = " .. b, snap, holey)
end
-- SETLEN is t[m * #t + d] = v (m is 1 if not given).
function SETLEN(t, d, v, m)
  local snap, b, holey = begin(t)
  local exp = COPY(snap)
  local k = (m or 1) * b + d
  t[k] = v
  exp[k] = v
  finish(t, exp, "t[" .. k .. "] = " .. ser1(v) .. " at #t = " .. b, snap, holey)
end
-- REMOVE is table.remove(t) (how 0), table.remove(t, 1 + x % (#t + 1))
-- (how 1) or table.remove(t, x) (how 2).
function REMOVE(t, how, x)
  local snap, b, holey = begin(t)
  local exp = COPY(snap)
  local pos, r = b
  if how == 0 then r = pack(table.remove(t))
  else
    if how == 1 then pos = 1 + x % (b + 1) else pos = x end
    r = pack(table.remove(t, pos))
  end
  local want = 0
  if pos >= 1 and pos <= b then
    want = 1
    if r[1] ~= exp[pos] then bad("table.remove returned " .. ser1(r[1]) .. ", t[" .. pos .. "] was " .. ser1(exp[pos])) end
    for i = pos, b - 1 do exp[i] = exp[i + 1] end
    exp[b] = nil
  end
  if r.n ~= want then bad("table.remove(t, " .. pos .. ") at #t = " .. b .. " returned " .. r.n .. " values") end
  if finish(t, exp, "table.remove(t, " .. pos .. ") at #t = " .. b, snap, holey) then
    LOG("rm" .. r.n .. ":" .. ser1(r[1]))
  end
end
function UNPACK(t)
  local b = border(t)
  local r = pack(unpack(t))
  if r.n ~= b then bad("unpack(t) gave " .. r.n .. " values, #t is " .. b) end
  for i = 1, r.n do
    if r[i] ~= rawget(t, i) then bad("unpack(t)[" .. i .. "] is " .. ser1(r[i])) end
  end
  if SEQN(t) then LOG("u" .. ser(r, 1, r.n)) else LOG("u holes") end
end
function UNPACKN(t, i, j)
  local r = pack(unpack(t, i, j))
  LOG("U" .. r.n .. ":" .. ser(r, 1, r.n))
end
function IPAIRS(t)
  local out, n = {}, 0
  for i, v in ipairs(t) do
    n = n + 1
    if i ~= n or rawget(t, i) ~= v then bad("ipairs gave " .. ser1(i) .. "=" .. ser1(v)) end
    out[n] = ser1(v)
  end
  if rawget(t, n + 1) ~= nil then bad("ipairs stopped before " .. (n + 1)) end
  LOG("ip" .. n .. ":" .. table.concat(out, ",", 1, n))
end
function MAXN(t)
  local skip = false
  EACH(t, function(k)
    if type(k) == "number" and k > 0 and (k ~= floor(k) or k >= 2^63) then skip = true end
  end)
  if skip then LOG("maxn skipped") return end
  LOG("maxn" .. ser1(table.maxn(t)))
end
-- homogeneous: t[i..j] are all numbers or all strings.
local function homogeneous(t, i, j, mixed)
  local ty
  for k = i, j do
    local tk = type(rawget(t, k))
    if (tk ~= "number" and tk ~= "string") or (not mixed and ty and tk ~= ty) then return false end
    ty = tk
  end
  return true
end
function SORT(t, desc)
  local n = SEQN(t)
  if not n or not homogeneous(t, 1, n) then LOG("nosort") return end
  if desc then table.sort(t, function(a, b) return a > b end) else table.sort(t) end
  LOG("sorted" .. n)
end
function CONCAT(t, sep)
  local n = SEQN(t)
  if not n or not homogeneous(t, 1, n, true) then LOG("noconcat") return end
  LOG("c" .. table.concat(t, sep))
end
function CONCATR(t, i, j)
  if not homogeneous(t, i, j, true) then LOG("noconcat") return end
  LOG("c" .. table.concat(t, ",", i, j))
end
-- CLASS sorts keys into 4 classes, the same in both interpreters.
local function class(k)
  local s = keystr(k)
  return (#s + string.byte(s, #s)) % 4
end
local function newv(v)
  local ty = type(v)
  if ty == "number" then return v + 1 elseif ty == "string" then return v .. "+" end
  return not v
end
-- TRAV traverses t with pairs (or next when usenext), clearing the visited
-- key when its class is mode and changing its value when it is mode + 1.
-- With a list of keys, the first visit of a key not in the list clears (or
-- changes, when set) those of the list that exist. Lua allows both: only
-- new keys are not.
function TRAV(t, mode, usenext, list, set)
  local exp, seen, inlist = COPY(t), {}, {}
  local before = COPY(t)
  if list then for _, k in ipairs(list) do inlist[k] = true end end
  local function visit(k, v)
    seen[k] = true
    if rawget(before, k) == nil then bad("traversal visits " .. ser1(k) .. ", not a key") end
    if rawget(t, k) ~= v then bad("traversal gives " .. ser1(k) .. "=" .. ser1(v) .. ", t[k] is " .. ser1(rawget(t, k))) end
    local c = class(k)
    if inlist[k] then -- (changed by the list's rule only)
    elseif c == mode then t[k] = nil; exp[k] = nil
    elseif c == (mode + 1) % 4 then local nv = newv(v); t[k] = nv; exp[k] = nv end
    if list and not inlist[k] then
      for _, q in ipairs(list) do
        if rawget(t, q) ~= nil then
          if set then t[q] = set; exp[q] = set else t[q] = nil; exp[q] = nil end
        end
      end
    end
  end
  if usenext then
    local k, v = next(t)
    while k ~= nil and not seen[k] do visit(k, v); k, v = next(t, k) end
    if k ~= nil then bad("next visits " .. ser1(k) .. " twice") end
  else
    EACH(t, visit)
  end
  EACH(t, function(k)
    if not seen[k] then bad("traversal missed " .. ser1(k)) end
  end)
  SAME(t, exp, "after a traversal")
end
local function dump(t, name)
  local ents, n = {}, 0
  EACH(t, function(k, v)
    if rawget(t, k) ~= v then bad(name .. ": pairs gives " .. ser1(k) .. "=" .. ser1(v)) end
    n = n + 1
    ents[n] = keystr(k) .. "=" .. ser1(v)
  end)
  table.sort(ents)
  LOG(name .. "{" .. table.concat(ents, " ", 1, n) .. "}")
  LENR(t)
  IPAIRS(t)
  MAXN(t)
end
function RUN(f)
  LOGT, LOGN, NBAD = {}, 0, 0
  t1, t2, t3, REAL = {}, {}, {}, false
  if not pcall(f) then LOG("err") end
  dump(t1, "t1")
  dump(t2, "t2")
  dump(t3, "t3")
  return table.concat(LOGT, "|", 1, LOGN)
end
`

// tfRun runs progs (operation lists) in lua5.1 and in the embedded engine
// and returns their logs.
func tfRun(t *testing.T, luaBin string, progs [][]string) (want, got []string) {
	t.Helper()
	cases := make([]string, len(progs))
	for i, p := range progs {
		cases[i] = "RUN(function()\n" + strings.Join(p, "\n") + "\nend)"
	}
	want, got = runStdlibCases(t, luaBin, tableFuzzHarness, cases, false)
	return want, got
}

// tfCompare compares the logs of a program: fail says what is wrong, if
// anything; diverged is true when the comparison ended at a border the
// two chose differently; entries is how many entries were compared.
func tfCompare(want, got string) (fail string, diverged bool, entries int) {
	w, g := tfEntries(want), tfEntries(got)
	for _, e := range g {
		if strings.HasPrefix(e, "BAD ") {
			return "embedded: " + e, false, 0
		}
	}
	for _, e := range w {
		if strings.HasPrefix(e, "BAD ") {
			return "lua5.1 (the self-checks are wrong): " + e, false, 0
		}
	}
	for i := 0; i < len(w) && i < len(g); i++ {
		if w[i] == g[i] {
			continue
		}
		if strings.HasPrefix(w[i], "H#") && strings.HasPrefix(g[i], "H#") {
			return "", true, i
		}
		prev := ""
		if i > 0 {
			prev = fmt.Sprintf(" (after %q)", w[i-1])
		}
		return fmt.Sprintf("entry %d%s: lua5.1 %q, embedded %q", i, prev, w[i], g[i]), false, i
	}
	if len(w) != len(g) {
		return fmt.Sprintf("lua5.1 logs %d entries, embedded %d", len(w), len(g)), false, min(len(w), len(g))
	}
	return "", false, len(w)
}

// tfEntries splits a result line (`ok\t"log"`) into its log entries.
func tfEntries(res string) []string {
	s, ok := strings.CutPrefix(res, "ok\t\"")
	if !ok || !strings.HasSuffix(s, "\"") {
		return []string{res}
	}
	return strings.Split(strings.TrimSuffix(s, "\""), "|")
}

// tfMinimize removes operations from a failing program while it still
// fails: chunks of half its length, then of a quarter, ... then single
// operations, all candidates of a round run in one batch.
func tfMinimize(t *testing.T, luaBin string, ops []string) []string {
	for len(ops) > 1 {
		var cands [][]string
		for size := len(ops) / 2; size >= 1; size /= 2 {
			for i := 0; i+size <= len(ops); i += size {
				c := append(append([]string(nil), ops[:i]...), ops[i+size:]...)
				cands = append(cands, c)
			}
		}
		want, got := tfRun(t, luaBin, cands)
		found := false
		for j, c := range cands {
			if fail, _, _ := tfCompare(want[j], got[j]); fail != "" {
				ops, found = c, true
				break
			}
		}
		if !found {
			break
		}
	}
	return ops
}

// The generator.

func tfPick(r *rand.Rand, s ...string) string { return s[r.IntN(len(s))] }

func tfKey(r *rand.Rand, tn string) string {
	switch r.IntN(13) {
	case 0, 1, 2:
		return strconv.Itoa(1 + r.IntN(12))
	case 3, 4:
		return fmt.Sprintf("E(%s) + %d", tn, r.IntN(73)-2)
	case 5:
		return fmt.Sprintf("2 * E(%s) + %d", tn, 60+r.IntN(11))
	case 6:
		return tfPick(r, "2^26 - 1", "2^26", "2^26 + 1", "2^30", "2^31", "2^32 + 1", "2^53", "2^53 - 1", "-2^53", "2^60", "1e15", "2^51 + 0.5", "2^52")
	case 7:
		return tfPick(r, "0", "NZ", "-1", "-2", "-64", "-2^31", "-1e3")
	case 8:
		return tfPick(r, "0.5", "1.5", "2.25", "-0.5", "63.5", "64.5", "1e-3", "1e300")
	case 9:
		return tfPick(r, "2.0", "3.0", "64.0", "65.0", "1e1", "1.5e2", "1.0")
	case 10:
		return tfPick(r, `"a"`, `"b"`, `"x"`, `"n"`, `"1"`, `"2"`, `""`)
	case 11:
		return tfPick(r, "true", "false", "math.huge", "-math.huge", "KT")
	default:
		return strconv.Itoa(13 + r.IntN(190))
	}
}

func tfValue(r *rand.Rand) string {
	return tfPick(r, "1", "2", "3", "7", "0", "-1", "1.5", `"v"`, `"w"`, `"1"`, "true", "false", "2^53", "1e15")
}

// tfSeqValue is a value for a table meant to stay sortable: a number or a
// string.
func tfSeqValue(r *rand.Rand) string {
	return tfPick(r, "1", "2", "3", "5", "8", "-1", "1.5", `"a"`, `"b"`, `"c"`)
}

var tfConstructors = []string{
	"{}",
	"{1, nil, 3}",
	"{nil, nil, 3}",
	"{n = 1, [5] = 2}",
	"{[1] = 1, 2}",
	`{1, 2, 3, [10] = 10, x = "y"}`,
	"{unpack({1, nil, 3}, 1, 3)}",
	"(function(...) return {...} end)(1, nil, 3, nil)",
	"{[2^30] = 1, [1.5] = 2, [-1] = 3, [0] = 4, [2^53] = 5}",
	"{1, 2, 3, nil}",
	"{[3] = 3, [2] = 2, [1] = 1}",
	"{[100] = 1, [200] = 2, 1, 2}",
	"{1, nil, 3, nil, 5, [70] = 70}",
	"{[66] = 66}",
	`{"c", "a", "b", "d"}`,
	"{5, 3, 1, 4, 2}",
	`{1, 2, [2] = "x", [3] = "y"}`,
	func() string {
		var b strings.Builder
		b.WriteString("{")
		for i := 1; i <= 70; i++ {
			fmt.Fprintf(&b, "%d, ", i)
		}
		b.WriteString("}")
		return b.String()
	}(),
}

// tfOp is one random operation on one of t1, t2, t3.
func tfOp(r *rand.Rand) string {
	tn := fmt.Sprintf("t%d", 1+r.IntN(3))
	switch w := r.IntN(100); {
	case w < 22:
		return fmt.Sprintf("%s[%s] = %s", tn, tfKey(r, tn), tfValue(r))
	case w < 32:
		return fmt.Sprintf("%s[%s] = nil", tn, tfKey(r, tn))
	case w < 35:
		if r.IntN(3) == 0 {
			return fmt.Sprintf("rawset(%s, %s, nil)", tn, tfKey(r, tn))
		}
		return fmt.Sprintf("rawset(%s, %s, %s)", tn, tfKey(r, tn), tfValue(r))
	case w < 40:
		return fmt.Sprintf("GET(%s, %s)", tn, tfKey(r, tn))
	case w < 46: // loops of stores
		a, b := 1+r.IntN(80), 1+r.IntN(150)
		switch r.IntN(5) {
		case 0:
			return fmt.Sprintf("for i = %d, %d do %s[i] = i end", a, b, tn)
		case 1:
			return fmt.Sprintf("for i = %d, %d, -1 do %s[i] = %s end", b, a, tn, tfSeqValue(r))
		case 2:
			return fmt.Sprintf("do local e = E(%s) for i = e + 1, e + %d do %s[i] = i end end", tn, 1+r.IntN(80), tn)
		case 3:
			return fmt.Sprintf("do local e = E(%s) for i = e + %d, e + 1, -1 do %s[i] = %s end end", tn, 1+r.IntN(140), tn, tfSeqValue(r))
		default:
			return fmt.Sprintf("for i = 1, %d do %s[%s + i * %d] = i end", 1+r.IntN(20), tn,
				tfPick(r, "0", "50", "1000", "2^26 - 10", "2^40", fmt.Sprintf("E(%s)", tn)), 1+r.IntN(70))
		}
	case w < 50: // holes
		a := 1 + r.IntN(100)
		return fmt.Sprintf("for i = %d, %d, %d do %s[i] = nil end", a, a+r.IntN(100), 1+r.IntN(7), tn)
	case w < 58: // pushes and stores at the border
		switch r.IntN(6) {
		case 5:
			return fmt.Sprintf("SETLEN(%s, %d, %s, 2)", tn, 60+r.IntN(11), tfSeqValue(r))
		case 0, 1:
			return fmt.Sprintf("PUSH(%s, %s)", tn, tfPick(r, tfSeqValue(r), tfSeqValue(r), "nil"))
		case 2:
			return fmt.Sprintf("for i = 1, %d do PUSH(%s, i) end", 1+r.IntN(70), tn)
		case 3:
			return fmt.Sprintf("SETLEN(%s, %d, %s)", tn, r.IntN(73)-2, tfSeqValue(r))
		default:
			return fmt.Sprintf("SETLEN(%s, 0, nil)", tn)
		}
	case w < 62:
		return fmt.Sprintf("INSERT(%s, %d, %s)", tn, r.IntN(1000), tfPick(r, tfSeqValue(r), tfSeqValue(r), "nil"))
	case w < 68:
		switch r.IntN(4) {
		case 0:
			return fmt.Sprintf("REMOVE(%s, 0)", tn)
		case 1:
			return fmt.Sprintf("REMOVE(%s, 1, %d)", tn, r.IntN(1000))
		case 2:
			return fmt.Sprintf("REMOVE(%s, 2, %s)", tn, tfPick(r, "0", "-1", "1", "2", "3", "100", "2^30"))
		default:
			return fmt.Sprintf("for i = 1, %d do REMOVE(%s, 0) end", 1+r.IntN(70), tn)
		}
	case w < 71:
		return fmt.Sprintf("LENR(%s)", tn)
	case w < 73:
		return fmt.Sprintf("MAXN(%s)", tn)
	case w < 75:
		return fmt.Sprintf("IPAIRS(%s)", tn)
	case w < 77:
		return fmt.Sprintf("UNPACK(%s)", tn)
	case w < 79:
		return fmt.Sprintf("UNPACKN(%s, %s, %s)", tn, tfPick(r, "1", "0", "-1", "2"),
			tfPick(r, "0", "3", "12", fmt.Sprintf("math.min(E(%s) + 1, 300)", tn)))
	case w < 82:
		return fmt.Sprintf("SORT(%s, %v)", tn, r.IntN(2) == 0)
	case w < 84:
		return fmt.Sprintf("CONCAT(%s, %s)", tn, tfPick(r, `""`, `","`, `" - "`))
	case w < 85:
		i := 1 + r.IntN(5)
		return fmt.Sprintf("CONCATR(%s, %d, %d)", tn, i, i+r.IntN(8)-1)
	case w < 93: // traversals
		list, set := "nil", "nil"
		if r.IntN(2) == 0 {
			ks := make([]string, 1+r.IntN(4))
			for i := range ks {
				ks[i] = tfKey(r, tn)
			}
			list = "{" + strings.Join(ks, ", ") + "}"
			if r.IntN(2) == 0 {
				set = tfValue(r)
			}
		}
		return fmt.Sprintf("TRAV(%s, %d, %v, %s, %s)", tn, r.IntN(5), r.IntN(2) == 0, list, set)
	case w < 96:
		return fmt.Sprintf("EACH(%s, function(k, v) %s[k] = v end)", tfPick(r, "t1", "t2", "t3"), tn)
	default:
		return fmt.Sprintf("%s = %s", tn, tfConstructors[r.IntN(len(tfConstructors))])
	}
}

// tfProgram is a random program: 5 to 40 operations, often starting with
// constructors.
func tfProgram(r *rand.Rand) []string {
	var ops []string
	if r.IntN(3) == 0 {
		ops = append(ops, "REAL = true")
	}
	for i := 1; i <= 3; i++ {
		if r.IntN(2) == 0 {
			ops = append(ops, fmt.Sprintf("t%d = %s", i, tfConstructors[r.IntN(len(tfConstructors))]))
		}
	}
	for n := 5 + r.IntN(36); n > 0; n-- {
		ops = append(ops, tfOp(r))
	}
	return ops
}
