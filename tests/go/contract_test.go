// Package gotests runs libbioxen's execution contract against every engine
// available on this machine, through the public core API.
package gotests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"libbioxen/core"
	_ "libbioxen/embedded"
	_ "libbioxen/luaproc"
)

type engineCase struct {
	name string
	opts core.Options
}

// engines lists the embedded engine and the process engine on each
// interpreter that is installed.
func engines(t *testing.T) []engineCase {
	cases := []engineCase{{"embedded", core.Options{Engine: "embedded"}}}
	for _, interp := range []string{"lua5.4", "lua5.1", "luajit"} {
		if _, err := exec.LookPath(interp); err == nil {
			cases = append(cases, engineCase{interp, core.Options{Engine: "process", Interpreter: interp}})
		} else {
			t.Logf("%s not installed: process engine on it not tested", interp)
		}
	}
	return cases
}

func open(t *testing.T, opts core.Options) *core.VM {
	t.Helper()
	vm, err := core.Open(opts)
	if err != nil {
		t.Fatalf("open %+v: %v", opts, err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

func run(t *testing.T, vm *core.VM, code string) *core.Result {
	t.Helper()
	res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{PrintResults: true})
	if err != nil {
		t.Fatalf("exec %q: %v", code, err)
	}
	return res
}

func TestContract(t *testing.T) {
	cases := []struct {
		name, code             string
		stdout, stderrPrefix   string
		rc                     int
		values, errorMsgPrefix string
	}{
		{"return printed", "return 2 + 2", "4\n", "", 0, "[4]", ""},
		{"several values", "return 1, 'a', nil, false", "1\ta\tnil\tfalse\n", "", 0, `[1,"a",null,false]`, ""},
		{"print", "print('x', 1)", "x\t1\n", "", 0, "[]", ""},
		{"io.write", "io.write('a', 2)", "a2", "", 0, "[]", ""},
		{"stderr", "io.stderr:write('e')", "", "e", 0, "[]", ""},
		{"nested table", "return {1, {2, 3}, {k = 'v'}}", "", "", 0, `[[1,[2,3],{"$t":[["k","v"]]}]]`, ""},
		{"bytes", "return '\\255'", "", "", 0, `[{"$b":"/w=="}]`, ""},
		{"runtime error", "local x\nx.y = 1", "", "input:2:", 1, "[]", "input:2:"},
		{"error call", "error('boom')", "", "input:1: boom\nstack traceback:", 1, "[]", "input:1: boom"},
		{"syntax error", "x = = 1", "", "input:1:", 1, "[]", "input:1:"},
		{"os.exit", "print('a') os.exit(7)", "a\n", "", 7, "[]", ""},
	}
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			vm := open(t, ec.opts)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					res := run(t, vm, c.code)
					if c.stdout != "" || c.name == "stderr" {
						if got := string(res.Stdout); !strings.HasPrefix(got, c.stdout) || (c.name != "several values" && got != c.stdout) {
							t.Errorf("stdout = %q, want %q", got, c.stdout)
						}
					}
					if !strings.HasPrefix(string(res.Stderr), c.stderrPrefix) {
						t.Errorf("stderr = %q, want prefix %q", res.Stderr, c.stderrPrefix)
					}
					if res.ReturnCode != c.rc || res.Success != (c.rc == 0) {
						t.Errorf("rc = %d success = %v, want %d", res.ReturnCode, res.Success, c.rc)
					}
					if c.values != "" && c.rc == 0 && string(res.Values) != c.values {
						t.Errorf("values = %s, want %s", res.Values, c.values)
					}
					if !strings.HasPrefix(res.ErrorMessage, c.errorMsgPrefix) {
						t.Errorf("error message = %q, want prefix %q", res.ErrorMessage, c.errorMsgPrefix)
					}
				})
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			opts := ec.opts
			opts.Limits.MaxSourceBytes = 64
			vm := open(t, opts)
			for _, c := range []struct {
				code string
				want core.Code
			}{
				{"", core.ErrInvalid},
				{" \n\t", core.ErrInvalid},
				{"return 1\x00", core.ErrInvalid},
				{"return '" + strings.Repeat("x", 100) + "'", core.ErrTooLarge},
			} {
				_, err := vm.Exec(context.Background(), []byte(c.code), core.ExecOptions{})
				if core.CodeOf(err) != c.want {
					t.Errorf("code %q: error %v, want code %v", c.code, err, c.want)
				}
			}
			_, err := vm.ExecFile(context.Background(), filepath.Join(t.TempDir(), "missing.lua"), core.ExecOptions{})
			if core.CodeOf(err) != core.ErrFileNotFound {
				t.Errorf("missing file: %v", err)
			}
			vm.Close()
			if err := vm.Close(); err != nil {
				t.Errorf("second close: %v", err)
			}
			if _, err := vm.Exec(context.Background(), []byte("return 1"), core.ExecOptions{}); core.CodeOf(err) != core.ErrClosed {
				t.Errorf("exec after close: %v", err)
			}
		})
	}
	if _, err := core.Open(core.Options{Engine: "nope"}); core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("unknown engine: %v", err)
	}
	// A malformed engine config is refused by every engine (the embedded
	// engine ignored it), and not quoted.
	for _, bad := range []string{`{"x_password": "s3cret"`, `null`, `["s3cret"]`, `"s3cret"`} {
		_, err := core.Open(core.Options{EngineConfig: []byte(bad)})
		if core.CodeOf(err) != core.ErrInvalid || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("engine config %s: %v", bad, err)
		}
	}
	if vm, err := core.Open(core.Options{EngineConfig: []byte(`{}`)}); err != nil {
		t.Errorf("engine config {}: %v", err)
	} else {
		vm.Close()
	}
	if _, err := core.Open(core.Options{Engine: "process", Interpreter: "no-such-lua"}); core.CodeOf(err) != core.ErrLuaNotFound {
		t.Errorf("missing interpreter: %v", err)
	}
}

