//go:build linux

package luaproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"libbioxen/core"
)

var interpreters = []string{"lua5.4", "lua5.1", "luajit"}

func TestMain(m *testing.M) {
	// Crash tests kill interpreters with SIGSEGV: no core files.
	syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
	os.Exit(m.Run())
}

// eachLua runs f as a subtest for every interpreter found on PATH.
func eachLua(t *testing.T, f func(t *testing.T, interp string)) {
	t.Helper()
	for _, in := range interpreters {
		t.Run(in, func(t *testing.T) {
			if _, err := exec.LookPath(in); err != nil {
				t.Skipf("%s not on PATH", in)
			}
			f(t, in)
		})
	}
}

func openEngine(t testing.TB, interp string, lim core.Limits) *Engine {
	t.Helper()
	eng, err := Open(core.Options{Engine: "process", Interpreter: interp, Limits: lim, Trusted: true})
	if err != nil {
		t.Fatalf("Open(%s): %v", interp, err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng.(*Engine)
}

type execOpts struct {
	persistent bool
	print      bool
	name       string
	timeout    time.Duration
}

func execCode(e *Engine, code string, o execOpts) (*core.Result, error) {
	if o.name == "" {
		o.name = "=input"
	}
	if o.timeout == 0 {
		o.timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	return e.Exec(ctx, &core.Request{Code: []byte(code), ChunkName: o.name, Fresh: !o.persistent, PrintResults: o.print})
}

func mustExec(t *testing.T, e *Engine, code string, o execOpts) *core.Result {
	t.Helper()
	r, err := execCode(e, code, o)
	if err != nil {
		t.Fatalf("Exec(%q): %v", code, err)
	}
	return r
}

func wantCode(t *testing.T, err error, code core.Code) *core.Error {
	t.Helper()
	var ce *core.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *core.Error", err, err)
	}
	if ce.Code != code {
		t.Fatalf("error code %v (%v), want %v", ce.Code, err, code)
	}
	return ce
}

func TestOutput(t *testing.T) {
	cases := []struct {
		name, code     string
		stdout, stderr string
	}{
		{"print", `print("a", 1, nil, true) print()`, "a\t1\tnil\ttrue\n\n", ""},
		{"print float", `print(2.5, -0.25)`, "2.5\t-0.25\n", ""},
		{"io.write", `io.write("x", 1, 2.5) io.write("\n")`, "x12.5\n", ""},
		{"io.stdout methods", `io.stdout:setvbuf("no") io.stdout:write("a"):write("b") io.stdout:flush()`, "ab", ""},
		{"io.output", `io.output():write("o") assert(io.output() == io.stdout) io.write("p")`, "op", ""},
		{"io.stderr", `io.stderr:write("e1") io.stderr:write("e2\n") print("out")`, "out\n", "e1e2\n"},
		{"io.type", `print(io.type(io.stdout), io.type(io.stderr), io.type(42))`, "file\tfile\tnil\n", ""},
		{"stdin is empty", `print(io.read(), io.read("a"), io.stdin:read("l"), io.read("n"))`, "nil\t\tnil\tnil\n", ""},
		{"io.lines", `local n = 0 for l in io.lines() do n = n + 1 end for l in io.stdin:lines() do n = n + 1 end print(n)`, "0\n", ""},
		{"raw stdout in order", `print("a") os.execute("echo raw") print("b")`, "a\nraw\nb\n", ""},
		{"raw stderr", `io.stderr:write("x\n") os.execute("echo rawerr >&2") io.stderr:write("y\n")`, "", "x\nrawerr\ny\n"},
		{"popen", `local p = io.popen("echo piped") local s = p:read("*l") p:close() print(s)`, "piped\n", ""},
		{"utf8 and binary", `io.write("h\195\169\255\0z")`, "h\u00e9\xff\x00z", ""},
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := mustExec(t, e, c.code, execOpts{})
				if !r.Success || r.ReturnCode != 0 {
					t.Fatalf("failed: rc=%d %q", r.ReturnCode, r.Stderr)
				}
				if string(r.Stdout) != c.stdout {
					t.Errorf("stdout %q, want %q", r.Stdout, c.stdout)
				}
				if string(r.Stderr) != c.stderr {
					t.Errorf("stderr %q, want %q", r.Stderr, c.stderr)
				}
				if r.Truncated {
					t.Errorf("Truncated set")
				}
			})
		}
	})
}

func TestRedirectAndSharedState(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "out.txt")
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		steps := []struct{ code, stdout, values string }{
			// io.output/io.input to real files, then back to the defaults.
			{fmt.Sprintf(`io.output(%q) io.write("to file") io.close(io.output()) io.input(%q) return io.read("*a")`, file, file), "", `["to file"]`},
			{`io.write("std") return io.read()`, "std", `[null]`},
			// Shared metatables changed by a chunk are put back.
			{`getmetatable("").__index = {} getmetatable("").__add = function() return 1 end
			  local mt = getmetatable(io.open("/dev/null"))
			  mt.__index.write = nil mt.__index.read = nil mt.__index.flush = nil mt.__index.close = nil
			  print(getmetatable(io.stdout))`, "false\n", `[]`},
			{`print(("x"):upper(), pcall(function() return "a" + "b" end)) local f = io.open("/dev/null") print(type(f.read), f:close())`, "X\tfalse\t", ""},
			// A debug hook left by a chunk is gone in the next one.
			{`local n = 0 debug.sethook(function() n = n + 1 end, "", 100)`, "", `[]`},
			{`return (debug.gethook())`, "", `[null]`},
		}
		for i, s := range steps {
			r := mustExec(t, e, s.code, execOpts{})
			if !r.Success {
				t.Fatalf("step %d: %s", i, r.Stderr)
			}
			if !strings.HasPrefix(string(r.Stdout), s.stdout) {
				t.Errorf("step %d: stdout %q, want %q", i, r.Stdout, s.stdout)
			}
			if s.values != "" && string(r.Values) != s.values {
				t.Errorf("step %d: values %s, want %s", i, r.Values, s.values)
			}
		}
	})
}

