package gotests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

// deadlineCase is a Go call reachable from sandboxed Lua that once ran for
// a long time without polling the call's limits. setup builds its data in
// a persistent VM (generous timeout); chunk then runs with a short timeout
// and must return soon after it. chunk is `local x = <chunk>` in an endless
// loop unless it starts with "!" (then it runs as it is). check, when set,
// runs after the stops and must return true: the state is whole. TRY in
// chunk is replaced by a number of its own for each try (a chunk compiled
// once is cached). grace, when set, replaces the default. fresh runs each
// try on a new VM (a call after one that made millions of tables can stop
// in the memory walk at its start, before the chunk's first instruction).
type deadlineCase struct {
	name, setup, chunk, check string
	grace                     time.Duration
	fresh                     bool
}

// TestSandboxedBuiltinsStopAtTheDeadline: a sandboxed chunk runs on its
// caller's goroutine, also with a timeout, so a Go call that does not poll
// the call's limits returns only when it ends, however late. Each of these
// ran from tens of milliseconds to seconds past a 30 ms deadline (the
// comments say how long, before the fix), on one 2-core VM; each now
// polls, or was made short enough not to need to. (A few did not overshoot
// by more than the grace in every run before their fix: they guard it.)
func TestSandboxedBuiltinsStopAtTheDeadline(t *testing.T) {
	// The strings' sizes: 128 MiB (a builtin may build 256 MiB), 4 MiB
	// under the race detector, which only checks that the stops work.
	big := "2^27"
	if raceBuild {
		big = "2^22"
	}
	S := `s = string.rep("a", ` + big + `) `
	huge := "2^28"
	if raceBuild {
		huge = "2^22"
	}
	dir := t.TempDir()
	// The cases leave a gigabyte of garbage: collect it now, not while a
	// later test times a deadline of its own.
	t.Cleanup(runtime.GC)
	cases := []deadlineCase{
		// gopher-lua compared strings a byte at a time: 0.3 s per
		// comparison of 256 MiB (now strings.Compare: 16 ms).
		{name: "string <", setup: `s = string.rep("a", ` + huge + `)`, chunk: `s < s`},
		{name: "string <=", setup: `s = string.rep("a", ` + huge + `)`, chunk: `s <= s`},
		// gopher-lua's compiler looked every constant up in a list: a
		// 56 KB chunk of 7,000 global names compiled for 0.6 s on the
		// chunk's thread.
		{name: "load many constants", setup: manyNames, chunk: `load(src)`},
		// A chunk under 64 KiB compiled on the chunk's thread: 0.1 s for
		// one of 63 KiB (the slowest syntax found).
		{name: "load 63 KiB", setup: `src = string.rep("f{} ", 2^14 - 200)`, chunk: `!load(src) while true do end`, grace: 50 * time.Millisecond},
		// And a top-level chunk under 256 KiB: 0.35 s for 240 KB.
		{name: "compile 240 KB", chunk: "!local function f() while true do end end --TRY\n" + strings.Repeat("f{} ", 60000)},
		// os.date copied plain text a byte at a time: 0.25 s.
		{name: "os.date", setup: S, chunk: `os.date(s)`},
		// Names: cleaning and resolving a name of 128 MiB took 0.5 s;
		// require probed it on every package.path template and quoted it
		// in every message (2 s); module made a table per part of a
		// dotted name (0.85 s for a million parts, and a name of 2^27
		// parts would have taken the host's memory).
		{name: "io.open", setup: S, chunk: `io.open(s)`},
		{name: "io.lines", setup: S, chunk: `pcall(io.lines, s)`},
		{name: "io.output", setup: S, chunk: `pcall(io.output, s)`},
		{name: "loadfile", setup: S, chunk: `loadfile(s)`},
		{name: "dofile", setup: S, chunk: `pcall(dofile, s)`},
		{name: "require", setup: S, chunk: `pcall(require, s)`},
		// require probed a package.path or package.cpath of a million
		// templates in a loop that polled nothing (5.6 s), and joined
		// the messages of any number of loaders in one Go call.
		{name: "require long path", setup: `package.path = string.rep("/tmp/?;", 1e6)`, chunk: `pcall(require, "x")`},
		{name: "require long cpath", setup: `package.path = "" package.cpath = string.rep("/tmp/?;", 1e6)`, chunk: `pcall(require, "x")`},
		{name: "require many loaders", setup: `local l = package.loaders for i = 1, 1e6 do l[#l + 1] = os.clock end`, chunk: `pcall(require, "x")`},
		// module called each of its options (up to unpack's million)
		// in a loop that polled nothing: 55-75 ms for builtins.
		{name: "module options", setup: `opts = {} for i = 1, 999999 do opts[i] = package.seeall end`,
			chunk: `!local module, unpack = module, unpack for i = 1, 1e9 do module("o" .. i, unpack(opts)) end`, grace: 30 * time.Millisecond},
		{name: "module", setup: `m = string.rep("a.", 2^20)`, chunk: `!local module = module for i = 1, 1e9 do module("t" .. i .. "." .. m) end`, fresh: true},
		// Files in an allowed directory were read and written in one Go
		// call: 0.1-0.5 s for 128 MiB (write, read "a", "l", n, lines,
		// "n" past white space), 0.13 s for a million values written,
		// ~60 ms for a million formats read. A read that is stopped leaves
		// the file where it was.
		{name: "file:write", setup: S + `f = io.open("DIR/out", "w")`, chunk: `f:write(s)`},
		{name: `file:read("a")`, setup: `g = io.open("DIR/big")`, chunk: `!g:seek("set") local x = g:read("*a") while true do end`,
			check: `local p = g:seek() return p == 0 or p == ` + big, grace: 50 * time.Millisecond},
		{name: `file:read("l")`, chunk: `!for i = 1, 1e9 do local f = io.open("DIR/big") local x = f:read("*l") f:close() end`},
		{name: `file:read(n)`, chunk: `!for i = 1, 1e9 do local f = io.open("DIR/big") local x = f:read(2^30) f:close() end`},
		{name: `io.lines of a file`, chunk: `!for i = 1, 1e9 do for l in io.lines("DIR/big") do end end`},
		{name: `file:read("n")`, chunk: `!for i = 1, 1e9 do local f = io.open("DIR/spaces") local x = f:read("*n") f:close() end`},
		{name: "file:read formats", setup: `fmts = {} for i = 1, 1e6 do fmts[i] = "*l" end`,
			chunk: `!for i = 1, 1e9 do local f = io.open("DIR/lines") local x = f:read(unpack(fmts)) f:close() end`},
		{name: "file:write values", setup: `nums = {} for i = 1, 1e6 do nums[i] = i + 0.5 end f = io.open("DIR/out", "w")`, chunk: `f:write(unpack(nums))`},
	}
	// Long copies: one Go call each, of up to 0.9 s for 128 MiB on a
	// 2-core VM (zeroing reused memory in make, touching fresh pages, a
	// buffer's growth copying what it held): string.sub's copy, a 128 MiB
	// gsub replacement, a second %s, error and assert adding a position to
	// a 128 MiB message. They move data in pieces with polls between, into
	// room that is not zeroed first. (These spikes come and go: the
	// cases guard the fixes but did not fail every run before them.)
	cases = append(cases,
		deadlineCase{name: "string.sub copy", setup: S, chunk: `s:sub(2, -2)`},
		deadlineCase{name: "gsub long replacement", setup: S + `t = {a = s}`, chunk: `string.gsub("aa", "a", t)`},
		deadlineCase{name: "format %s%s", setup: S, chunk: `string.format("%s%s", s, s)`},
		deadlineCase{name: "assert long message", setup: S, chunk: `pcall(assert, false, s)`},
		deadlineCase{name: "error long message", setup: S, chunk: `!local f = function() error(s, 1) end for i = 1, 1e9 do pcall(f) end`},
		// loadstring and load copied a source over the source limit before
		// refusing it, and scanned all of it for its first line (for the
		// chunk's name): 60 ms a call for 128 MiB, 0.35 s at times for
		// a load reader returning it.
		deadlineCase{name: "loadstring too large", setup: S, chunk: `loadstring(s)`},
		deadlineCase{name: "load reader too large", setup: S, chunk: `load(function() return s end)`},
		// A builtin as load's reader runs no instruction: the loop that
		// called it polled nothing, and load(os.clock) read 16 MiB of
		// numerals 8 bytes at a time for 1.4 s.
		deadlineCase{name: "load reader builtin", chunk: `load(os.clock)`},
	)
	// The native bio functions (require "bio_compute.native") ran as one
	// Go call: six_frames of 128 MiB 0.45 s, reverse_complement 0.13 s,
	// translate 0.1 s.
	B := `bn = require("bio_compute.native") seq = string.rep("ACGT", ` + big + ` / 4) `
	cases = append(cases,
		deadlineCase{name: "bio reverse_complement", setup: B, chunk: `!local x = bn.reverse_complement(seq) while true do end`, grace: 50 * time.Millisecond},
		deadlineCase{name: "bio translate", setup: B, chunk: `!local x = bn.translate(seq, -1) while true do end`, grace: 50 * time.Millisecond},
		deadlineCase{name: "bio six_frames", setup: B, chunk: `!local x = bn.six_frames(seq) while true do end`},
	)
	// A store that grows a table's array part took over the hash part's
	// keys in a row, or filled a hole of up to twice its length, in one
	// Go call: 0.3 s for a million keys of a table filled backwards, up
	// to 0.2 s for a hole of 2^21 slots. A growth that is stopped leaves
	// the table as it was.
	n := "1e6"
	if raceBuild {
		n = "1e5"
	}
	cases = append(cases,
		deadlineCase{name: "table growth, keys taken over", fresh: true,
			setup: `big = {} for i = ` + n + `, 100, -1 do big[i] = i end for i = 1, 98 do big[i] = i end`,
			chunk: `!big[99] = "x" while true do end`,
			check: `local n, count = ` + n + `, 0
				for k, v in pairs(big) do
				  count = count + 1
				  if v ~= k and not (k == 99 and v == "x") then return k end
				end
				if count ~= n - (big[99] and 0 or 1) or (#big ~= 98 and #big ~= n) then return count, #big end
				return true`},
		deadlineCase{name: "table growth, long hole", fresh: true,
			setup: `big = {} for i = 1, 2^21 do big[i] = i end`,
			chunk: `!big[2^22 + 60] = "x" while true do end`,
			check: `return #big == 2^21 and big[2^22 + 60] == nil or #big == 2^22 + 60 and big[2^22 + 60] == "x"`},
	)
	// A new array part (or value stack) of millions of values was made in
	// one Go call, zeroed, often after marking for the collector first:
	// a hole growing 2^23 values to 2^24 returned 0.13-0.35 s late, and
	// the copy of the old part into the new one did not poll at all.
	// `{unpack(t)}` of a million values: 10-100 ms late.
	hole := "2^23"
	if raceBuild {
		hole = "2^18"
	}
	cases = append(cases,
		deadlineCase{name: "table growth, new array part", fresh: true,
			setup: `big = {} for i = 1, ` + hole + ` do big[i] = true end`,
			chunk: `!big[2 * ` + hole + ` + 60] = "x" while true do end`,
			check: `local n = ` + hole + ` return #big == n and big[2 * n + 60] == nil or #big == 2 * n + 60 and big[2 * n + 60] == "x"`},
		deadlineCase{name: "unpack onto the stack", setup: `big = {} for i = 1, 1e6 do big[i] = true end`,
			chunk: `{unpack(big)}`},
	)
	size := 1 << 27
	if raceBuild {
		size = 1 << 22
	}
	for name, data := range map[string][]byte{
		"big":    bytes.Repeat([]byte("a"), size),
		"spaces": bytes.Repeat([]byte(" "), size),
		"lines":  bytes.Repeat([]byte("x\n"), 1e6),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const timeout = 30 * time.Millisecond
	// A polled call stops within a few ms of the deadline; allocating a
	// result of 128 MiB (fresh memory, page by page) takes up to a few
	// hundred ms on this machine now and then, so each case has three
	// tries and the best counts.
	const grace = 100 * time.Millisecond
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setup := strings.ReplaceAll(c.setup, "DIR", dir)
			if setup == "" {
				setup = "kept = 1"
			}
			var vm *core.VM
			newVM := func() {
				if vm != nil {
					vm.Close()
				}
				vm = open(t, core.Options{Persistent: true, AllowedPaths: []string{dir}})
				if _, err := vm.Exec(context.Background(), []byte(setup), core.ExecOptions{Timeout: time.Minute}); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			newVM()
			defer func() { vm.Close() }()
			chunk := strings.ReplaceAll(c.chunk, "DIR", dir)
			if rest, ok := strings.CutPrefix(chunk, "!"); ok {
				chunk = rest
			} else {
				chunk = "for i = 1, 1e9 do local x = " + chunk + " end"
			}
			var tries []string
			best := time.Hour
			grace := grace
			if c.grace > 0 {
				grace = c.grace
			}
			for try := range 3 {
				if try > 0 && c.fresh {
					newVM()
				}
				chunk := strings.ReplaceAll(chunk, "TRY", fmt.Sprint(try, time.Now().UnixNano()))
				err, took := execErr(t, vm, chunk, timeout)
				if core.CodeOf(err) != core.ErrTimeout || strings.Contains(err.Error(), "reset") {
					t.Fatalf("got %v after %v, want a timeout with the state kept", err, took)
				}
				tries = append(tries, took.Round(time.Millisecond).String())
				if best = min(best, took); best < timeout+grace {
					break
				}
			}
			t.Logf("returned after %s", strings.Join(tries, ", "))
			if best > timeout+grace && !raceBuild {
				t.Errorf("returned %v after its %v deadline at best", best-timeout, timeout)
			}
			if c.check != "" {
				res := run(t, vm, c.check)
				if string(res.Values) != "[true]" {
					t.Errorf("after the stops: %s %s", res.Values, res.Stderr)
				}
			}
		})
	}
}

