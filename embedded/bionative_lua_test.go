package embedded_test

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
	_ "libbioxen/embedded"
)

// bioPackagePath finds bio_compute.lua in the repository.
func bioPackagePath(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "lua", "bio_compute", "src"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "?.lua")
}

func runLua(t *testing.T, opts core.Options, code string) string {
	t.Helper()
	vm, err := core.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{Timeout: 10 * time.Minute, ChunkName: "=bionative_test"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Success {
		t.Fatalf("Lua failed: %s\n%s%s", res.ErrorMessage, res.Stdout, res.Stderr)
	}
	return string(res.Stdout)
}

// compareScript loads bio_compute twice, with and without the native
// kernels, and checks that both give the same results (tables compared in
// iteration order) and the same error messages (positions included) on
// random sequences and bad arguments.
const compareScript = `
local function load(with_native)
	package.loaded.bio_compute = nil
	local saved = package.preload["bio_compute.native"]
	if not with_native then
		package.preload["bio_compute.native"] = nil
	end
	local m = require("bio_compute")
	package.preload["bio_compute.native"] = saved
	package.loaded.bio_compute = nil
	return m
end
local nat, pure = load(true), load(false)
assert(nat.native_kernels == true, "native kernels in use")
assert(pure.native_kernels == false, "pure Lua when the preload entry is gone")

local fmt = string.format
local function show(v)
	if type(v) == "string" then
		return #v > 60 and fmt("%q...(%d bytes)", string.sub(v, 1, 60), #v) or fmt("%q", v)
	end
	return tostring(v)
end

local function same(a, b, what)
	if type(a) ~= type(b) then
		error(fmt("%s: %s vs %s", what, show(a), show(b)), 0)
	end
	if type(a) ~= "table" then
		if a ~= b and not (a ~= a and b ~= b) then
			error(fmt("%s: native %s, Lua %s", what, show(a), show(b)), 0)
		end
		return
	end
	-- Same keys in the same iteration order, same values.
	local ka, kb = {}, {}
	for k in pairs(a) do ka[#ka + 1] = k end
	for k in pairs(b) do kb[#kb + 1] = k end
	if #ka ~= #kb then
		error(fmt("%s: %d keys vs %d", what, #ka, #kb), 0)
	end
	for i = 1, #ka do
		if ka[i] ~= kb[i] then
			error(fmt("%s: key %d is %s vs %s", what, i, show(ka[i]), show(kb[i])), 0)
		end
		same(a[ka[i]], b[ka[i]], what .. "[" .. show(ka[i]) .. "]")
	end
	if (getmetatable(a) == nil) ~= (getmetatable(b) == nil) then
		error(what .. ": metatables differ", 0)
	end
	if getmetatable(a) then
		same(tostring(a), tostring(b), what .. " tostring")
	end
end

-- Both modules are called from this one line, so error positions match.
local function try(f, a, b)
	local ok, r = pcall(function()
		local v = f(a, b) -- the caller's line errors point at
		return v
	end)
	return ok, r
end

local calls, errors = 0, 0
local function check(fname, a, b, what)
	local ok1, r1 = try(nat[fname], a, b)
	local ok2, r2 = try(pure[fname], a, b)
	what = fname .. "(" .. what .. ")"
	calls = calls + 1
	if ok1 ~= ok2 then
		error(fmt("%s: native %s %s, Lua %s %s", what, tostring(ok1), show(r1), tostring(ok2), show(r2)), 0)
	end
	if not ok1 then
		errors = errors + 1
		if not string.find(r1, "^bionative_test:%d+: bio_compute%." .. fname .. ": ") then
			error(fmt("%s: error not at the caller's line: %s", what, r1), 0)
		end
	end
	same(r1, r2, what)
end

local seed = 4242
local function rand(n)
	seed = (seed * 16807) % 2147483647
	return seed % n + 1
end
local function random_seq(len, alphabet)
	local t = {}
	for i = 1, len do
		local k = rand(#alphabet)
		t[i] = string.sub(alphabet, k, k)
	end
	return table.concat(t)
end

local alphabets = {
	"ACGT",
	"ACGTACGTACGTacgtNN \n",
	"ACGTURYSWKMBDHVNacgturyswkmbdhvn- \t\r\n\v\f",
	"ACGUacguN-",
	"ACGTTTUUNn\r\n",
}
local lengths = { 0, 1, 2, 3, 4, 5, 6, 7, 11, 100, 1001, 4097 }
local long = { [1] = true, [3] = true } -- the alphabets tried at 4097 bases
local kinds = { "ACGTX", "1", "*", "\0", "\200", ">", "e", "%", " Z" }
local frames = { 1, 2, 3, -1, -2, -3, 1.0, 0, 4, -4, 1.5, "1", true, 0 / 0 }
local ks = { 1, 2, 3, 6, 8, 12, 13, 20, 31, 32, 33, 2 ^ 53, 0, -1, 1.5, "2", true, 1 / 0, 0 / 0 }

-- every function on s; bad frames and k too when s is short.
local function all(s, label)
	local short = type(s) ~= "string" or #s <= 100
	for _, f in ipairs({ "validate", "base_counts", "gc_content", "reverse_complement",
		"six_frame_translation", "analyze_sequence" }) do
		check(f, s, nil, label)
	end
	check("translate", s, nil, label .. ", nil")
	for i = 1, short and #frames or 7 do
		check("translate", s, frames[i], label .. ", " .. tostring(frames[i]))
	end
	for i = 1, short and #ks or 12 do
		check("kmer_counts", s, ks[i], label .. ", " .. tostring(ks[i]))
	end
	if short then
		check("kmer_counts", s, nil, label .. ", nil")
	end
end

for ai, alphabet in ipairs(alphabets) do
	for _, len in ipairs(lengths) do
		if len > 4000 and not long[ai] then
			break
		end
		local s = random_seq(len, alphabet)
		local label = fmt("alphabet %d, length %d", ai, len)
		all(s, label)
		-- An invalid character somewhere (a line and column when after a newline).
		if len > 0 then
			local bad = kinds[rand(#kinds)]
			local p = rand(len)
			all(string.sub(s, 1, p - 1) .. bad .. string.sub(s, p), label .. ", invalid " .. show(bad) .. " at " .. p)
		end
	end
end
all(string.rep(string.rep("ACGT", 15) .. "\r\n", 100) .. string.rep("acgtn", 300), "FASTA body")
for _, v in ipairs({ 42, true, {} }) do
	all(v, type(v))
end
all(nil, "nil")
print(fmt("%d calls, %d errors compared", calls, errors))
`

func TestBioNativeMatchesLua(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		name := "sandbox"
		if trusted {
			name = "trusted"
		}
		t.Run(name, func(t *testing.T) {
			if trusted && raceBuild {
				t.Skip("-race: the sandbox run covers the same code")
			}
			out := runLua(t, core.Options{Engine: "embedded", Trusted: trusted, PackagePath: bioPackagePath(t)}, compareScript)
			t.Log(strings.TrimSpace(out))
		})
	}
}