func TestWriteBadArgument(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		for _, code := range []string{"io.write({})", "io.stdout:write({})"} {
			r := mustExec(t, e, code, execOpts{})
			want := "input:1: bad argument #1 to 'write' (string expected, got table)"
			if r.Success || r.ErrorMessage != want {
				t.Errorf("%s: error %q, want %q", code, r.ErrorMessage, want)
			}
		}
	})
}

func TestPrintResults(t *testing.T) {
	cases := []struct{ code, printed, plain string }{
		{`return 1, nil, "x"`, "1\tnil\tx\n", ""},
		{`return nil`, "nil\n", ""},
		{`return true, 2.5`, "true\t2.5\n", ""},
		{`print("p") return "r"`, "p\nr\n", "p\n"},
		{`local x = 1`, "", ""},
		{`return`, "", ""},
		{`os.exit(0)`, "", ""},
		{`error("e")`, "", ""},
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		for _, c := range cases {
			r := mustExec(t, e, c.code, execOpts{print: true})
			if string(r.Stdout) != c.printed {
				t.Errorf("%s: stdout %q, want %q", c.code, r.Stdout, c.printed)
			}
			r = mustExec(t, e, c.code, execOpts{})
			if string(r.Stdout) != c.plain {
				t.Errorf("%s without PrintResults: stdout %q, want %q", c.code, r.Stdout, c.plain)
			}
		}
	})
}

func TestValues(t *testing.T) {
	type vcase struct {
		code, want string
		only       string // interpreter the case is for ("" = all)
	}
	cases := []vcase{
		{`return 1, -7, 1.5, "s", true, false, nil`, `[1,-7,1.5,"s",true,false,null]`, ""},
		{`return`, `[]`, ""},
		{`return nil, nil`, `[null,null]`, ""},
		{`return 0.1, 1e300, -0.0`, `[0.1,1e+300,-0.0]`, ""},
		{`return math.huge, -math.huge, 0/0`, `[{"$f":"inf"},{"$f":"-inf"},{"$f":"nan"}]`, ""},
		{`return math.maxinteger, math.mininteger, 3 // 2, 2^53`, `[9223372036854775807,-9223372036854775808,1,9007199254740992]`, "lua5.4"},
		{`return "a\0b", "tab\tq\"", ""`, `["a\u0000b","tab\tq\"",""]`, ""},
		{`return "\255\0a", "\195\169"`, `[{"$b":"/wBh"},"é"]`, ""},
		{`return {1, 2, {3, "x"}}`, `[[1,2,[3,"x"]]]`, ""},
		{`return {a = 1}`, `[{"$t":[["a",1]]}]`, ""},
		{`return {}`, `[{"$t":[]}]`, ""},
		{`return {[3] = 3}, {[0] = 0}, {n = 1, 1}`, `[{"$t":[[3,3]]},{"$t":[[0,0]]},{"$t":[[1,1],["n",1]]}]`, "lua5.4"},
		{`return {[1.5] = true}`, `[{"$t":[[1.5,true]]}]`, ""},
		{`local t = {} t[1] = t return t`, `[[{"$o":"table","s":"<cycle>"}]]`, ""},
		{`local a = {1} return {a, a}`, `[[[1],[1]]]`, ""},
		{`return {{{{1}}}}`, `[[[[{"$o":"table","s":"<depth limit>"}]]]]`, ""},
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{MaxValueDepth: 3})
		for _, c := range cases {
			if c.only != "" && c.only != interp {
				continue
			}
			r := mustExec(t, e, c.code, execOpts{})
			if !r.Success {
				t.Fatalf("%s: %s", c.code, r.Stderr)
			}
			if got := string(r.Values); got != c.want {
				t.Errorf("%s:\n got %s\nwant %s", c.code, got, c.want)
			}
			if _, err := core.DecodeValues(r.Values); err != nil {
				t.Errorf("%s: %v", c.code, err)
			}
		}
		// Opaque values carry their type and tostring text.
		r := mustExec(t, e, `local f = function() end return f, tostring(f), coroutine.create(f), io.open("/dev/null")`, execOpts{})
		vals, err := core.DecodeValues(r.Values)
		if err != nil {
			t.Fatal(err)
		}
		fn, ok := vals[0].(core.Opaque)
		if !ok || fn.Type != "function" || fn.Text != vals[1] {
			t.Errorf("function value %#v (tostring %v)", vals[0], vals[1])
		}
		if th, ok := vals[2].(core.Opaque); !ok || th.Type != "thread" || !strings.HasPrefix(th.Text, "thread: ") {
			t.Errorf("thread value %#v", vals[2])
		}
		if ud, ok := vals[3].(core.Opaque); !ok || ud.Type != "userdata" || !strings.HasPrefix(ud.Text, "file (") {
			t.Errorf("userdata value %#v", vals[3])
		}
	})
}

func TestValueSizeLimit(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{MaxValueBytes: 200})
		for _, code := range []string{
			`return string.rep("x", 100000)`,
			`local t = {} for i = 1, 10000 do t[i] = i end return t`,
			`local t = {} for i = 1, 10000 do t["k" .. i] = {i} end return t`,
			`local t = {} for i = 1, 10000 do t[{i}] = i end return t`,
			`local t = {} for i = 1, 10000 do t[i] = string.rep("\255", 100) end return 1, t, 2`,
		} {
			r := mustExec(t, e, code, execOpts{})
			if !r.Success {
				t.Fatalf("%s: %s", code, r.Stderr)
			}
			if len(r.Values) > 2000 {
				t.Errorf("%.40s: %d bytes of values", code, len(r.Values))
			}
			if _, err := core.DecodeValues(r.Values); err != nil {
				t.Errorf("%.40s: %v in %s", code, err, r.Values)
			}
			if !strings.Contains(string(r.Values), "<size limit>") {
				t.Errorf("%.40s: no size marker in %s", code, r.Values)
			}
		}
	})
}

