package embedded

import (
	"os"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// installCModuleLoader adds a last package.loaders entry that recognises C
// modules on package.cpath and explains that this engine cannot load them,
// instead of a bare "module not found".
func (st *state) installCModuleLoader() {
	L := st.L
	pkg, ok := L.GetGlobal("package").(*lua.LTable)
	if !ok {
		return
	}
	loaders, ok := pkg.RawGetString("loaders").(*lua.LTable)
	if !ok {
		return
	}
	loaders.Append(L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		if len(name) >= maxPathBytes {
			L.Push(lua.LString("\n\tno C module '" + shortName(name) + "' either (longer than a path can be)"))
			return 1
		}
		cpath := lua.LVAsString(pkg.RawGetString("cpath"))
		file := strings.ReplaceAll(name, ".", "/")
		msg := "\n\tno C module '" + name + "' either (the embedded engine cannot load C modules)"
		eachPath(L, cpath, file, func(p string, long bool) bool {
			if long {
				return false // no file's name
			}
			if _, ok := st.moduleGuard.check(p); !ok {
				return false // a sandbox probes only its module roots (no existence oracle)
			}
			if _, err := os.Stat(p); err == nil {
				msg = "\n\tmodule '" + name + "' is a C module (" + p + "): the embedded engine runs only pure-Lua modules; use the process engine (engine=\"process\", e.g. lua_executable=\"lua5.1\") for C modules"
				return true
			}
			return false
		})
		L.Push(lua.LString(msg))
		return 1
	}))
}

// pollTemplatesEvery is how many templates eachPath looks at between two
// polls of the call's limits: each can cost a few system calls.
const pollTemplatesEvery = 256

// eachPath calls fn with the path each template of templates (a
// package.path or package.cpath: ';'-separated, '?' standing for file)
// gives, until fn returns true. A path that would be longer than a path
// can be is not built: fn gets the template, quoted short, and long set.
//
// Lua code sets these strings: splitting a path of millions of templates
// made a slice of them first (128 MiB for a 2^23-byte path), probing a
// million took 5.6 s in one Go call that no deadline stopped, and one
// template of 2^18 '?' made a path of 256 MB for a name of 1,000 bytes
// (64 GB for one of 4,000, more than the host has), none of it seen by
// the memory limit.
func eachPath(L *lua.LState, templates, file string, fn func(p string, long bool) bool) {
	tk := workTicker{L: L}
	for i := 1; templates != ""; i++ {
		if i%pollTemplatesEvery == 0 {
			tk.poll()
		}
		var tmpl string
		tmpl, templates, _ = strings.Cut(templates, ";")
		if tmpl == "" {
			continue
		}
		if n := len(tmpl) + strings.Count(tmpl, "?")*(len(file)-1); n >= maxPathBytes {
			if fn(shortName(tmpl), true) {
				return
			}
			continue
		}
		if fn(strings.ReplaceAll(tmpl, "?", file), false) {
			return
		}
	}
}

// maxProbeText bounds what a loader says about the files it tried: past
// 1 MiB the rest is left out (a path of millions of templates inside the
// package environments would have listed them all).
const maxProbeText = 1 << 20

// probeText is a loader's account of the files it tried, bounded by
// maxProbeText.
type probeText struct {
	strings.Builder
	cut bool
}

func (t *probeText) add(s string) {
	if t.cut {
		return
	}
	if t.Len()+len(s) > maxProbeText {
		t.cut = true
		s = "\n\t..."
	}
	t.WriteString(s)
}
