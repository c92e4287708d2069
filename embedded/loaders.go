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
		for _, tmpl := range strings.Split(cpath, ";") {
			if tmpl == "" {
				continue
			}
			p := strings.ReplaceAll(tmpl, "?", file)
			if _, ok := st.moduleGuard.check(p); !ok {
				continue // a sandbox probes only its module roots (no existence oracle)
			}
			if _, err := os.Stat(p); err == nil {
				L.Push(lua.LString("\n\tmodule '" + name + "' is a C module (" + p + "): the embedded engine runs only pure-Lua modules; use the process engine (engine=\"process\", e.g. lua_executable=\"lua5.1\") for C modules"))
				return 1
			}
		}
		L.Push(lua.LString("\n\tno C module '" + name + "' either (the embedded engine cannot load C modules)"))
		return 1
	}))
}