// TestHugeSyntaxError: a syntax error quotes the token it met, which can
// be the whole source ("unexpected symbol near '"aaa..."'"). Under a source
// limit above MaxFrameSize, the driver sent such a message whole: a frame
// over the limit, which the host took for a protocol error and killed
// the interpreter for.
func TestHugeSyntaxError(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openSandboxed(t, interp, core.Options{Limits: core.Limits{MaxSourceBytes: 80 << 20}})
		code := "\"" + strings.Repeat("a", 65<<20) + "\""
		r, err := execCode(e, code, execOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Success || !strings.HasPrefix(r.ErrorMessage, "input:1: unexpected symbol near '\"aaa") || len(r.ErrorMessage) > 64<<10 {
			t.Fatalf("Success %v, error of %d bytes: %.100q", r.Success, len(r.ErrorMessage), r.ErrorMessage)
		}
	})
}

// TestManyValues: a chunk may return as many values as the interpreter
// allows (table.unpack of 900,000 on Lua 5.4). The driver gathered them
// with a vararg function that put them on the stack twice, and a chunk
// returning more than ~500,000 values failed with the driver's own
// "[bioxen driver]:<line>: stack overflow".
func TestManyValues(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		if interp != "lua5.4" {
			t.Skip("unpack gives at most ~8,000 values")
		}
		e := openSandboxed(t, interp, core.Options{})
		r := mustExec(t, e, `local t = {} for i = 1, 900000 do t[i] = i end return table.unpack(t)`, execOpts{})
		if !r.Success || !strings.HasPrefix(string(r.Values), "[1,2,3,") || !strings.HasSuffix(string(r.Values), ",899999,900000]") {
			t.Fatalf("Success %v, error %q, %d bytes of values", r.Success, r.ErrorMessage, len(r.Values))
		}
	})
}

// TestPrintManyArguments: print and io.write took each argument with
// select(i, ...), which copies the arguments after i: quadratic, so that
// print(table.unpack(t)) of 200,000 values ran for half a minute (lua5.4
// prints them in 20 ms).
func TestPrintManyArguments(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		if interp != "lua5.4" {
			t.Skip("unpack gives at most ~8,000 values")
		}
		e := openSandboxed(t, interp, core.Options{Limits: core.Limits{MaxOutputBytes: 4 << 20}})
		for _, f := range []string{"print", "io.write", "io.stdout:write", "io.stderr:write"} {
			r, err := execCode(e, `local t = {} for i = 1, 200000 do t[i] = i % 10 end `+f+`(table.unpack(t))`, execOpts{timeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if n := len(r.Stdout) + len(r.Stderr); !r.Success || n < 200000 {
				t.Errorf("%s: Success %v, %d bytes of output, error %q", f, r.Success, n, r.ErrorMessage)
			}
		}
	})
}

func TestFreshAndPersistent(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		fresh := execOpts{}
		pers := execOpts{persistent: true}
		steps := []struct {
			code string
			o    execOpts
			want string
		}{
			// Fresh: globals and library changes vanish with the call.
			{`x = 42 string.foo = 1 table.insert = nil
			  function string.shout(s) return s:upper() .. "!" end
			  return ("a"):shout(), x`, fresh, `["A!",42]`},
			{`return x, string.foo, ("a").shout, type(table.insert), getmetatable("").__index == string, _G == _ENV or setfenv ~= nil`, fresh, `[null,null,null,"function",true,true]`},
			{`_G.y = 1 rawset(_G, "z", 2) return y, z`, fresh, `[1,2]`},
			{`return y, z, rawget(_G, "print") ~= nil`, fresh, `[null,null,true]`},
			// Persistent: one global table across calls.
			{`x = 1 function string.shout(s) return s:upper() end`, pers, `[]`},
			{`x = x + 1 return x, ("a"):shout()`, pers, `[2,"A"]`},
			// A fresh call in between sees none of it ...
			{`return x, ("a").shout`, fresh, `[null,null]`},
			// ... and does not disturb it.
			{`return x, ("b"):shout()`, pers, `[2,"B"]`},
		}
		for i, s := range steps {
			r := mustExec(t, e, s.code, s.o)
			if !r.Success {
				t.Fatalf("step %d: %s", i, r.Stderr)
			}
			if string(r.Values) != s.want {
				t.Errorf("step %d: values %s, want %s", i, r.Values, s.want)
			}
		}
	})
}

