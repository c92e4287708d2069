package core_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"libbioxen/core"
)

// A sandboxed VM reads its package environment but cannot write there: a
// chunk wrote a module into it that a later call, and another VM, then
// loaded (found by review). Listed in AllowedPaths, the directory is
// writable.
func TestPackageEnvironmentIsReadOnly(t *testing.T) {
	all := engines(t)
	for _, interp := range []string{"lua5.1", "luajit"} {
		if _, err := exec.LookPath(interp); err == nil {
			all = append(all, core.Options{Engine: "process", Interpreter: interp, Persistent: true})
		}
	}
	for _, o := range all {
		t.Run(o.Engine+"/"+o.Interpreter, func(t *testing.T) {
			dir := t.TempDir()
			mod := filepath.Join(dir, "mymod.lua")
			if err := os.WriteFile(mod, []byte(`return {hello = function() return "genuine" end}`), 0o644); err != nil {
				t.Fatal(err)
			}
			o.PackagePath = dir + "/?.lua"
			vm, err := core.Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			code := `local p = ...
				local out = {}
				for _, mode in ipairs({"w", "a", "r+", "w+", "a+", "wb"}) do
					local f, msg, errno = io.open(p, mode)
					out[#out + 1] = tostring(f) .. "|" .. tostring(msg) .. "|" .. tostring(errno)
				end
				out[#out + 1] = tostring(pcall(io.output, p))
				local f = assert(io.open(p)) local text = f:read("*a") f:close()
				local g = assert(io.open(p, "rb")) g:close()
				out[#out + 1] = text
				out[#out + 1] = require("mymod").hello()
				out[#out + 1] = tostring(loadfile(p) ~= nil)
				return table.concat(out, "\n")`
			res, err := vm.Exec(context.Background(), []byte(strings.Replace(code, "local p = ...", "local p = "+quote(mod), 1)), core.ExecOptions{})
			if err != nil || !res.Success {
				t.Fatalf("%v %+v", err, res)
			}
			lines := strings.Split(strings.Trim(string(res.Values), `[]"`), `\n`)
			if len(lines) != 10 {
				t.Fatalf("got %q", res.Values)
			}
			for _, l := range lines[:6] {
				if !strings.HasPrefix(l, "nil|"+mod+": the VM's package environments are read-only|13") {
					t.Errorf("write mode opened the package environment: %q", l)
				}
			}
			if !strings.HasPrefix(lines[6], "false") {
				t.Errorf("io.output: %q", lines[6])
			}
			if lines[8] != "genuine" || lines[9] != "true" {
				t.Errorf("reading: %q", lines[7:])
			}
			if b, _ := os.ReadFile(mod); !strings.Contains(string(b), "genuine") {
				t.Errorf("the module changed: %q", b)
			}

			// Listed in AllowedPaths, the directory is writable.
			o.AllowedPaths = []string{dir}
			vm2, err := core.Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer vm2.Close()
			res, err = vm2.Exec(context.Background(), []byte(`local f = assert(io.open(`+quote(filepath.Join(dir, "new.txt"))+`, "w")) f:write("x") f:close() return 1`), core.ExecOptions{})
			if err != nil || string(res.Values) != "[1]" {
				t.Fatalf("allowed: %v %+v", err, res)
			}
		})
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
