package luaproc

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"libbioxen/core"
	"libbioxen/internal/fsrace"
)

// TestFilesCheckThenOpenRace: a name in an allowed directory that
// another process swaps between a regular file and a symbolic link to a
// file outside. The driver resolves the name, then opens it: by name, a
// link put in place between the two was followed (LuaJIT: after ~900
// tries; lua5.4: after 10-100). The open follows no link: on LuaJIT
// openat2 with RESOLVE_NO_SYMLINKS, then /proc/self/fd; on Lua 5.1-5.4
// the host's openat2, then /proc/<host>/fd (K frames). For io.open,
// loadfile, require and io.lines alike.
func TestFilesCheckThenOpenRace(t *testing.T) {
	eachLua(t, testFilesCheckThenOpenRace)
}

func testFilesCheckThenOpenRace(t *testing.T, interp string) {
	allowed, name, secret := fsrace.Race(t, "f.lua", []byte("return 'inside'"), []byte("return 'secret'"))
	e := openSandboxed(t, interp, core.Options{AllowedPaths: []string{allowed}})
	code := strings.ReplaceAll(`
		package.path = DIR .. "/?.lua"
		local opened, loaded, wrote = 0, 0, 0
		for i = 1, 100000 do
			local f = io.open(NAME)
			if f then
				opened = opened + 1
				local s = f:read("*a")
				f:close()
				if s == "return 'secret'" then return "read outside", i end
			end
			local fn = loadfile(NAME)
			if fn then
				loaded = loaded + 1
				if fn() == "secret" then return "loaded outside", i end
			end
			if i % 10 == 0 then
				local w = io.open(NAME, "a")
				if w then wrote = wrote + 1; w:close() end
				local ok, it = pcall(io.lines, NAME)
				if ok and it() == "return 'secret'" then return "lines outside", i end
				package.loaded.f = nil
				local ok2, v = pcall(require, "f")
				if ok2 and v == "secret" then return "required outside", i end
			end
			if opened >= 5000 and loaded >= 5000 then break end
		end
		return "ok", opened, loaded, wrote`, "NAME", strconv.Quote(name))
	code = strings.ReplaceAll(code, "DIR", strconv.Quote(allowed))
	r := mustExec(t, e, code, execOpts{timeout: 60e9})
	var got []any
	if err := json.Unmarshal(r.Values, &got); err != nil || len(got) == 0 || got[0] != "ok" {
		t.Fatalf("%s %s", r.Values, r.ErrorMessage)
	}
	t.Logf("opened %v, loaded %v, appended %v times", got[1], got[2], got[3])
	if s, err := os.ReadFile(secret); err != nil || string(s) != "return 'secret'" {
		t.Errorf("the file outside is now %q (%v)", s, err)
	}
}

// TestFilesInterruptedOpenLeavesNoDescriptor: on LuaJIT the sandbox's
// open holds a raw descriptor (openat2) until the reopen through
// /proc/self/fd has its FILE* and the descriptor is closed. An interrupt
// raises at the next instruction: a SIGINT that came during the openat2
// raised before the descriptor was recorded, and it stayed open for good
// (about one in five interrupts of an io.open loop). On Lua 5.1-5.4 the
// host holds the descriptor (K frames) until the driver's next frame.
// Open files the interrupted calls left are collected; what is open after
// that, in the interpreter and in this process, must be what was open
// before.
func TestFilesInterruptedOpenLeavesNoDescriptor(t *testing.T) {
	eachLua(t, testFilesInterruptedOpenLeavesNoDescriptor)
}