func TestLoadAndRequire(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mod.lua"), []byte(`counter = (counter or 0) + 1 return {name = "mod", seen = x}`), 0o644)
	os.WriteFile(filepath.Join(dir, "broken.lua"), []byte(`this is not lua`), 0o644)
	os.WriteFile(filepath.Join(dir, "script.lua"), []byte(`z = (x or 0) * 2 return z`), 0o644)
	setPath := fmt.Sprintf("package.path = %q .. '/?.lua;' .. package.path ", dir)
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		steps := []struct {
			code string
			o    execOpts
			want string
		}{
			// Loaded code sees and sets the chunk's globals.
			{`x = 7 local f = load("y = x + 1") f() return y, (loadstring or load)("return x")()`, execOpts{}, `[8,7]`},
			{`x = 3 return dofile(` + fmt.Sprintf("%q", filepath.Join(dir, "script.lua")) + `), z, loadfile(` + fmt.Sprintf("%q", filepath.Join(dir, "script.lua")) + `)()`, execOpts{}, `[6,6,6]`},
			// require follows the environment's package.path; the module
			// runs in the chunk's environment and is cached in its
			// package.loaded.
			{setPath + `x = 5 local m = require("mod") local m2 = require("mod")
			  return m.name, m.seen, counter, package.loaded.mod == m, m2 == m`, execOpts{}, `["mod",5,1,true,true]`},
			// A fresh call starts with a fresh package.loaded.
			{`return package.loaded.mod, counter, package.path:find(` + fmt.Sprintf("%q", dir) + `, 1, true)`, execOpts{}, `[null,null,null]`},
			{`package.loaded.fake = {} package.preload.p = function(n) return n .. "!" end return (require("p"))`, execOpts{}, `["p!"]`},
			{`return package.loaded.fake, package.preload.p, package.loaded.p`, execOpts{}, `[null,null,null]`},
			{`return require("string") == string, package.loaded.string == string, package.loaded._G == _G, require("table").insert == table.insert`, execOpts{}, `[true,true,true,true]`},
			// Persistent: modules stay loaded.
			{setPath + `x = 1 return require("mod").seen`, execOpts{persistent: true}, `[1]`},
			{`x = 2 return require("mod").seen, counter`, execOpts{persistent: true}, `[1,1]`},
		}
		if interp == "lua5.4" {
			steps = append(steps, struct {
				code string
				o    execOpts
				want string
			}{`x = 1 return load("return x", "c", "t", {x = 2})(), load("return x")()`, execOpts{}, `[2,1]`})
		}
		for i, s := range steps {
			r := mustExec(t, e, s.code, s.o)
			if !r.Success {
				t.Fatalf("step %d: %s", i, r.Stderr)
			}
			if string(r.Values) != s.want {
				t.Errorf("step %d: values %s, want %s", i, r.Values, s.want)
			}
		}
		r := mustExec(t, e, `require("no_such_mod_xyz")`, execOpts{})
		for _, want := range []string{"input:1: module 'no_such_mod_xyz' not found:", "no field package.preload['no_such_mod_xyz']", "no file '"} {
			if !strings.Contains(r.ErrorMessage, want) {
				t.Errorf("require error %q lacks %q", r.ErrorMessage, want)
			}
		}
		r = mustExec(t, e, setPath+`require("broken")`, execOpts{})
		if !strings.Contains(r.ErrorMessage, "error loading module 'broken' from file") {
			t.Errorf("broken module: %q", r.ErrorMessage)
		}
		// A C module (LuaSocket), when the real interpreter can load it.
		if exec.Command(interp, "-e", `require("socket")`).Run() == nil {
			r = mustExec(t, e, `local s = require("socket") return type(s), type(require("socket.core").gettime)`, execOpts{})
			if string(r.Values) != `["table","function"]` {
				t.Errorf("socket: %s %q", r.Values, r.Stderr)
			}
		}
	})
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name, code, chunk string
		msg               string // exact ErrorMessage; "" = check prefix only
		msgPrefix         string
		msgContains       string
		stdout            string
	}{
		{name: "runtime", code: `error("boom")`, msg: "input:1: boom"},
		{name: "runtime line 2", code: "local x = 1\nerror('two')", msg: "input:2: two"},
		{name: "chunk name", code: `error("boom")`, chunk: "=script.lua", msg: "script.lua:1: boom"},
		{name: "file chunk name", code: `error("boom")`, chunk: "@/tmp/s.lua", msg: "/tmp/s.lua:1: boom"},
		{name: "arith", code: `local t = nil return t.x`, msgPrefix: "input:1: attempt to index"},
		{name: "table error", code: `error({})`, msg: "(error object is a table value)"},
		{name: "table error with __tostring", code: `error(setmetatable({}, {__tostring = function() while true do end end}))`, msg: "(error object is a table value)"},
		{name: "number error", code: `error(42, 0)`, msg: "42"},
		{name: "nil error", code: `error()`, msg: "(error object is a nil value)"},
		{name: "output kept", code: `print("before") io.stderr:write("err ") error("x", 0)`, msg: "x", stdout: "before\n"},
		{name: "syntax", code: `x x`, msgPrefix: "input:1: "},
		{name: "syntax eof", code: "if true then", msgPrefix: "input:1: "},
		{name: "binary chunk", code: "\x1bLua garbage", msgContains: "binary"},
		{name: "stack overflow", code: `local function f() return 1 + f() end return f()`, msgContains: "stack overflow"},
		{name: "error in print results", code: `return setmetatable({}, {__tostring = function() error("ts") end})`, msgPrefix: "error calling 'print'"},
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := mustExec(t, e, c.code, execOpts{name: c.chunk, print: true})
				if r.Success || r.ReturnCode != 1 {
					t.Fatalf("Success %v rc %d, want a failure with rc 1", r.Success, r.ReturnCode)
				}
				if c.msg != "" && r.ErrorMessage != c.msg {
					t.Errorf("ErrorMessage %q, want %q", r.ErrorMessage, c.msg)
				}
				if !strings.HasPrefix(r.ErrorMessage, c.msgPrefix) || r.ErrorMessage == "" {
					t.Errorf("ErrorMessage %q, want prefix %q", r.ErrorMessage, c.msgPrefix)
				}
				if !strings.Contains(r.ErrorMessage, c.msgContains) {
					t.Errorf("ErrorMessage %q lacks %q", r.ErrorMessage, c.msgContains)
				}
				stderr := string(r.Stderr)
				if i := strings.Index(stderr, r.ErrorMessage+"\nstack traceback:\n\t"); i < 0 {
					t.Errorf("stderr %q lacks message and traceback", stderr)
				}
				if !strings.HasSuffix(stderr, "\n\t[C]: in ?\n") {
					t.Errorf("stderr %q does not end like lua's traceback", stderr)
				}
				if strings.Contains(stderr, "bioxen driver") || strings.Contains(stderr, "xpcall") {
					t.Errorf("traceback shows the driver: %q", stderr)
				}
				if string(r.Stdout) != c.stdout {
					t.Errorf("stdout %q, want %q", r.Stdout, c.stdout)
				}
				if string(r.Values) != "[]" {
					t.Errorf("values %s after an error", r.Values)
				}
			})
		}
		// A runtime error's traceback names the user's frames.
		r := mustExec(t, e, "local function inner() error('deep') end\nlocal function outer() inner() end\nouter()", execOpts{})
		for _, want := range []string{"input:1: deep\nstack traceback:\n\t", "input:1: in ", "input:2: in ", "input:3: in main chunk"} {
			if !strings.Contains(string(r.Stderr), want) {
				t.Errorf("traceback %q lacks %q", r.Stderr, want)
			}
		}
		// The engine is fine afterwards.
		if r := mustExec(t, e, "return 1", execOpts{}); string(r.Values) != "[1]" {
			t.Errorf("after errors: %s", r.Values)
		}
	})
}

