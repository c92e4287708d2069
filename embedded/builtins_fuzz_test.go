package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

// TestBuiltinsHostileArgs calls the engine's own builtins with random,
// mostly wrong, arguments (huge, negative, NaN and fractional numbers,
// format strings, tables, nil): every call must end quickly in a value or
// a Lua error, never a Go runtime error (a panic in our code).
func TestBuiltinsHostileArgs(t *testing.T) {
	hostileCalls(t, true, []string{"string.format", "string.byte", "string.sub", "string.char", "string.rep", "string.len",
		"string.lower", "tonumber", "tostring", "table.concat", "table.insert", "table.remove", "table.sort",
		"unpack", "rawset", "setmetatable", "error", "os.date", "os.time", "string.find", "string.gsub"})
}

// TestSandboxedBuiltinsHostileArgs: the same for the io functions (in a
// sandbox with no allowed directory, so no file is made), coroutines,
// tracebacks, protected calls and the native bio_compute kernels.
func TestSandboxedBuiltinsHostileArgs(t *testing.T) {
	hostileCalls(t, false, []string{"io.open", "io.lines", "io.read", "io.write", "io.type", "io.close", "io.input",
		"io.output", "io.flush", "debug.traceback", "coroutine.resume", "coroutine.wrap", "coroutine.yield",
		"coroutine.status", "coroutine.create", "pcall", "xpcall", "select", "loadstring", "load",
		"require('bio_compute.native').clean", "require('bio_compute.native').base_counts", "require('bio_compute.native').reverse_complement",
		"require('bio_compute.native').translate", "require('bio_compute.native').six_frames", "require('bio_compute.native').kmer_counts"})
}

func hostileCalls(t *testing.T, trusted bool, funcs []string) {
	t.Helper()
	vals := []string{"nil", "0", "-1", "1", "2", "3", "1.5", "-0.0", "1e15", "2^53", "1e300", "-1e300", "1/0", "-1/0", "0/0",
		"255", "256", "65", "'abc'", "''", "'10'", "'0x10'", "' 1e2 '", "'%d'", "'%5.2f|%s|%q'", "'%'", "'%99.99f'",
		"'%-+ #0d'", "'%c%c'", "'!%c'", "'*t'", "'%Ex'", "'%Q'", "'[a-'", "'(%d+)'", "{}", "{1, 2, 3}", "{'a', 'b'}",
		"{[0] = 'z', 'a'}", "{year = 2020, month = 13, day = 40}", "{year = 1e300, month = 1, day = 1}",
		"setmetatable({}, {__tostring = function() return 'T' end})", "print", "true",
		"'ACGTNacgtn'", "'*n'", "'*a'", "'l'", "io.stdout", "io.stdin", "coroutine.create(print)", "function() end"}
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("local bad = {}\n")
	for i := 0; i < 4000; i++ {
		fn := funcs[r.IntN(len(funcs))]
		args := make([]string, r.IntN(5))
		for j := range args {
			args[j] = vals[r.IntN(len(vals))]
		}
		call := fmt.Sprintf("%s(%s)", fn, strings.Join(args, ", "))
		fmt.Fprintf(&b, "do local ok, e = pcall(function() return %s end) if not ok and tostring(e):find('runtime error', 1, true) then bad[#bad + 1] = %q .. ': ' .. tostring(e) end end\n", call, call)
	}
	b.WriteString("io.input(io.stdin) io.output(io.stdout) return table.concat(bad, '\\n')\n")
	vm, err := core.Open(core.Options{Engine: "embedded", Trusted: trusted})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	res, err := vm.Exec(context.Background(), []byte(b.String()), core.ExecOptions{Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Success {
		t.Fatalf("the batch failed: %s", res.Stderr)
	}
	if string(res.Values) != `[""]` {
		t.Fatalf("Go runtime errors:\n%s", res.Values)
	}
}