func testFilesInterruptedOpenLeavesNoDescriptor(t *testing.T, interp string) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := openSandboxed(t, interp, core.Options{AllowedPaths: []string{dir}})
	// The interpreter's descriptors, and this process's that lead into
	// dir (held for K frames; other tests' files come and go).
	count := func() [2]int {
		var n [2]int
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", e.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		n[0] = len(fds)
		if fds, err = os.ReadDir("/proc/self/fd"); err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			if to, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(to, dir) {
				n[1]++
			}
		}
		return n
	}
	// (an io.open after the collection closes what the previous one may
	// have left for the next to close)
	settle := strings.ReplaceAll(`collectgarbage() io.open(NAME):close() collectgarbage()`, "NAME", strconv.Quote(name))
	mustExec(t, e, settle, execOpts{})
	before := count()
	loop := strings.ReplaceAll(`print('start') while true do local f = io.open(NAME) if f then f:close() end end`,
		"NAME", strconv.Quote(name))
	for i := 0; i < 100; i++ {
		wantInterrupted(t, execReq(t, e, interruptible(interp, loop, e.Interrupt)))
	}
	mustExec(t, e, settle, execOpts{})
	if after := count(); after != before {
		t.Errorf("descriptors open (interpreter, host's into the directory) before 100 interrupted calls %v, after %v", before, after)
	}
}

// TestFilesLinesErrorsAsTheInterpreter: io.lines(name) of the sandbox
// iterates over a file opened without following links, through a wrapper
// that closes it at the end. Errors of the iterator (a read error, a bad
// format) and of its making (too many formats, a missing file) are the
// interpreter's, at the caller's line: they named the driver's
// ("[bioxen driver]:598: Is a directory"), and the file opened for too
// many formats was left open.
func TestFilesLinesErrorsAsTheInterpreter(t *testing.T) {
	eachLua(t, testFilesLinesErrorsAsTheInterpreter)
}