func TestExit(t *testing.T) {
	cases := []struct {
		code   string
		rc     int
		stdout string
	}{
		{`os.exit()`, 0, ""},
		{`os.exit(true)`, 0, ""},
		{`os.exit(false)`, 1, ""},
		{`os.exit(3)`, 3, ""},
		{`os.exit(0, true)`, 0, ""},
		{`os.exit(-1)`, -1, ""},
		{`print("a") os.exit(0) print("b")`, 0, "a\n"},
		{`print("a") os.exit(2) print("b")`, 2, "a\n"},
		{`pcall(os.exit, 5) print("caught")`, 5, ""},
		{`xpcall(function() os.exit(8) end, function(e) print("handler") return e end) print("after")`, 8, ""},
		{`coroutine.wrap(function() os.exit(6) end)() print("after")`, 6, ""},
		{`coroutine.resume(coroutine.create(function() os.exit(7) end)) print("after")`, 7, ""},
		{`local ok = pcall(function() pcall(error, "x") os.exit(9) end) print(ok)`, 9, ""},
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		for _, c := range cases {
			r := mustExec(t, e, c.code, execOpts{print: true})
			if r.ReturnCode != c.rc || r.Success != (c.rc == 0) {
				t.Errorf("%s: rc %d success %v, want rc %d (stderr %q)", c.code, r.ReturnCode, r.Success, c.rc, r.Stderr)
			}
			if string(r.Stdout) != c.stdout {
				t.Errorf("%s: stdout %q, want %q", c.code, r.Stdout, c.stdout)
			}
			if r.ErrorMessage != "" {
				t.Errorf("%s: ErrorMessage %q", c.code, r.ErrorMessage)
			}
		}
		if r := mustExec(t, e, `os.exit("x")`, execOpts{}); r.ReturnCode != 1 || !strings.Contains(r.ErrorMessage, "bad argument #1 to 'exit'") {
			t.Errorf("os.exit(\"x\"): rc %d msg %q", r.ReturnCode, r.ErrorMessage)
		}
		// The driver survived every os.exit.
		pid := e.Pid()
		if r := mustExec(t, e, "return 1", execOpts{}); string(r.Values) != "[1]" || e.Pid() != pid {
			t.Errorf("after os.exit: %s, pid %d -> %d", r.Values, pid, e.Pid())
		}
	})
}

func checkReaped(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no pid")
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("process %d still exists after the engine let it go (kill 0: %v)", pid, err)
	}
}

func TestTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	cases := []struct{ name, code string }{
		{"busy loop", `while true do end`},
		{"output flood", `while true do io.write(string.rep("x", 1000)) end`},
		{"blocked in a child", `os.execute("sleep 30")`},
		{"pcall loop", `while true do pcall(error, "x") end`},
		{"busy loop persistent", `x = 1 while true do end`}, // last: it leaves a persistent VM
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				persistent := strings.Contains(c.name, "persistent")
				pid := e.Pid()
				if pid == 0 {
					mustExec(t, e, "return 1", execOpts{})
					pid = e.Pid()
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				deadline, _ := ctx.Deadline()
				_, err := e.Exec(ctx, &core.Request{Code: []byte(c.code), ChunkName: "=input", Fresh: !persistent})
				late := time.Since(deadline)
				ce := wantCode(t, err, core.ErrTimeout)
				if late > 100*time.Millisecond {
					t.Errorf("error came %v after the deadline", late)
				}
				if !strings.Contains(ce.Msg, "next call") {
					t.Errorf("message %q does not say the interpreter restarts", ce.Msg)
				}
				if persistent != strings.Contains(ce.Msg, "global state is lost") {
					t.Errorf("message %q (persistent %v)", ce.Msg, persistent)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
				}
				checkReaped(t, pid)
				if e.Pid() != 0 {
					t.Errorf("pid %d after the timeout", e.Pid())
				}
				// The engine restarts on the next call; globals are gone.
				r := mustExec(t, e, "return x, 1 + 1", execOpts{persistent: persistent})
				if string(r.Values) != "[null,2]" {
					t.Errorf("after timeout: %s", r.Values)
				}
				if e.Pid() == pid || e.Pid() == 0 {
					t.Errorf("pid %d after restart (was %d)", e.Pid(), pid)
				}
			})
		}
	})
}

func TestCancel(t *testing.T) {
	if _, err := exec.LookPath("lua5.4"); err != nil {
		t.Skip("lua5.4 not on PATH")
	}
	e := openEngine(t, "lua5.4", core.Limits{})
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(200*time.Millisecond, cancel)
	defer timer.Stop()
	start := time.Now()
	_, err := e.Exec(ctx, &core.Request{Code: []byte("while true do end"), ChunkName: "=input", Fresh: true})
	wantCode(t, err, core.ErrTimeout)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}
	// An already expired context fails at once and leaves the interpreter.
	mustExec(t, e, "return 1", execOpts{})
	pid := e.Pid()
	_, err = e.Exec(ctx, &core.Request{Code: []byte("return 1"), ChunkName: "=input", Fresh: true})
	wantCode(t, err, core.ErrTimeout)
	if e.Pid() != pid {
		t.Errorf("an expired context restarted the interpreter")
	}
	// Calls with cancellable contexts leave no goroutine behind.
	for i := 0; i < 50; i++ {
		c, cancel := context.WithCancel(context.Background())
		e.Exec(c, &core.Request{Code: []byte("return 1"), ChunkName: "=input", Fresh: true})
		cancel()
	}
	for i := 0; i < 1000 && runtime.NumGoroutine() > base; i++ {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines, %d before", n, base)
	}
}

