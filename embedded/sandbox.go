package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	lua "github.com/yuin/gopher-lua"
	"golang.org/x/sys/unix"

	"libbioxen/core"
)

// The sandbox (on unless a VM is opened Trusted) is an allow-list: the
// global table keeps only what is named here; everything else gopher-lua
// defines is removed before the state's pristine snapshot is taken, so user
// code never sees it. docs/sandbox.md lists it for users.
var sandboxGlobals = map[string]bool{
	"assert": true, "error": true, "ipairs": true, "next": true, "pairs": true,
	"pcall": true, "print": true, "rawequal": true, "rawget": true, "rawset": true,
	"select": true, "setmetatable": true, "tonumber": true, "tostring": true,
	"type": true, "unpack": true, "xpcall": true, "_VERSION": true, "_G": true,
	"getmetatable": true, "load": true, "loadstring": true, "require": true,
	"collectgarbage": true, "dofile": true, "loadfile": true, "module": true,
	"string": true, "table": true, "math": true, "coroutine": true, "os": true,
	"io": true, "debug": true, "package": true,
}

var sandboxLibs = map[string]map[string]bool{
	"os":      {"clock": true, "date": true, "difftime": true, "time": true, "exit": true}, // our os.exit only ends the chunk
	"io":      {"write": true, "read": true, "lines": true, "stdout": true, "stderr": true, "stdin": true, "output": true, "input": true, "type": true, "flush": true, "close": true, "open": true},
	"debug":   {"traceback": true},
	"package": {"path": true, "cpath": true, "loaded": true, "preload": true, "loaders": true, "seeall": true},
	"string":  {"byte": true, "char": true, "find": true, "format": true, "gmatch": true, "gsub": true, "len": true, "lower": true, "match": true, "rep": true, "reverse": true, "sub": true, "upper": true},
}

// pathGuard decides which files Lua code may open: only files under the
// allowed directories (cleaned, symlinks resolved), and for reading only
// under the read-only ones (package environments: shared by every VM that
// uses them, so a sandboxed chunk that could write there would plant code
// that other VMs, trusted ones too, load).
type pathGuard struct{ dirs, readOnly []string }

func newPathGuard(allowed, readOnly []string) *pathGuard {
	return &pathGuard{dirs: resolveDirs(allowed), readOnly: resolveDirs(readOnly)}
}

func resolveDirs(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if abs, err := filepath.Abs(d); err == nil {
			if real, err := filepath.EvalSymlinks(abs); err == nil {
				abs = real
			}
			out = append(out, abs)
		}
	}
	return out
}

// check returns the resolved path when it may be read: it lies in an
// allowed or a read-only directory. A nil guard (a trusted state) allows
// every path, unchanged.
func (g *pathGuard) check(p string) (string, bool) {
	real, err := g.resolve(p, false)
	return real, err == nil
}

// maxPathBytes is Linux's PATH_MAX (its NUL included): a longer name is no
// file's, and the kernel refuses it (ENAMETOOLONG). Sandboxed code's names
// are refused before any work on them: cleaning and resolving a name of
// 128 MiB (io.open, loadfile, dofile, io.lines) took 0.5 s, require's
// probes of every package.path template 2 s, in Go calls no deadline
// stops.
const maxPathBytes = 4096

// shortName is a file or module name as messages quote it: whole, but for
// one longer than a path can be, cut to its first 64 bytes and its length
// (a copy of the whole in each message was a long Go call of its own).
func shortName(name string) string {
	if len(name) < maxPathBytes {
		return name
	}
	return fmt.Sprintf("%s... (%d bytes)", name[:64], len(name))
}

// resolve returns the resolved path when it may be opened (written, with
// write), else errOutside, errReadOnly or ENAMETOOLONG (see maxPathBytes).
func (g *pathGuard) resolve(p string, write bool) (string, error) {
	if g == nil {
		return p, nil
	}
	if len(p) >= maxPathBytes {
		return "", syscall.ENAMETOOLONG
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", errOutside
	}
	// Resolve symlinks (also a dangling last one), so a link inside an
	// allowed directory cannot point or create outside it.
	real := core.RealPath(abs)
	if real == "" {
		return "", errOutside
	}
	if core.PathUnder(real, g.dirs) {
		return real, nil
	}
	if core.PathUnder(real, g.readOnly) {
		if write {
			return "", errReadOnly
		}
		return real, nil
	}
	return "", errOutside
}

