package embedded

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"libbioxen/core"
)

// filesScript writes and reads files in DIR with every mode and read
// format; its output must be the same in lua5.1 and in the engine.
const filesScript = `
local dir = DIR
local out = {}
local function p(...)
  local t = {}
  for i = 1, select('#', ...) do
    local v = select(i, ...)
    t[i] = type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  out[#out + 1] = table.concat(t, " ")
end
local function write(name, data, mode)
  local f = assert(io.open(dir .. name, mode or "w"))
  f:write(data)
  f:close()
end
write("a.fa", ">seq1 desc\nACGT\r\nGGCC\n\n>seq2\nTTTT")
write("n.txt", "12 3.5 0x10 -7e2\n  .5 1e+2 -0x1p4 nan 9\nabc 5\n")
write("empty.txt", "")
for line in io.lines(dir .. "a.fa") do p(line) end
for line in io.lines(dir .. "empty.txt") do p("never", line) end
local f = assert(io.open(dir .. "a.fa"))
p(f:read("*l"), f:read(3), f:read("*l"), f:read("*a"))
p(f:read("*a"), f:read("*l"), f:read(0), f:read(1), f:read("*n"))
f:close()
f = assert(io.open(dir .. "n.txt"))
p(f:read("*n", "*n", "*n", "*n"))
p(f:read("*n", "*n"))
p(f:read("*n"))
p(f:read("*l"), f:read("*l"), f:read("*l"), f:read("*l"))
f:close()
f = assert(io.open(dir .. "a.fa", "rb"))
p(f:seek("end"), f:seek("set", 2), f:read(4), f:seek("cur"), f:seek(), f:seek("cur", -3), f:read(2))
local n = 0 for l in f:lines() do n = n + 1 end p(n, f:read("*l"), f:read("*a"))
p(io.type(f), f:close(), io.type(f), io.type(io.stdout), io.type(42), tostring(f))
p(pcall(f.read, f))
-- append, read-write modes, interleaving
write("w.txt", "one\n")
write("w.txt", "two\n", "a")
f = assert(io.open(dir .. "w.txt", "r+"))
p(f:read("*l"))
f:seek("cur", 0)
f:write("TWO")
f:seek("set", 0)
p(f:read("*a"))
f:close()
f = assert(io.open(dir .. "w.txt", "w+"))
f:write("xyz", 1.5, 10)
p(f:seek("set", 1), f:read(2), f:read("*a"))
f:close()
f = assert(io.open(dir .. "w.txt", "a+"))
f:write("!")
f:seek("set", 0)
p(f:read("*a"))
f:close()
-- default input and output
io.output(dir .. "o.txt")
io.write("via io.write ", 42, "\n")
p(io.output() ~= io.stdout)
io.close()
io.output(io.stdout)
io.input(dir .. "o.txt")
p(io.read("*l"), io.read("*l"))
io.close(io.input())
io.input(io.stdin)
-- errors
p(io.open(dir .. "missing.txt"))
p(select("#", io.open(dir .. "missing.txt")))
for i, line in ipairs(out) do print(i, line) end
`

// TestFilesMatchLua51: reading and writing files behaves as in lua5.1 (the
// engine's own file objects, files.go).
func TestFilesMatchLua51(t *testing.T) {
	luaBin, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not on PATH")
	}
	run := func(f func(dir, script string) []byte) string {
		dir := t.TempDir()
		script := strings.Replace(filesScript, "DIR", luaQuote(dir+"/"), 1)
		out := string(f(dir, script))
		return strings.ReplaceAll(out, dir, "DIR")
	}
	want := run(func(_, script string) []byte { return runLuaFile(t, luaBin, script) })
	for _, trusted := range []bool{true, false} {
		got := run(func(dir, script string) []byte {
			vm, err := core.Open(core.Options{Engine: "embedded", Trusted: trusted, AllowedPaths: []string{dir}})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			res, err := vm.Exec(context.Background(), []byte(script), core.ExecOptions{})
			if err != nil || !res.Success {
				t.Fatalf("engine: %v %s", err, res.Stderr)
			}
			return res.Stdout
		})
		wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
		if len(wl) < 30 {
			t.Fatalf("lua5.1 printed only %d lines:\n%s", len(wl), want)
		}
		for i := 0; i < max(len(wl), len(gl)); i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			// pcall(f.read, closed f): Lua 5.1 raises from C under pcall
			// (no position), the engine from its Go builtin.
			if w != g && !(strings.Contains(w, "closed file") && strings.HasSuffix(g, strings.TrimPrefix(w, strings.SplitN(w, "\"", 2)[0]+"\""))) {
				t.Errorf("trusted=%v line %d:\n lua5.1 %s\n engine %s", trusted, i+1, w, g)
			}
		}
	}
}