func TestCrash(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		check := func(t *testing.T, err error, pid int, wantStderr string) {
			t.Helper()
			ce := wantCode(t, err, core.ErrEngine)
			for _, want := range []string{"segmentation fault", interp, fmt.Sprint(pid), "next call", wantStderr} {
				if !strings.Contains(ce.Msg, want) {
					t.Errorf("message %q lacks %q", ce.Msg, want)
				}
			}
			checkReaped(t, pid)
			r := mustExec(t, e, "return 1 + 1", execOpts{})
			if string(r.Values) != "[2]" || e.Pid() == pid {
				t.Errorf("after crash: %s, pid %d (was %d)", r.Values, e.Pid(), pid)
			}
		}
		t.Run("signal during call", func(t *testing.T) {
			pid := e.Pid()
			// The escape sequence is shown, not sent to whoever reads
			// the message on a terminal (core.Printable).
			_, err := execCode(e, `os.execute("printf 'dying \\033[2J words' >&2; kill -SEGV $PPID") while true do end`, execOpts{})
			check(t, err, pid, `dying \x1b[2J words`)
		})
		t.Run("signal from the test", func(t *testing.T) {
			mustExec(t, e, "x = 1", execOpts{persistent: true})
			pid := e.Pid()
			if err := syscall.Kill(pid, syscall.SIGSEGV); err != nil {
				t.Fatal(err)
			}
			_, err := execCode(e, "return x", execOpts{persistent: true})
			check(t, err, pid, "global state is lost")
		})
		t.Run("exit during call", func(t *testing.T) {
			pid := e.Pid()
			_, err := execCode(e, `os.execute("kill -KILL $PPID") while true do end`, execOpts{})
			ce := wantCode(t, err, core.ErrEngine)
			if !strings.Contains(ce.Msg, "killed") {
				t.Errorf("message %q", ce.Msg)
			}
			checkReaped(t, pid)
		})
	})
}

// Debian's lua5.4 5.4.4 overflows its C stack and segfaults on a long chain
// of coroutine.close calls made from __close handlers.
// TestCoroutineCloseErrors: coroutine.close's errors read as the
// interpreter's; the driver's wrapper let them name its own line and local
// ("[bioxen driver]:516: bad argument #1 to 'co_close'").
func TestCoroutineCloseErrors(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		if interp != "lua5.4" {
			t.Skip("no coroutine.close")
		}
		e := openSandboxed(t, interp, core.Options{})
		r := mustExec(t, e, `local r = {}
			local function add(ok, err) r[#r + 1] = tostring(err) end
			add(pcall(function() coroutine.close(1) end))
			add(pcall(function() coroutine.close() end))
			add(pcall(function() coroutine.close(coroutine.running()) end))
			local outer = coroutine.running()
			add(select(2, coroutine.resume(coroutine.create(function() return pcall(coroutine.close, outer) end))))
			return table.concat(r, "|")`, execOpts{})
		want := `["input:3: bad argument #1 to 'close' (thread expected, got number)|input:4: bad argument #1 to 'close' (thread expected, got no value)|input:5: cannot close a running coroutine|cannot close a normal coroutine"]`
		if string(r.Values) != want {
			t.Errorf("got  %s\nwant %s (%s)", r.Values, want, r.ErrorMessage)
		}
	})
}

func TestLua54CoroutineCloseCrash(t *testing.T) {
	if _, err := exec.LookPath("lua5.4"); err != nil {
		t.Skip("lua5.4 not on PATH")
	}
	e := openEngine(t, "lua5.4", core.Limits{})
	pid := e.Pid()
	code := `
local co
for i = 1, 20000 do
  local prev = co
  co = coroutine.create(function()
    local x <close> = setmetatable({}, {__close = function() if prev then coroutine.close(prev) end end})
    coroutine.yield()
  end)
  coroutine.resume(co)
end
return coroutine.close(co)`
	r, err := execCode(e, code, execOpts{})
	if err == nil {
		t.Logf("this lua5.4 (%s) survived: rc %d %q", e.Version(), r.ReturnCode, r.Stderr)
	} else {
		ce := wantCode(t, err, core.ErrEngine)
		if !strings.Contains(ce.Msg, "signal") {
			t.Errorf("message %q does not name the signal", ce.Msg)
		}
		checkReaped(t, pid)
	}
	if r := mustExec(t, e, "return 'alive'", execOpts{}); string(r.Values) != `["alive"]` {
		t.Errorf("after crash: %s", r.Values)
	}
}

// TestHugeTraceback: the error message is clipped to 64 KiB, and the
// traceback is kept short too: one of a recursion through a function with
// an 8 MiB name (each frame's line names it) went to the host as one
// frame over MaxFrameSize, a protocol error that killed the interpreter
// (a persistent VM lost its globals) for an ordinary Lua error.
func TestHugeTraceback(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openSandboxed(t, interp, core.Options{})
		mustExec(t, e, "kept = 7", execOpts{persistent: true})
		r := mustExec(t, e, `local n = ("x"):rep(2^23)
			local f = assert(load("local function " .. n .. "(k) if k == 0 then error('e', 0) end return (" .. n .. "(k - 1)) end " .. n .. "(30)"))
			f()`, execOpts{persistent: true})
		if r.Success || r.ErrorMessage != "e" {
			t.Fatalf("Success %v, ErrorMessage %q", r.Success, r.ErrorMessage)
		}
		stderr := string(r.Stderr)
		if !strings.HasPrefix(stderr, "e\nstack traceback:\n\t") || !strings.HasSuffix(stderr, "\n\t[C]: in ?\n") || len(stderr) > 128<<10 {
			t.Errorf("stderr of %d bytes: %q ... %q", len(stderr), stderr[:min(len(stderr), 200)], stderr[max(0, len(stderr)-200):])
		}
		if r := mustExec(t, e, "return kept", execOpts{persistent: true}); string(r.Values) != "[7]" {
			t.Errorf("the persistent globals were lost: %s %s", r.Values, r.ErrorMessage)
		}
	})
}