// TestBioNativeModule checks the module as user code sees it, in the
// sandbox: exactly the documented fields, arguments checked.
func TestBioNativeModule(t *testing.T) {
	code := `
local n = require("bio_compute.native")
assert(rawequal(n, require("bio_compute.native")))
local keys = {}
for k, v in pairs(n) do keys[#keys + 1] = k .. ":" .. type(v) end
table.sort(keys)
print(table.concat(keys, " "))
print(n.clean(" ac gt\n"), n.clean("acgt", true), n.clean("ACXT"))
print(n.base_counts("ACGTUN-R acgt"))
print(n.base_counts("AC>"))
print(n.reverse_complement("AACGu"), n.translate("ATGGCCTAA"), n.translate("ATGGCCTAA", -1))
print(n.six_frames("ATGGCCATTGTAATGGGCCGCTGAAAGGGTGCCCGATAG"))
local c = n.kmer_counts("ACGTNACG", 3)
print(c.ACG, c.CGT, c.GTN, n.kmer_counts("ACGX", 1))
print(next(n.kmer_counts("ACGT", 2 ^ 60)))
for _, bad in ipairs({
	function() n.clean(42) end,
	function() n.translate("ACG", 4) end,
	function() n.translate("ACG", "1") end,
	function() n.kmer_counts("ACG", 0) end,
	function() n.kmer_counts("ACG", 1.5) end,
}) do
	local ok, err = pcall(bad)
	print(ok, err)
end
`
	out := runLua(t, core.Options{Engine: "embedded", PackagePath: bioPackagePath(t)}, code)
	want := `abi:number base_counts:function clean:function kmer_counts:function reverse_complement:function six_frames:function translate:function
ACGT	acgt	nil	3
2	2	2	3	1	2
nil	3
aCGTT	MA*	LGH
MAIVMGR*KGAR*	WPL*WAAERVPD	GHCNGPLKGCPI	LSGTLSAAHYNGH	YRAPFQRPITMA	IGHPFSGPLQWP
2	1	nil	nil	4
nil
false	bionative_test:17: bad argument #1 to clean (string expected, got number)
false	bionative_test:18: bad argument #2 to translate (frame must be 1, 2, 3, -1, -2 or -3)
false	bionative_test:19: bad argument #2 to translate (frame must be 1, 2, 3, -1, -2 or -3)
false	bionative_test:20: bad argument #2 to kmer_counts (k must be a positive integer)
false	bionative_test:21: bad argument #2 to kmer_counts (k must be a positive integer)
`
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

// TestBioNativeKmerTimeout: a long native k-mer count stops at the call's
// deadline like Lua code does, and the VM keeps its state (it was not stuck
// in a builtin).
func TestBioNativeKmerTimeout(t *testing.T) {
	if raceBuild {
		t.Skip("-race: Go loops run 10-50x slower, past the 20 ms grace a builtin gets")
	}
	vm, err := core.Open(core.Options{Engine: "embedded", Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	setup := `local t, x = {}, 1
for i = 1, 65536 do x = (x * 16807) % 2147483647 t[i] = string.sub("ACGT", x % 4 + 1, x % 4 + 1) end
S = string.rep(table.concat(t), 64) -- 4 MiB, 64 Ki distinct long k-mers
N = require("bio_compute.native")`
	if res, err := vm.Exec(context.Background(), []byte(setup), core.ExecOptions{}); err != nil || !res.Success {
		t.Fatalf("setup: %v %+v", err, res)
	}
	for _, k := range []string{"20", "40"} { // 2-bit codes in a map; text in a map
		_, err := vm.Exec(context.Background(), []byte("N.kmer_counts(S, "+k+")"), core.ExecOptions{Timeout: 20 * time.Millisecond})
		if core.CodeOf(err) != core.ErrTimeout || strings.Contains(err.Error(), "reset") {
			t.Errorf("k=%s: %v, want a timeout that keeps the state", k, err)
		}
		res, err := vm.Exec(context.Background(), []byte("return #S"), core.ExecOptions{})
		if err != nil || string(res.Values) != "[4194304]" {
			t.Fatalf("k=%s: the state was lost: %v %s", k, err, res.Values)
		}
	}
}

// TestBioNativeKmerMemoryLimit: distinct long k-mers hold len*k bytes as
// Lua strings, as they do when the Lua loops build them: over the VM's
// memory limit the call stops with the memory limit (it succeeded, or the
// kernel first copied them all in one Go allocation no limit saw).
func TestBioNativeKmerMemoryLimit(t *testing.T) {
	vm, err := core.Open(core.Options{Engine: "embedded", PackagePath: bioPackagePath(t),
		Limits: core.Limits{MaxMemoryBytes: 16 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	code := `local t, x = {}, 1
for i = 1, 2^16 do x = (x * 16807) % 2147483647 t[i] = string.sub("ACGT", x % 4 + 1, x % 4 + 1) end
local c = require("bio_compute").kmer_counts(table.concat(t), 2^15) -- 32 Ki keys of 32 KiB`
	_, err = vm.Exec(context.Background(), []byte(code), core.ExecOptions{Timeout: time.Minute})
	if core.CodeOf(err) != core.ErrNoMem {
		t.Fatalf("%v, want the memory limit", err)
	}
}

// TestBioNativeKmerGoMemory: the Go memory of a native k-mer count is held
// to the VM's memory limit: 2 MiB of random bases under a 32 MiB limit
// stop with the memory limit before the kernel takes much more than the
// limit (it took 400 MiB first, 200 times the sequence, under any limit).
func TestBioNativeKmerGoMemory(t *testing.T) {
	setup := `local four, B = {}, "ACGT"
for i = 0, 255 do
	local a, b, c, d = i % 4 + 1, math.floor(i / 4) % 4 + 1, math.floor(i / 16) % 4 + 1, math.floor(i / 64) + 1
	four[i] = string.sub(B, a, a) .. string.sub(B, b, b) .. string.sub(B, c, c) .. string.sub(B, d, d)
end
local t, x = {}, 1
for i = 1, 2^19 do x = (x * 16807) % 2147483647 t[i] = four[x % 256] end
S = table.concat(t) -- 2 MiB of random bases: nearly every 20-mer distinct
N = require("bio_compute.native")`
	for _, k := range []string{"20", "40"} { // 2-bit codes in a map; text in a map
		// A VM each: the memory limit resets the state.
		vm, err := core.Open(core.Options{Engine: "embedded", Persistent: true, Limits: core.Limits{MaxMemoryBytes: 32 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Close()
		if res, err := vm.Exec(context.Background(), []byte(setup), core.ExecOptions{}); err != nil || !res.Success {
			t.Fatalf("setup: %v %+v", err, res)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = vm.Exec(context.Background(), []byte("N.kmer_counts(S, "+k+")"), core.ExecOptions{Timeout: time.Minute})
		runtime.ReadMemStats(&after)
		if core.CodeOf(err) != core.ErrNoMem {
			t.Fatalf("k=%s: %v, want the memory limit", k, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 128<<20 {
			t.Errorf("k=%s: the call allocated %d MiB under a 32 MiB limit", k, alloc>>20)
		}
	}
}