// TestFilesLua54Rules: where Lua 5.1 and 5.4 differ, files follow 5.4:
// io.lines and file:lines take formats, a mode is checked, io.lines of a
// missing file says why.
func TestFilesLua54Rules(t *testing.T) {
	dir := t.TempDir()
	q := luaQuote(dir)
	vm := openVM(t, core.Options{AllowedPaths: []string{dir}})
	res, err := vm.Exec(context.Background(), []byte(`
		local f = assert(io.open(`+q+` .. "/n.txt", "w")) f:write("1 2\n3 4\n") f:close()
		local sums = {} for a, b in io.lines(`+q+` .. "/n.txt", "*n", "n") do sums[#sums + 1] = a + b end
		local ok1, e1 = pcall(io.open, `+q+` .. "/n.txt", "rw")
		local ok2, e2 = pcall(io.lines, `+q+` .. "/missing")
		return sums, e1:match("invalid mode 'rw'"), (e2:gsub("^.-: ", "", 1):gsub(".*/", ""))`), core.ExecOptions{})
	if err != nil || string(res.Values) != `[[3,7],"invalid mode 'rw'","missing: No such file or directory"]` {
		t.Errorf("%v %s %s", err, res.Values, res.Stderr)
	}
}

// TestFilesStayInTheSandbox: every way of opening a file by name goes
// through the allowed directories (gopher-lua's io.lines, io.input and
// io.output opened any path).
func TestFilesStayInTheSandbox(t *testing.T) {
	allowed, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	if err := os.WriteFile(secret, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(allowed, "link.txt")); err != nil {
		t.Fatal(err)
	}
	vm := openVM(t, core.Options{AllowedPaths: []string{allowed}, Persistent: true})
	for _, code := range []string{
		`for l in io.lines(SECRET) do return l end`,
		`io.input(SECRET) return io.read("*l")`,
		`io.output(OUTSIDE .. "/x.txt") io.write("x")`,
		`return assert(io.open(SECRET)):read("*a")`,
		`return assert(io.open(OUTSIDE .. "/y.txt", "w")):write("y")`,
		`return assert(io.open(ALLOWED .. "/link.txt")):read("*a")`,
		`for l in io.lines(ALLOWED .. "/../" .. OUTSIDE_BASE .. "/secret.txt") do return l end`,
	} {
		code = strings.NewReplacer("SECRET", luaQuote(secret), "OUTSIDE_BASE", luaQuote(filepath.Base(outside)),
			"OUTSIDE", luaQuote(outside), "ALLOWED", luaQuote(allowed)).Replace(code)
		res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Success || !strings.Contains(res.ErrorMessage, "outside the VM's allowed directories") {
			t.Errorf("%s: %+v %s", code, res.Success, res.Stderr)
		}
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 {
		t.Errorf("files were written outside: %v", entries)
	}
	// Inside, all of them work.
	res, err := vm.Exec(context.Background(), []byte(strings.ReplaceAll(`
		io.output(ALLOWED .. "/o.txt") io.write("line1\nline2\n") io.close()
		io.input(ALLOWED .. "/o.txt") local a = io.read("*l") io.close(io.input()) io.input(io.stdin)
		local n = 0 for l in io.lines(ALLOWED .. "/o.txt") do n = n + 1 end
		return a, n`, "ALLOWED", luaQuote(allowed))), core.ExecOptions{})
	if err != nil || string(res.Values) != `["line1",2]` {
		t.Errorf("inside: %v %s %s", err, res.Values, res.Stderr)
	}
}

// TestFilesLimitAndCallEnd: a state holds at most maxOpenFiles; a fresh
// call's unclosed files are flushed and closed when it ends, a persistent
// VM's are flushed and stay open.
func TestFilesLimitAndCallEnd(t *testing.T) {
	dir := t.TempDir()
	q := luaQuote(dir)
	vm := openVM(t, core.Options{AllowedPaths: []string{dir}})
	res, err := vm.Exec(context.Background(), []byte(`local fs, last = {}
		for i = 1, 300 do
		  local f, msg = io.open(`+q+` .. "/f" .. i, "w")
		  if not f then last = msg break end
		  fs[i] = f
		end
		fs[1]:write("unflushed")
		return #fs, last`), core.ExecOptions{})
	if err != nil || string(res.Values) != `[256,"`+dir+`/f257: Too many open files"]` {
		t.Fatalf("limit: %v %s %s", err, res.Values, res.Stderr)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "f1")); string(data) != "unflushed" {
		t.Errorf("the call's unclosed file was not flushed: %q", data)
	}
	res, err = vm.Exec(context.Background(), []byte(`local f = assert(io.open(`+q+` .. "/g", "w")) return "ok"`), core.ExecOptions{})
	if err != nil || string(res.Values) != `["ok"]` {
		t.Errorf("the next call cannot open a file: %v %s %s", err, res.Values, res.Stderr)
	}

	pvm := openVM(t, core.Options{AllowedPaths: []string{dir}, Persistent: true})
	if _, err := pvm.Exec(context.Background(), []byte(`keep = assert(io.open(`+q+` .. "/p", "w")) keep:write("part1")`), core.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "p")); string(data) != "part1" {
		t.Errorf("not flushed at the end of the call: %q", data)
	}
	res, err = pvm.Exec(context.Background(), []byte(`keep:write("part2") keep:close() return io.type(keep)`), core.ExecOptions{})
	if err != nil || string(res.Values) != `["closed file"]` {
		t.Errorf("persistent file: %v %s %s", err, res.Values, res.Stderr)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "p")); string(data) != "part1part2" {
		t.Errorf("persistent file content: %q", data)
	}
}