func TestProtocolViolation(t *testing.T) {
	cases := []struct{ name, frame, want string }{
		{"garbage", `garbage\n`, "bad frame header"},
		{"huge frame", `O 99999999999\n`, "over the"},
		{"unknown tag", `Y 0\n`, "unexpected frame"},
		{"long header", string(make([]byte, 0)) + `OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO`, "header longer"},
	}
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				mustExec(t, e, "return 1", execOpts{})
				pid := e.Pid()
				code := `local f = assert(io.open("/dev/fd/4", "wb")) f:write("` + c.frame + `") f:flush() while true do end`
				_, err := execCode(e, code, execOpts{timeout: 10 * time.Second})
				ce := wantCode(t, err, core.ErrEngine)
				if !strings.Contains(ce.Msg, c.want) {
					t.Errorf("message %q lacks %q", ce.Msg, c.want)
				}
				checkReaped(t, pid)
				if r := mustExec(t, e, "return 2", execOpts{}); string(r.Values) != "[2]" {
					t.Errorf("after violation: %s", r.Values)
				}
			})
		}
	})
}

func TestOpenErrors(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		_, err := Open(core.Options{Interpreter: "no-such-lua-5.9"})
		ce := wantCode(t, err, core.ErrLuaNotFound)
		if !strings.Contains(ce.Error(), "no-such-lua-5.9") {
			t.Errorf("message %q does not name the interpreter", ce.Error())
		}
	})
	dir := t.TempDir()
	t.Run("not executable", func(t *testing.T) {
		p := filepath.Join(dir, "lua-noexec")
		os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644)
		_, err := Open(core.Options{Interpreter: p})
		ce := wantCode(t, err, core.ErrLuaNotFound)
		if !strings.Contains(ce.Error(), p) {
			t.Errorf("message %q does not name the interpreter", ce.Error())
		}
	})
	t.Run("not lua", func(t *testing.T) {
		p := filepath.Join(dir, "fake-lua")
		os.WriteFile(p, []byte("#!/bin/sh\necho \"fake-lua: unrecognized option $1\" >&2\nexit 3\n"), 0o755)
		_, err := Open(core.Options{Interpreter: p})
		ce := wantCode(t, err, core.ErrEngine)
		for _, want := range []string{"fake-lua: unrecognized option -e", "exit status 3"} {
			if !strings.Contains(ce.Msg, want) {
				t.Errorf("message %q lacks %q", ce.Msg, want)
			}
		}
	})
	t.Run("bad hello", func(t *testing.T) {
		p := filepath.Join(dir, "bad-hello")
		os.WriteFile(p, []byte("#!/bin/sh\necho oops >&2\necho 'hello?' >&4\nexec sleep 30\n"), 0o755)
		start := time.Now()
		_, err := Open(core.Options{Interpreter: p})
		ce := wantCode(t, err, core.ErrEngine)
		if !strings.Contains(ce.Msg, "bad frame header") {
			t.Errorf("message %q", ce.Msg)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
	})
	t.Run("dies after hello", func(t *testing.T) {
		// An interpreter whose exit the host sees in the same poll as its
		// hello: the start succeeded with a dead process, the next call
		// said "died during the call", and the start's stderr was lost.
		p := filepath.Join(dir, "hello-then-exit")
		os.WriteFile(p, []byte("#!/bin/sh\nprintf 'H 1 7\\nLua 5.4' >&4\necho 'fake-lua: gone' >&2\nexit 3\n"), 0o755)
		// Resolving this many allowed paths (PolicyFrame) holds the host
		// for 100 ms or so before its first poll: by then the script has
		// written the hello and exited.
		paths := make([]string, 20000)
		for i := range paths {
			paths[i] = dir
		}
		eng, err := Open(core.Options{Interpreter: p, AllowedPaths: paths})
		if err == nil {
			_, err = eng.Exec(context.Background(), &core.Request{Code: []byte("return 1"), ChunkName: "=input"})
			eng.Close()
			t.Fatalf("Open of an interpreter that exits after its hello succeeded; the call then said: %v", err)
		}
		ce := wantCode(t, err, core.ErrEngine)
		for _, want := range []string{"fake-lua: gone", "exit status 3"} {
			if !strings.Contains(ce.Msg, want) {
				t.Errorf("message %q lacks %q", ce.Msg, want)
			}
		}
	})
}

func TestOutputCap(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{MaxOutputBytes: 1000})
		r := mustExec(t, e, `io.write(string.rep("a", 5000)) io.stderr:write(string.rep("b", 3000)) os.execute("head -c 2000 /dev/zero") return 7`, execOpts{})
		if !r.Success || !r.Truncated {
			t.Fatalf("Success %v Truncated %v", r.Success, r.Truncated)
		}
		wantOut := strings.Repeat("a", 1000) + fmt.Sprintf(core.TruncationMarker, 6000)
		if string(r.Stdout) != wantOut {
			t.Errorf("stdout %d bytes %q...", len(r.Stdout), r.Stdout[len(r.Stdout)-60:])
		}
		wantErr := strings.Repeat("b", 1000) + fmt.Sprintf(core.TruncationMarker, 2000)
		if string(r.Stderr) != wantErr {
			t.Errorf("stderr %d bytes", len(r.Stderr))
		}
		if string(r.Values) != "[7]" {
			t.Errorf("values %s", r.Values)
		}
		r = mustExec(t, e, `print("small")`, execOpts{})
		if r.Truncated || string(r.Stdout) != "small\n" {
			t.Errorf("next call: %q truncated %v", r.Stdout, r.Truncated)
		}
	})
}

