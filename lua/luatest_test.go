// Package luatest runs the pure-Lua package tests under lua/ on the embedded
// engine (gopher-lua): float-only numbers, no `arg` table, its own string
// library. Each test file runs twice: trusted (the whole standard library; the
// script finds its modules through debug.getinfo) and in the default sandbox
// (no debug.getinfo; the modules come from Options.PackagePath).
//
// The same test files run unchanged under lua5.1, lua5.4 and luajit:
//
//	lua5.4 lua/bio_compute/test_bio_compute.lua
//
// LUATEST_SCRIPT=path runs one more script trusted and logs its output, for
// instance the benchmark:
//
//	LUATEST_SCRIPT=lua/bio_compute/bench_bio_compute.lua go test -v -run TestScript ./lua/
package luatest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
	_ "libbioxen/embedded"
	_ "libbioxen/luaproc"
	"libbioxen/packages"
)

// packagePath is a package.path for the modules in this directory.
func packagePath(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "bio_compute", "src", "?.lua") + ";" + filepath.Join(dir, "seq_utils", "src", "?.lua")
}

func open(t *testing.T, opts core.Options) *core.VM {
	t.Helper()
	vm, err := core.Open(opts)
	if err != nil {
		t.Fatalf("open embedded VM: %v", err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

func check(t *testing.T, what string, res *core.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(res.Stdout) > 0 {
		t.Logf("%s stdout:\n%s", what, res.Stdout)
	}
	if len(res.Stderr) > 0 {
		t.Logf("%s stderr:\n%s", what, res.Stderr)
	}
	if !res.Success || res.ReturnCode != 0 {
		t.Fatalf("%s failed (return code %d): %s", what, res.ReturnCode, res.ErrorMessage)
	}
}

func runScript(t *testing.T, opts core.Options, path string, timeout time.Duration) *core.Result {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := open(t, opts).ExecFile(context.Background(), abs, core.ExecOptions{Timeout: timeout})
	check(t, path, res, err)
	return res
}

var testFiles = []string{
	"bio_compute/test_bio_compute.lua",
	"seq_utils/test_seq_utils.lua",
}

func TestLuaPackages(t *testing.T) {
	for _, f := range testFiles {
		name := filepath.Dir(f)
		t.Run(name+"/trusted", func(t *testing.T) {
			if raceBuild {
				t.Skip("-race: the sandbox run covers gopher-lua; trusted differs only in how modules are found")
			}
			runScript(t, core.Options{Trusted: true}, f, 5*time.Minute)
		})
		t.Run(name+"/sandbox", func(t *testing.T) {
			runScript(t, core.Options{PackagePath: packagePath(t)}, f, 5*time.Minute)
		})
	}
}

// TestSpecExample runs the original library's example on every engine
// available (the embedded one in its default sandbox, the process engine on
// each installed interpreter): a bare require() followed by use of the
// global, with the modules found through Options.PackagePath.
func TestSpecExample(t *testing.T) {
	cases := []struct {
		name string
		opts core.Options
	}{{"embedded", core.Options{}}}
	for _, interp := range []string{"lua5.4", "lua5.1", "luajit"} {
		if _, err := exec.LookPath(interp); err == nil {
			cases = append(cases, struct {
				name string
				opts core.Options
			}{interp, core.Options{Engine: "process", Interpreter: interp}})
		}
	}
	code := `require("bio_compute")
print(bio_compute.compute(10))
local result = bio_compute.analyze_sequence("ATCG")
print("Analysis result:", result)
require("seq_utils")
print(#seq_utils.parse_fasta(">a x\nACGT\n>b\nGG\n"))`
	want := "4\nAnalysis result:\tlength=4 gc=0.500 A=1 C=1 G=1 T=1 N=0 other=0 reverse_complement=CGAT translation=I\n2\n"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.PackagePath = packagePath(t)
			src := code
			if c.opts.Engine == "process" {
				// The process engine may not apply Options.PackagePath; the
				// chunk's own package.path works on every engine.
				src = fmt.Sprintf("package.path = %q .. \";\" .. package.path\n", packagePath(t)) + code
			}
			vm := open(t, c.opts)
			res, err := vm.Exec(context.Background(), []byte(src), core.ExecOptions{Timeout: time.Minute})
			check(t, "spec example", res, err)
			if got := string(res.Stdout); got != want {
				t.Fatalf("stdout:\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestCatalog loads lua/catalog with the packages loader and checks it is
// consistent: profiles name catalogued packages, C modules are not offered to
// the embedded engine, our packages' versions match their rockspecs.
func TestCatalog(t *testing.T) {
	cat, err := packages.LoadCatalog("catalog/packages.json", "catalog/profiles.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"minimal", "standard", "full", "bioxen-minimal", "bioxen-standard", "bioxen-full"} {
		if cat.Profiles[want] == nil {
			t.Errorf("profile %s missing", want)
		}
	}
	for name, prof := range cat.Profiles {
		if prof.Description == "" || len(prof.Packages) == 0 {
			t.Errorf("profile %s: description and packages are required", name)
		}
		for _, p := range prof.Packages {
			if cat.Packages[p] == nil {
				t.Errorf("profile %s names %s, which the catalog lacks", name, p)
			}
		}
	}
	// bioxen-minimal installs offline: only packages built by build_repo.sh.
	for _, p := range cat.Profiles["bioxen-minimal"].Packages {
		if _, err := os.Stat(filepath.Join(p, p+"-"+cat.Packages[p].Versions[0]+".rockspec")); err != nil {
			t.Errorf("bioxen-minimal: %s is not built by lua/build_repo.sh: %v", p, err)
		}
	}
	for name, p := range cat.Packages {
		if p.PureLua == nil || p.Summary == "" || len(p.Engines) == 0 || len(p.LuaVersions) == 0 {
			t.Errorf("package %s: pure_lua, summary, engines and lua_versions are required", name)
		}
		for _, e := range p.Engines {
			if e != "embedded" && e != "process" && e != "xcpng" {
				t.Errorf("package %s: unknown engine %q", name, e)
			}
		}
		if !p.IsPureLua() && slices.Contains(p.Engines, "embedded") {
			t.Errorf("package %s is a C module but lists the embedded engine", name)
		}
		for _, d := range p.Dependencies {
			if dep := strings.Fields(d)[0]; dep == "lua" {
				t.Errorf("package %s: the Lua version goes in lua_versions, not dependencies", name)
			}
		}
	}
	// Our packages: catalog versions and dependencies are the rockspecs'.
	for _, name := range []string{"bio_compute", "seq_utils"} {
		specs, _ := filepath.Glob(filepath.Join(name, name+"-*.rockspec"))
		if len(specs) != 1 {
			t.Fatalf("%s: want one rockspec, got %v", name, specs)
		}
		version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(specs[0]), name+"-"), ".rockspec")
		if p := cat.Packages[name]; p == nil || !slices.Contains(p.Versions, version) {
			t.Errorf("catalog entry of %s does not list version %s", name, version)
		}
	}
	if deps := cat.Packages["seq_utils"].Dependencies; !slices.Contains(deps, "bio_compute >= 1.0") {
		t.Errorf("seq_utils dependencies %v", deps)
	}
}

// TestBuildRepo builds the rocks repository offline and installs seq_utils
// (pulling bio_compute) from it alone, for Lua 5.1 and 5.4.
func TestBuildRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, tool := range []string{"luarocks", "luarocks-admin", "zip", "unzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "build_repo.sh", "--check", out)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	log, err := cmd.CombinedOutput()
	t.Logf("build_repo.sh --check:\n%s", log)
	if err != nil {
		t.Fatalf("build_repo.sh: %v", err)
	}
	for _, f := range []string{"manifest", "bio_compute-1.0.0-1.all.rock", "bio_compute-1.0.0-1.src.rock",
		"seq_utils-1.0.0-1.all.rock", "seq_utils-1.0.0-1.src.rock", "seq_utils-1.0.0-1.rockspec"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s missing from the repository", f)
		}
	}
	if ok, _ := regexp.Match(`check: lua5\.1, tree for Lua 5\.1: length=4 gc=0\.500`, log); !ok {
		if _, err := exec.LookPath("lua5.1"); err == nil {
			t.Errorf("no lua5.1 check in the output")
		}
	}
	// Reproducible: a second build gives byte-identical rocks.
	out2 := t.TempDir()
	if log, err := exec.Command("bash", "build_repo.sh", out2).CombinedOutput(); err != nil {
		t.Fatalf("second build: %v\n%s", err, log)
	}
	for _, f := range []string{"bio_compute-1.0.0-1.all.rock", "bio_compute-1.0.0-1.src.rock", "seq_utils-1.0.0-1.all.rock"} {
		a, _ := os.ReadFile(filepath.Join(out, f))
		b, _ := os.ReadFile(filepath.Join(out2, f))
		if string(a) != string(b) {
			t.Errorf("%s differs between two builds", f)
		}
	}
}

func TestScript(t *testing.T) {
	path := os.Getenv("LUATEST_SCRIPT")
	if path == "" {
		t.Skip("LUATEST_SCRIPT not set")
	}
	// go test runs in lua/: accept paths relative to the repository root too.
	if _, err := os.Stat(path); err != nil && !filepath.IsAbs(path) {
		if _, err := os.Stat(filepath.Join("..", path)); err == nil {
			path = filepath.Join("..", path)
		}
	}
	runScript(t, core.Options{Trusted: true}, path, 30*time.Minute)
}