func TestTimeoutThenReuse(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			vm := open(t, ec.opts)
			for _, code := range []string{
				"while true do end",
				"while true do pcall(function() while true do end end) end",
				"local co = coroutine.wrap(function() while true do end end) co()",
			} {
				start := time.Now()
				_, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{Timeout: 100 * time.Millisecond})
				took := time.Since(start)
				var e *core.Error
				if !errors.As(err, &e) || e.Code != core.ErrTimeout {
					t.Fatalf("%q: error %v, want a timeout", code, err)
				}
				if took < 100*time.Millisecond || took > 100*time.Millisecond+core.TimeoutGrace+150*time.Millisecond {
					t.Errorf("%q: timed out after %v", code, took)
				}
				if got := string(run(t, vm, "print(1 + 1)").Stdout); got != "2\n" {
					t.Errorf("after timeout: stdout %q", got)
				}
			}
		})
	}
}

func TestFreshAndPersistentState(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			fresh := open(t, ec.opts)
			for _, code := range []string{
				"x = 1", "string.extra = 1", "setmetatable(_G, {__index = function() return 'meta' end})",
				"table.insert = nil", "package.loaded.fake = {}", "rawset(_G, 'y', 2)",
			} {
				run(t, fresh, code)
				res := run(t, fresh, "return x, string.extra, undefined_global, type(table.insert), package.loaded.fake, y")
				if string(res.Values) != `[null,null,null,"function",null,null]` {
					t.Errorf("after %q: a fresh call sees %s", code, res.Values)
				}
			}
			popts := ec.opts
			popts.Persistent = true
			persistent := open(t, popts)
			run(t, persistent, "x = 41; function inc(n) return n + 1 end")
			if got := string(run(t, persistent, "return inc(x)").Values); got != "[42]" {
				t.Errorf("persistent: %s", got)
			}
		})
	}
}

func TestOutputCap(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			opts := ec.opts
			opts.Limits.MaxOutputBytes = 100
			vm := open(t, opts)
			res := run(t, vm, "for i = 1, 1000 do io.write('0123456789') end io.stderr:write(string.rep('e', 500))")
			want := strings.Repeat("0123456789", 10) + fmt.Sprintf(core.TruncationMarker, 9900)
			if string(res.Stdout) != want || !res.Truncated {
				t.Errorf("stdout %q truncated=%v", res.Stdout, res.Truncated)
			}
			if !strings.HasSuffix(string(res.Stderr), fmt.Sprintf(core.TruncationMarker, 400)) {
				t.Errorf("stderr %q", res.Stderr)
			}
		})
	}
}

func TestExecFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.lua")
	if err := os.WriteFile(path, []byte("#!/usr/bin/lua\nprint('hi')\nreturn 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			vm := open(t, ec.opts)
			res, err := vm.ExecFile(context.Background(), path, core.ExecOptions{PrintResults: true})
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Stdout) != "hi\n" || string(res.Values) != "[5]" {
				t.Errorf("stdout %q values %s", res.Stdout, res.Values)
			}
		})
	}
}

func TestConcurrentVMs(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			vms := []*core.VM{open(t, ec.opts), open(t, ec.opts)}
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					vm := vms[g%len(vms)]
					for i := 0; i < 25; i++ {
						res, err := vm.Exec(context.Background(), []byte(fmt.Sprintf("local v = %d * %d\nreturn v", g, i)), core.ExecOptions{})
						if err != nil {
							errs <- err
							return
						}
						if want := fmt.Sprintf("[%d]", g*i); string(res.Values) != want {
							errs <- fmt.Errorf("got %s want %s", res.Values, want)
							return
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestDecodeValues(t *testing.T) {
	vals, err := core.DecodeValues([]byte(`[1,2.5,"s",null,true,[1,2],{"$t":[["k",{"$b":"/w=="}]]},{"$o":"function","s":"function: 0x1"},{"$f":"inf"}]`))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(vals)
	want := "[1 2.5 s <nil> true [1 2] map[k:[255]] {function function: 0x1} +Inf]"
	if got != want {
		t.Errorf("decoded %s, want %s", got, want)
	}
}