func TestLargeOutput(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{MaxOutputBytes: 64 << 20})
		code := `
local line = string.rep("x", 99) .. "\n"
for i = 1, 40000 do io.write(line) end          -- 4 MB in small writes
io.write(string.rep("y", 3000000))              -- 3 MB at once
os.execute("head -c 2000000 /dev/zero")         -- 2 MB raw
io.stderr:write(string.rep("e", 5000000))        -- 5 MB of stderr
os.execute("head -c 1000000 /dev/zero >&2")      -- 1 MB raw stderr
return "done"`
		r := mustExec(t, e, code, execOpts{timeout: 60 * time.Second})
		if !r.Success || r.Truncated {
			t.Fatalf("Success %v Truncated %v", r.Success, r.Truncated)
		}
		if len(r.Stdout) != 9000000 || len(r.Stderr) != 6000000 {
			t.Errorf("stdout %d bytes, stderr %d bytes", len(r.Stdout), len(r.Stderr))
		}
		if string(r.Stdout[3999900:4000000]) != strings.Repeat("x", 99)+"\n" || r.Stdout[4000000] != 'y' || r.Stdout[7000000] != 0 {
			t.Errorf("stdout out of order")
		}
		// A large chunk travels to the driver as well.
		big := "local s = [[" + strings.Repeat("z", 3<<20) + "]] return #s"
		r = mustExec(t, e, big, execOpts{})
		if string(r.Values) != fmt.Sprint("[", 3<<20, "]") {
			t.Errorf("big chunk: %s", r.Values)
		}
		// And large values come back.
		r = mustExec(t, e, `return string.rep("v", 5000000)`, execOpts{})
		vals, err := core.DecodeValues(r.Values)
		if err != nil || len(vals) != 1 || len(vals[0].(string)) != 5000000 {
			t.Errorf("big value: %v", err)
		}
	})
}

func TestEnvironment(t *testing.T) {
	t.Setenv("LUA_INIT", "error('LUA_INIT ran')")
	t.Setenv("LUA_INIT_5_1", "error('LUA_INIT_5_1 ran')")
	t.Setenv("LUA_INIT_5_4", "error('LUA_INIT_5_4 ran')")
	t.Setenv("BIOXEN_TEST_VAR", "kept")
	cwd, _ := os.Getwd()
	eachLua(t, func(t *testing.T, interp string) {
		e := openEngine(t, interp, core.Limits{})
		r := mustExec(t, e, `local p = io.popen("pwd") local d = p:read("*l") p:close()
			return os.getenv("LUA_INIT"), os.getenv("LUA_INIT_5_1"), os.getenv("LUA_INIT_5_4"), os.getenv("BIOXEN_TEST_VAR"), d --SECRET-MARKER`, execOpts{})
		want := fmt.Sprintf(`[null,null,null,"kept",%q]`, cwd)
		if string(r.Values) != want {
			t.Errorf("values %s, want %s", r.Values, want)
		}
		// The code went through the frame pipe, not the command line.
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", e.Pid()))
		if err != nil || strings.Contains(string(cmdline), "SECRET-MARKER") || !strings.Contains(string(cmdline), "-e") {
			t.Errorf("cmdline %q (%v)", cmdline, err)
		}
		if v := e.Version(); !strings.HasPrefix(v, "Lua 5.") {
			t.Errorf("version %q", v)
		}
	})
}

// gone reports whether pid no longer runs (absent or a zombie that its
// new parent has yet to reap).
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}

func TestClose(t *testing.T) {
	eachLua(t, func(t *testing.T, interp string) {
		vm, err := core.Open(core.Options{Engine: "process", Interpreter: interp, Trusted: true})
		if err != nil {
			t.Fatal(err)
		}
		// A background process left by a chunk holds the frame pipes open;
		// Close must still end promptly and take it down.
		r, err := vm.Exec(context.Background(), []byte(`local p = io.popen("sleep 30 </dev/null >/dev/null 2>&1 & echo $!") local pid = p:read("*l") p:close() return tonumber(pid)`), core.ExecOptions{})
		if err != nil || !r.Success {
			t.Fatalf("%v %v", r, err)
		}
		vals, _ := core.DecodeValues(r.Values)
		sleepPid, ok := vals[0].(int64)
		if !ok {
			vf, _ := vals[0].(float64)
			sleepPid = int64(vf)
		}
		if sleepPid <= 0 || gone(int(sleepPid)) {
			t.Fatalf("background sleep %v not running", vals[0])
		}
		start := time.Now()
		if err := vm.Close(); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Errorf("Close took %v", d)
		}
		for i := 0; i < 100000 && !gone(int(sleepPid)); i++ {
			runtime.Gosched()
		}
		if !gone(int(sleepPid)) {
			t.Errorf("background process %d survived Close", sleepPid)
		}
		if err := vm.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}

		// The engine itself: Close reaps, is idempotent, and later calls fail.
		eng, err := Open(core.Options{Interpreter: interp, Trusted: true})
		if err != nil {
			t.Fatal(err)
		}
		pid := eng.(*Engine).Pid()
		if err := eng.Close(); err != nil {
			t.Fatal(err)
		}
		checkReaped(t, pid)
		if err := eng.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		_, err = eng.Exec(context.Background(), &core.Request{Code: []byte("return 1"), ChunkName: "=input"})
		wantCode(t, err, core.ErrClosed)
		// Close after a crash (no interpreter running) is fine too.
		eng, _ = Open(core.Options{Interpreter: interp, Trusted: true})
		syscall.Kill(eng.(*Engine).Pid(), syscall.SIGKILL)
		eng.Exec(context.Background(), &core.Request{Code: []byte("return 1"), ChunkName: "=input"})
		if err := eng.Close(); err != nil {
			t.Errorf("Close after crash: %v", err)
		}
	})
}

func BenchmarkExecReturn(b *testing.B) {
	for _, interp := range interpreters {
		for _, fresh := range []bool{true, false} {
			name := interp + "/persistent"
			if fresh {
				name = interp + "/fresh"
			}
			b.Run(name, func(b *testing.B) {
				if _, err := exec.LookPath(interp); err != nil {
					b.Skipf("%s not on PATH", interp)
				}
				e := openEngine(b, interp, core.Limits{})
				req := &core.Request{Code: []byte("return 2 + 2"), ChunkName: "=input", Fresh: fresh}
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					r, err := e.Exec(ctx, req)
					if err != nil || string(r.Values) != "[4]" {
						b.Fatalf("%v %v", r, err)
					}
				}
			})
		}
	}
}