// TestRequireProbesOnlyModuleRoots: a sandbox's C-module notice looks only
// inside its module roots (it reported any existing file, an oracle for
// paths outside the sandbox).
func TestRequireProbesOnlyModuleRoots(t *testing.T) {
	roots := t.TempDir()
	if err := os.WriteFile(filepath.Join(roots, "fake.so"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.so"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	vm := openVM(t, core.Options{ModuleRoots: []string{roots}})
	res, err := vm.Exec(context.Background(), []byte(`package.cpath = `+luaQuote(outside+"/?.so;"+roots+"/?.so")+`
		return select(2, pcall(require, "secret")), select(2, pcall(require, "fake"))`), core.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(res.Values), "secret.so") || !strings.Contains(string(res.Values), "fake.so): the embedded engine runs only pure-Lua modules") {
		t.Errorf("%s %s", res.Values, res.Stderr)
	}
}

// loadfile, dofile and require read regular files only, and io.open and
// io.lines open files and directories only: a FIFO in an allowed directory
// made the open wait for a writer, in a Go call no deadline stops (a
// session's chunk, which has none, hung for good).
func TestLoadersReadRegularFilesOnly(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "m.lua")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	vm := openVM(t, core.Options{AllowedPaths: []string{dir}, PackagePath: dir + "/?.lua"})
	code := `local p = ` + luaQuote(fifo) + `
		local f, err = loadfile(p)
		local ok, derr = pcall(dofile, p)
		local rok, rerr = pcall(require, "m")
		local h, herr, errno = io.open(p)
		local lok, lerr = pcall(io.lines, p)
		return f, err, ok, derr, rok, rerr, h, herr, errno, lok, lerr`
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{})
		if err != nil || strings.Count(string(res.Values), "not a regular file") != 4 || strings.Count(string(res.Values), "false") != 3 || !strings.Contains(string(res.Values), ",13,") {
			t.Errorf("%v %s %s", err, res.Values, res.Stderr)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		// Unblock the open so that the test ends.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("loading a FIFO waited for a writer")
	}
}