// openResolved opens real, a path resolve returned (its symbolic links
// resolved), following no symbolic link: a name that another process
// swapped for a link between the check and the open (a race the chunk can
// win by trying again and again) led out of the allowed directories, to
// read, create or truncate the link's target. openat2's
// RESOLVE_NO_SYMLINKS refuses a link in any component; where the kernel
// lacks it (before Linux 5.6, or a seccomp filter refuses it) O_NOFOLLOW
// covers the last one. A link met is reported as errOutside.
func openResolved(real string, flags int, perm uint32) (*os.File, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_NO_SYMLINKS}
	if flags&os.O_CREATE != 0 {
		how.Mode = uint64(perm) // (openat2 refuses a mode without O_CREAT)
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, real, &how)
	for err == unix.EINTR {
		fd, err = unix.Openat2(unix.AT_FDCWD, real, &how)
	}
	if err == nil {
		return os.NewFile(uintptr(fd), real), nil
	}
	if err == unix.ENOSYS || err == unix.EPERM {
		var f *os.File
		f, err = os.OpenFile(real, flags|unix.O_NOFOLLOW, os.FileMode(perm))
		if err == nil {
			return f, nil
		}
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, errOutside
	}
	if _, ok := err.(*os.PathError); !ok {
		err = &os.PathError{Op: "open", Path: real, Err: err}
	}
	return nil, err
}

// envDirs turns package.path templates into the directories they search
// (".../share/lua/5.1/?.lua" -> ".../share/lua/5.1").
func envDirs(templates string) []string {
	var out []string
	for _, t := range strings.Split(templates, ";") {
		if i := strings.Index(t, "?"); i > 0 {
			out = append(out, filepath.Clean(t[:i]))
		}
	}
	return out
}

// applySandbox: files may be opened under allowed, read under readOnly,
// and modules loaded from moduleRoots.
func (st *state) applySandbox(allowed, readOnly, moduleRoots []string) {
	L := st.L
	guard := newPathGuard(allowed, readOnly)
	moduleGuard := newPathGuard(moduleRoots, nil)
	g := L.G.Global
	var drop []lua.LValue
	g.ForEach(func(k, _ lua.LValue) {
		if s, ok := k.(lua.LString); !ok || !sandboxGlobals[string(s)] {
			drop = append(drop, k)
		}
	})
	for _, k := range drop {
		g.RawSet(k, lua.LNil)
	}
	for lib, keep := range sandboxLibs {
		t, ok := g.RawGetString(lib).(*lua.LTable)
		if !ok {
			continue
		}
		var gone []lua.LValue
		t.ForEach(func(k, _ lua.LValue) {
			if s, ok := k.(lua.LString); !ok || !keep[string(s)] {
				gone = append(gone, k)
			}
		})
		for _, k := range gone {
			t.RawSet(k, lua.LNil)
		}
	}
	// Registry entries of removed libraries stay unreachable: no debug.
	if loaded, ok := g.RawGetString("package").(*lua.LTable).RawGetString("loaded").(*lua.LTable); ok {
		for _, n := range []string{"channel"} {
			loaded.RawSetString(n, lua.LNil)
		}
	}

	// The string metatable (installStringMeta) can be neither read nor
	// changed.
	if mt, ok := L.GetMetatable(lua.LString("")).(*lua.LTable); ok {
		mt.RawSetString("__metatable", lua.LFalse)
	}
	// Nor can the files' (their methods could be replaced for later
	// calls of the state), as the process engine's driver hides it.
	for _, name := range []string{fileType, stdFileType} {
		if mt, ok := L.GetTypeMetatable(name).(*lua.LTable); ok {
			mt.RawSetString("__metatable", lua.LFalse)
		}
	}

	st.installLoaders(guard, moduleGuard)
	L.SetGlobal("collectgarbage", L.NewFunction(func(L *lua.LState) int {
		opt := L.OptString(1, "collect")
		optInt(L, 2, 0) // a number if given, as in Lua (collectgarbage("count", "x") raises)
		switch opt {
		case "count": // the VM's own memory, as trusted states count it
			L.Push(st.memUsedKB(L))
			return 1
		case "collect", "step":
			// The Go runtime collects on its own; a forced process-wide
			// collection per call would let a script stall the host.
			// The next count walks the state again.
			st.count.valid = false
			if opt == "step" {
				L.Push(lua.LTrue) // the step finished a cycle, as the trusted one says
			} else {
				L.Push(lua.LNumber(0))
			}
			return 1
		default:
			L.ArgError(1, "option '"+opt+"' is not allowed in the sandbox (only count, collect, step)")
			return 0
		}
	}))
	// Files (io.open, io.lines, io.input, io.output) only inside the
	// allowed directories: files.go asks st.guard.
	st.guard = guard
	st.moduleGuard = moduleGuard
}