// manyNames sets src to a chunk of about 56 KB that assigns to 7,000
// distinct global names.
var manyNames = fmt.Sprintf(`local parts = {} for i = 1, %d do parts[i] = "g" .. i .. "=1 " end src = table.concat(parts)`, 7000)

// TestStoppedGrowthsDoNotPileUp: a large array part is made on a goroutine
// of its own, which a stopped call leaves behind. A growth retried with a
// 1 ms timeout, over and over, must not leave one allocation running per
// call (each of 134 MiB here, of gigabytes for a larger table): a new one
// waits for the last.
func TestStoppedGrowthsDoNotPileUp(t *testing.T) {
	n := "2^22"
	if raceBuild {
		n = "2^18"
	}
	vm := open(t, core.Options{Persistent: true})
	if _, err := vm.Exec(context.Background(), []byte(`big = {} for i = 1, `+n+` do big[i] = true end`), core.ExecOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base, most := runtime.NumGoroutine(), 0
	for range 30 {
		err, _ := execErr(t, vm, `big[2 * `+n+` + 60] = "x" while true do end`, time.Millisecond)
		if core.CodeOf(err) != core.ErrTimeout {
			t.Fatalf("got %v, want a timeout", err)
		}
		most = max(most, runtime.NumGoroutine()-base)
	}
	if most > 2 {
		t.Errorf("%d more goroutines after stopped growths, want at most 2 (one allocation, one timer)", most)
	}
	if res := run(t, vm, `return #big`); string(res.Values) != "[4194304]" && string(res.Values) != "[262144]" {
		t.Errorf("the table changed: #big = %s", res.Values)
	}
}

// TestFreshEnvironmentCleanupIsShort: after a call on a fresh environment
// the engine deletes the globals the chunk added, or drops the state when
// there are too many (maxTombstones). It walked every added key first,
// and looked at every key that is not a string (MaxN), after the call's
// deadline: a chunk storing globals until a 1 s deadline returned 0.45 s
// (string keys) to 0.67 s (number keys) late.
func TestFreshEnvironmentCleanupIsShort(t *testing.T) {
	cases := map[string]string{
		"string keys": `local i = 0 while true do i = i + 1 _G["k" .. i] = i end`,
		"number keys": `local i = 0 while true do i = i + 1 _G[i + 0.5] = i end`,
	}
	const timeout = time.Second
	const grace = 100 * time.Millisecond
	vm := open(t, core.Options{})
	for name, code := range cases {
		t.Run(name, func(t *testing.T) {
			err, took := execErr(t, vm, code, timeout)
			if core.CodeOf(err) != core.ErrTimeout {
				t.Fatalf("got %v after %v, want a timeout", err, took)
			}
			t.Logf("returned after %v", took)
			if took > timeout+grace && !raceBuild {
				t.Errorf("returned %v after its %v deadline", took-timeout, timeout)
			}
			mustPrint2(t, vm)
			res := run(t, vm, `return k1, next({}), rawget(_G, 1.5)`)
			if string(res.Values) != "[null,null,null]" {
				t.Errorf("the next call sees %s", res.Values)
			}
		})
	}
}
