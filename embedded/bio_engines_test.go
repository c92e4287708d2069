package embedded_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
	_ "libbioxen/luaproc"
)

// engineScript prints bio_compute's results and errors for edge inputs in a
// form that does not depend on the interpreter's number subtype (1 and 1.0
// print alike) or on the order of pairs(); errors keep their "chunk:line:"
// position, which must be the caller's line everywhere.
const engineScript = `
local bc = require("bio_compute")
local function num(v)
	if v ~= v then return "nan" end
	if v == math.floor(v) and v > -1e15 and v < 1e15 then return string.format("%d", v) end
	return string.format("%.17g", v)
end
local ser
function ser(v)
	local t = type(v)
	if t == "string" then
		return '"' .. string.gsub(v, "[^%w%p ]", function(c) return "\\" .. string.byte(c) end) .. '"'
	elseif t == "number" then
		return num(v)
	elseif t == "table" then
		local ks = {}
		for k in pairs(v) do ks[#ks + 1] = k end
		table.sort(ks, function(a, b) return ser(a) < ser(b) end)
		local out = {}
		for _, k in ipairs(ks) do out[#out + 1] = ser(k) .. "=" .. ser(v[k]) end
		return "{" .. table.concat(out, ",") .. "}"
	end
	return t
end
local function show(f, a, b)
	local ok, r = pcall(function()
		local v = bc[f](a, b) -- errors must point at this line
		return v
	end)
	if not ok then
		r = string.gsub(tostring(r), "^[^:]*:(%d+): ", "LINE %1: ")
	end
	print(f, ser(a), ser(b), ok, ser(r))
end
CASES
`

// runEngines runs engineScript with cases on the embedded engine (native
// kernels) and on the process engine with every installed interpreter
// (pure Lua), and fails on any line that differs.
func runEngines(t *testing.T, cases string) {
	t.Helper()
	code := strings.Replace(engineScript, "CASES", cases, 1)
	run := func(opts core.Options) string {
		t.Helper()
		// The process engine may not apply Options.PackagePath; the chunk's
		// own package.path works on every engine.
		src := fmt.Sprintf("package.path = %q .. \";\" .. package.path\n", bioPackagePath(t)) + code
		opts.PackagePath = bioPackagePath(t)
		vm, err := core.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Close()
		res, err := vm.Exec(context.Background(), []byte(src), core.ExecOptions{Timeout: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Success {
			t.Fatalf("%s %s failed: %s\n%s", opts.Engine, opts.Interpreter, res.ErrorMessage, res.Stderr)
		}
		return string(res.Stdout)
	}
	want := run(core.Options{Engine: "embedded"})
	if !strings.Contains(want, "\t") {
		t.Fatalf("no output: %q", want)
	}
	ran := 0
	for _, interp := range []string{"lua5.4", "lua5.1", "luajit"} {
		if _, err := exec.LookPath(interp); err != nil {
			continue
		}
		ran++
		got := run(core.Options{Engine: "process", Interpreter: interp})
		wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
		for i := range max(len(wl), len(gl)) {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				t.Errorf("%s differs from the embedded engine:\n  embedded: %s\n  %s: %s", interp, w, interp, g)
			}
		}
	}
	if ran == 0 {
		t.Skip("no lua5.4, lua5.1 or luajit installed")
	}
}

// TestBioEnginesErrorLine: every public function raises its errors at the
// caller's line on every interpreter. bio_compute.validate tail-called
// clean, so on Lua 5.2+ and LuaJIT (no frame for a tail call) its level
// pointed past the caller: no position at all.
func TestBioEnginesErrorLine(t *testing.T) {
	runEngines(t, `
for _, f in ipairs({ "validate", "base_counts", "gc_content", "reverse_complement", "translate",
	"six_frame_translation", "kmer_counts", "analyze_sequence" }) do
	show(f, 42, 2)
	show(f, "ACGTX", 2)
	show(f, "AC\nG\0", 2)
end
show("translate", "ACGT", 7)
show("kmer_counts", "ACGT", 0)
show("compute", -1)
`)
}