func testFilesLinesErrorsAsTheInterpreter(t *testing.T, interp string) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("x\n12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code := strings.ReplaceAll(`local out = {}
		local function try(f) local ok, e = pcall(f); out[#out + 1] = tostring(e) end
		try(function() for l in io.lines(DIR) do end end)
		try(function() for l in io.lines(DIR .. "/a.txt", "*x") do end end)
		try(function() local it = io.lines(DIR .. "/a.txt"); it(); it(); it(); it() end)
		try(function() local t = {} for i = 1, 300 do t[i] = "*l" end io.lines(DIR .. "/a.txt", (unpack or table.unpack)(t)) end)
		try(function() io.lines(DIR .. "/missing.txt") end)
		local n = {}
		for a, b in io.lines(DIR .. "/a.txt", 1, "*l") do n[#n + 1] = a .. "|" .. tostring(b) end
		out[#out + 1] = table.concat(n, ",")
		return table.concat(out, "\n")`, "DIR", strconv.Quote(dir))
	want := runDirectly(t, interp, code)
	for _, sandboxed := range []bool{false, true} {
		e := openEngine(t, interp, core.Limits{})
		if sandboxed {
			e = openSandboxed(t, interp, core.Options{AllowedPaths: []string{dir}})
		}
		r := mustExec(t, e, code, execOpts{})
		var got []string
		if err := json.Unmarshal(r.Values, &got); err != nil || len(got) != 1 {
			t.Fatalf("sandboxed=%v: %s %q", sandboxed, r.Values, r.ErrorMessage)
		}
		if funcNames(got[0]) != funcNames(want) {
			t.Errorf("sandboxed=%v:\n%s\nwant (the interpreter run directly):\n%s", sandboxed, got[0], want)
		}
	}
}

// runDirectly runs code, a chunk that returns a string, as the main chunk
// of file "input" given to the interpreter itself, and returns that
// string (messages name the chunk "input", as the engine's do).
func runDirectly(t *testing.T, interp, code string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "input"), []byte("io.write((function() "+code+"\nend)())"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(interp, "input")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s input: %v", interp, err)
	}
	return string(out)
}

// funcNames is msg with the function names of "bad argument #n to 'f'"
// as '?': the driver calls the interpreter's functions in pcall, which
// names them '?', where the interpreter names them by how the chunk
// called them ('lines', 'for iterator', 'it').
var funcNamesRE = regexp.MustCompile(`(bad argument #\d+ to )'[^']*'`)

func funcNames(msg string) string { return funcNamesRE.ReplaceAllString(msg, "$1'?'") }

// TestFilesModeAsTheInterpreter: glibc's fopen reads the mode as a C
// string, up to its first "\0"; the LuaJIT sandbox took its flags from
// the whole Lua string: io.open(name, "r\0+") opened the file for
// writing too (the interpreter's is read-only), and "a\0x" refused an
// existing file (File exists). Lua 5.2+ check the mode before they open
// ("wx" is an error there, File exists on 5.1).
func TestFilesModeAsTheInterpreter(t *testing.T) {
	eachLua(t, testFilesModeAsTheInterpreter)
}

func testFilesModeAsTheInterpreter(t *testing.T, interp string) {
	code := `local out = {}
		for _, m in ipairs({ "r\0+", "w\0+", "a\0x", "r+\0x", "wx", "r+b", "rb+", "a+", "q", "" }) do
			local name = DIR .. "/f" .. #out
			local w = io.open(name, "w"); w:write("data"); w:close()
			local ok, f, err = pcall(io.open, name, m)
			if not ok then
				out[#out + 1] = tostring(f)
			elseif not f then
				out[#out + 1] = tostring(err):gsub(".*/", "")
			else
				local r = f:read("*a")
				local ok = f:write("X")
				f:close()
				local g = io.open(name); local s = g:read("*a"); g:close()
				out[#out + 1] = tostring(r) .. " " .. tostring(ok ~= nil) .. " " .. s
			end
		end
		return table.concat(out, ",")`
	var vals [2]string
	for i, sandboxed := range []bool{false, true} {
		dir := t.TempDir()
		var e *Engine
		if sandboxed {
			e = openSandboxed(t, interp, core.Options{AllowedPaths: []string{dir}})
		} else {
			e = openEngine(t, interp, core.Limits{})
		}
		r := mustExec(t, e, strings.ReplaceAll(code, "DIR", strconv.Quote(dir)), execOpts{})
		vals[i] = string(r.Values) + r.ErrorMessage
	}
	if funcNames(vals[1]) != funcNames(vals[0]) {
		t.Errorf("sandboxed %s, want %s", vals[1], vals[0])
	}
}

// TestFilesFIFOOpenedOnce: the LuaJIT sandbox opened a checked path with
// openat2, then again through /proc/self/fd. A named pipe opened twice
// for reading: once the writer the first open waited for had written and
// closed, the second open waited for another writer, for good
// (io.open(fifo):read("*a") of the interpreter returns what was
// written). The file is opened once (the host's hold is O_PATH).
func TestFilesFIFOOpenedOnce(t *testing.T) {
	eachLua(t, testFilesFIFOOpenedOnce)
}

func testFilesFIFOOpenedOnce(t *testing.T, interp string) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	e := openSandboxed(t, interp, core.Options{AllowedPaths: []string{dir}})
	code := strings.ReplaceAll(`local f, err = io.open(NAME) if not f then return err end
		local s = f:read("*a") f:close() return s`, "NAME", strconv.Quote(fifo))
	for i := 0; i < 100; i++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err != nil {
				return
			}
			w.Write([]byte("hi\n"))
			w.Close()
		}()
		r, err := execCode(e, code, execOpts{timeout: 5e9})
		if err != nil {
			// Let the writer go.
			if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
				r.Close()
			}
			<-done
			t.Fatalf("read %d: %v", i, err)
		}
		<-done
		if string(r.Values) != `["hi\n"]` {
			t.Fatalf("read %d: %s %q", i, r.Values, r.ErrorMessage)
		}
	}
}

// TestFilesCreatedUnderAUmask: under a umask that takes the owner's write
// bit away (0277), a file the sandbox creates is written as fopen writes
// it (the open through /proc checked the new file's mode 0400: Permission
// denied for a user other than root, and an empty file left), and ends
// with the mode the umask gives it.
func TestFilesCreatedUnderAUmask(t *testing.T) {
	if asNobody(t) {
		return
	}
	eachLua(t, testFilesCreatedUnderAUmask)
}

// asNobody runs the calling test again, as user nobody, when this process
// runs as root (whose opens no file mode refuses): a copy of the test
// binary in a directory nobody can read. It reports whether it did.
func asNobody(t *testing.T) bool {
	if os.Geteuid() != 0 || os.Getenv("BIOXEN_TEST_AS_NOBODY") != "" {
		return false
	}
	dir, err := os.MkdirTemp("", "bioxen-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^"+t.Name()+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BIOXEN_TEST_AS_NOBODY=1", "TMPDIR="+dir, "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("as user nobody: %v\n%s", err, out)
	}
	return true
}

func testFilesCreatedUnderAUmask(t *testing.T, interp string) {
	dir := t.TempDir()
	old := syscall.Umask(0o277)
	defer syscall.Umask(old)
	e := openSandboxed(t, interp, core.Options{AllowedPaths: []string{dir}})
	code := strings.ReplaceAll(`local out = {}
		for i, m in ipairs({ "w", "a+", "w+" }) do
			local name = DIR .. "/f" .. i
			local f, err = io.open(name, m)
			if not f then return err end
			f:write(m) f:close()
			local g = io.open(name) out[i] = g:read("*a") g:close()
		end
		return table.concat(out, ",")`, "DIR", strconv.Quote(dir))
	r := mustExec(t, e, code, execOpts{})
	if string(r.Values) != `["w,a+,w+"]` {
		t.Fatalf("%s %q", r.Values, r.ErrorMessage)
	}
	for i := 1; i <= 3; i++ {
		if fi, err := os.Stat(filepath.Join(dir, fmt.Sprint("f", i))); err != nil || fi.Mode().Perm() != 0o400 {
			t.Errorf("f%d: %v %v, want mode 0400", i, fi.Mode(), err)
		}
	}
}

// TestFilesOpenAndLoadAsTheInterpreter: what io.open and loadfile give
// in the sandbox is what the interpreter gives. Opened through a held
// descriptor (K frames), io.open returned the file and two nils (print
// showed "file (0x...)  nil  nil"), and loadfile of a directory lost the
// reason of its read error ("cannot read <dir>"): Lua 5.4 did both as
// the interpreter before. A mode of the wrong type named the driver's
// line on Lua 5.1.
func TestFilesOpenAndLoadAsTheInterpreter(t *testing.T) {
	eachLua(t, testFilesOpenAndLoadAsTheInterpreter)
}

func testFilesOpenAndLoadAsTheInterpreter(t *testing.T, interp string) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "syn.lua"), []byte("return +"), 0o644); err != nil {
		t.Fatal(err)
	}
	code := strings.ReplaceAll(`local out = {}
		local function add(...)
			local t = { select("#", ...) }
			for i = 1, select("#", ...) do t[#t + 1] = io.type((select(i, ...))) or tostring((select(i, ...))) end
			out[#out + 1] = table.concat(t, " ")
		end
		add(io.open(DIR .. "/a.txt"))
		add(io.open(DIR .. "/a.txt", "r+"))
		add(io.open(DIR .. "/new.txt", "w"))
		add(io.open(DIR .. "/missing.txt"))
		add(loadfile(DIR .. "/sub"))
		add(pcall(io.open, DIR .. "/a.txt", {}))
		add(pcall(function() local f = io.open(DIR .. "/a.txt", true) end))
		-- errors the driver raised at its own lines, or with a position
		-- where the interpreter gives none
		package.path = DIR .. "/?.lua"
		add(pcall(require, "syn"))
		add(pcall(function() return require("syn") end))
		add(pcall(dofile, DIR .. "/missing.lua"))
		add(pcall(function() dofile(DIR .. "/missing.lua") end))
		add(pcall(function() io.input(DIR .. "/missing.txt") end))
		add(pcall(function() io.output(DIR .. "/no/such/dir") end))
		return table.concat(out, "\n")`, "DIR", strconv.Quote(dir))
	want := runDirectly(t, interp, code)
	if err := os.Remove(filepath.Join(dir, "new.txt")); err != nil {
		t.Fatal(err)
	}
	e := openSandboxed(t, interp, core.Options{AllowedPaths: []string{dir}})
	r := mustExec(t, e, code, execOpts{})
	var got []string
	if err := json.Unmarshal(r.Values, &got); err != nil || len(got) != 1 {
		t.Fatalf("%s %q", r.Values, r.ErrorMessage)
	}
	if funcNames(got[0]) != funcNames(want) {
		t.Errorf("sandboxed:\n%s\nwant (the interpreter run directly):\n%s", got[0], want)
	}
}