// installLoaders replaces load, loadstring, loadfile, dofile and require's
// Lua-file loader with versions that compile through compileTree (the
// engine's fixes of multiple assignment and `..`) and accept text chunks
// only. guard limits the files loadfile/dofile read and moduleGuard the
// modules require loads; nil guards (a trusted state) allow every path.
func (st *state) installLoaders(guard, moduleGuard *pathGuard) {
	L := st.L
	// compile pushes nil and a message when src cannot be had (too large,
	// no memory for compiling it, a syntax error); see compileChunk.
	compile := func(L *lua.LState, src []byte, name string) *lua.LFunction {
		proto, msg := st.compileChunk(L, src, name)
		if proto == nil {
			L.Push(lua.LNil)
			L.Push(lua.LString(msg))
			return nil
		}
		return L.NewFunctionFromProto(proto)
	}
	// tooLarge pushes nil and compileChunk's message for a source string
	// over the source limit, before it is copied: a copy of 128 MiB was a
	// Go call of up to 0.4 s.
	tooLarge := func(L *lua.LState, src, name string) bool {
		if max := st.ctx.sourceLimit(); len(src) > max {
			L.Push(lua.LNil)
			L.Push(lua.LString(fmt.Sprintf("%s: chunk too large (%d bytes; the VM's source limit is %d bytes)", name, len(src), max)))
			return true
		}
		return false
	}
	// load / loadstring: text only; the chunk runs in the sandbox.
	L.SetGlobal("loadstring", L.NewFunction(func(L *lua.LState) int {
		src := L.CheckString(1)
		name := sourceName(optString(L, 2, src))
		if tooLarge(L, src, name) {
			return 2
		}
		if fn := compile(L, []byte(src), name); fn != nil {
			L.Push(fn)
			return 1
		}
		return 2
	}))
	L.SetGlobal("load", L.NewFunction(func(L *lua.LState) int {
		var src []byte
		switch v := L.CheckAny(1).(type) {
		case lua.LString:
			if tooLarge(L, string(v), sourceName(optString(L, 2, "=(load)"))) {
				return 2
			}
			src = []byte(v)
		case *lua.LFunction:
			// A builtin reader (load(os.clock)) runs no instruction,
			// so nothing else polls the call's limits in this loop:
			// 16 MiB read 8 bytes at a time took 1.4 s.
			tick := limitTicker(L)
			for {
				tick()
				L.Push(v)
				L.Call(0, 1)
				piece := L.Get(-1)
				L.Pop(1)
				if piece == lua.LNil {
					break
				}
				// A number is a piece too, as in Lua; anything else
				// fails the load.
				s, ok := luaString(piece)
				if !ok {
					L.Push(lua.LNil)
					L.Push(lua.LString("reader function must return a string"))
					return 2
				}
				if len(s) == 0 {
					break
				}
				if room := st.ctx.sourceLimit() + 1 - len(src); len(s) >= room {
					// compile refuses it: no need to copy all of s
					src = append(src, s[:room]...)
					break
				}
				src = append(src, s...)
			}
		default:
			L.ArgError(1, "string or function expected")
		}
		name := optString(L, 2, "=(load)")
		if fn := compile(L, src, sourceName(name)); fn != nil {
			L.Push(fn)
			return 1
		}
		return 2
	}))
	readAllowed := func(L *lua.LState, p string) ([]byte, string, bool) {
		real, err := guard.resolve(p, false)
		if err != nil {
			msg := errOutside.Error()
			if errors.Is(err, syscall.ENAMETOOLONG) {
				msg, _ = ioErrorText(err)
			}
			L.Push(lua.LNil)
			L.Push(lua.LString(shortName(p) + ": " + msg))
			return nil, "", false
		}
		data, err := st.readSource(real)
		if err != nil {
			L.Push(lua.LNil)
			L.Push(lua.LString(err.Error()))
			return nil, "", false
		}
		return data, real, true
	}
	L.SetGlobal("loadfile", L.NewFunction(func(L *lua.LState) int {
		p := L.CheckString(1)
		data, _, ok := readAllowed(L, p)
		if !ok {
			return 2
		}
		if fn := compile(L, skipShebang(data), p); fn != nil {
			L.Push(fn)
			return 1
		}
		return 2
	}))
	L.SetGlobal("dofile", L.NewFunction(func(L *lua.LState) int {
		p := L.CheckString(1)
		data, _, ok := readAllowed(L, p)
		if !ok {
			L.RaiseError("%s", lua.LVAsString(L.Get(-1)))
		}
		fn := compile(L, skipShebang(data), p)
		if fn == nil {
			L.RaiseError("%s", lua.LVAsString(L.Get(-1)))
		}
		top := L.GetTop()
		L.Push(fn)
		L.Call(0, lua.MultRet)
		return L.GetTop() - top
	}))
	// require: package.preload, then Lua files on package.path inside the
	// allowed directories, then the C-module explanation.
	pkg := L.GetGlobal("package").(*lua.LTable)
	loaders, _ := pkg.RawGetString("loaders").(*lua.LTable)
	if loaders != nil {
		luaLoader := L.NewFunction(func(L *lua.LState) int {
			name := L.CheckString(1)
			if len(name) >= maxPathBytes {
				L.Push(lua.LString("\n\tno file for '" + shortName(name) + "' (longer than a path can be)"))
				return 1
			}
			file := strings.ReplaceAll(name, ".", "/")
			var tried probeText
			var found *lua.LFunction
			eachPath(L, lua.LVAsString(pkg.RawGetString("path")), file, func(p string, long bool) bool {
				if long {
					if moduleGuard == nil {
						tried.add("\n\tno file '" + p + "' (longer than a path can be)")
					}
					return false
				}
				real, ok := moduleGuard.check(p)
				if !ok {
					return false
				}
				data, err := st.readSource(real)
				if err != nil {
					tried.add("\n\tno file '" + p + "'")
					return false
				}
				if found = compile(L, skipShebang(data), p); found == nil {
					L.RaiseError("error loading module '%s' from file '%s':\n\t%s", name, p, lua.LVAsString(L.Get(-1)))
				}
				return true
			})
			if found != nil {
				L.Push(found)
				return 1
			}
			if moduleGuard != nil {
				tried.WriteString("\n\t(the sandbox loads modules only from the VM's package environments)")
			}
			L.Push(lua.LString(tried.String()))
			return 1
		})
		preload := loaders.RawGetInt(1)
		cmod := loaders.RawGetInt(loaders.Len())
		for i := loaders.Len(); i >= 1; i-- {
			loaders.RawSetInt(i, lua.LNil)
		}
		loaders.RawSetInt(1, preload)
		loaders.RawSetInt(2, luaLoader)
		loaders.RawSetInt(3, cmod)
	}
}

func skipShebang(data []byte) []byte {
	if len(data) > 0 && data[0] == '#' {
		if i := strings.IndexByte(string(data), '\n'); i >= 0 {
			return append([]byte("--"), data[i:]...)
		}
		return nil
	}
	return data
}
