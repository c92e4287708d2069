package embedded

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

func execValues(t *testing.T, vm *core.VM, code string) (*core.Result, []any) {
	t.Helper()
	res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatalf("%s: %v", code, err)
	}
	if !json.Valid(res.Values) {
		t.Fatalf("%s: invalid JSON %.200s", code, res.Values)
	}
	vals, err := core.DecodeValues(res.Values)
	if err != nil {
		t.Fatalf("%s: %v", code, err)
	}
	return res, vals
}

// Defect 5: a table is a list only when its keys are exactly 1..n; a hole
// plus another key made a list with a null and lost the key.
func TestValuesListOnlyForKeys1ToN(t *testing.T) {
	vm := openVM(t, core.Options{})
	cases := []struct {
		code string
		want any
	}{
		{`local t = {1, 2, 3} t[2] = nil t.x = "x" return t`, map[any]any{int64(1): int64(1), int64(3): int64(3), "x": "x"}},
		{`local t = {} t[1] = 1 t[3] = 3 t.name = "keep me" return t`, map[any]any{int64(1): int64(1), int64(3): int64(3), "name": "keep me"}},
		{`return {1, 2, nil, 4}`, map[any]any{int64(1): int64(1), int64(2): int64(2), int64(4): int64(4)}},
		{`local t = {1, 2, 3} t[3] = nil return t`, []any{int64(1), int64(2)}},
		{`local t = {} t[3] = "c" t[2] = "b" t[1] = "a" return t`, []any{"a", "b", "c"}},
		{`return {1, [2.0] = 2}`, []any{int64(1), int64(2)}},
		{`return {1, 2, x = 3}`, map[any]any{int64(1): int64(1), int64(2): int64(2), "x": int64(3)}},
		{`return {[0] = 0, 1}`, map[any]any{int64(0): int64(0), int64(1): int64(1)}},
		{`return {[1.5] = 1}`, map[any]any{1.5: int64(1)}},
		{`return {[-1] = 1}`, map[any]any{int64(-1): int64(1)}},
		{`return {[2] = 2}`, map[any]any{int64(2): int64(2)}},
		{`return {}`, map[any]any{}},
		{`return {{}}`, []any{map[any]any{}}},
	}
	for _, c := range cases {
		_, vals := execValues(t, vm, c.code)
		if len(vals) != 1 || !reflect.DeepEqual(vals[0], c.want) {
			t.Errorf("%s: %#v, want %#v", c.code, vals, c.want)
		}
	}
}

// Defect 10: maps were cut at 32 levels, lists at 64 (docs/values.md: 64).
func TestValuesMapsAndListsNestEquallyDeep(t *testing.T) {
	vm := openVM(t, core.Options{})
	for _, c := range []struct{ name, code string }{
		{"maps", `local t = {} local c = t for i = 1, 100 do c.a = {} c = c.a end return t`},
		{"lists", `local t = {} local c = t for i = 1, 100 do c[1] = {} c = c[1] end return t`},
		{"mixed", `local t = {} local c = t for i = 1, 100 do local n = {} if i % 2 == 0 then c[1] = n else c.a = n end c = n end return t`},
	} {
		_, vals := execValues(t, vm, c.code)
		v, levels := vals[0], 0
		for {
			switch x := v.(type) {
			case map[any]any:
				v = x["a"]
				levels++
				continue
			case []any:
				v = x[0]
				levels++
				continue
			}
			break
		}
		if levels != core.DefaultMaxValueDepth || v != (core.Opaque{Type: "table", Text: "<depth limit>"}) {
			t.Errorf("%s: %d levels, then %#v; want %d levels then the depth marker", c.name, levels, v, core.DefaultMaxValueDepth)
		}
	}
}

// Defect 2: one returned string was encoded whole (a 128 MiB string of
// control bytes became 768 MiB of JSON); now the size limit holds inside it.
func TestValuesHugeStringCut(t *testing.T) {
	vm := openVM(t, core.Options{})
	marker := core.Opaque{Type: "nil", Text: "<size limit>"}
	cases := []struct {
		code string
		want []any
	}{
		{`return string.rep("\1", 24 * 1024 * 1024)`, []any{marker}},
		{`return string.rep("\255", 24 * 1024 * 1024)`, []any{marker}},
		{`return "a", string.rep("\1", 24 * 1024 * 1024), "b"`, []any{"a", marker}},
		{`return {"a", string.rep("\1", 24 * 1024 * 1024), "b"}`, []any{[]any{"a", marker}}},
		{`return {[string.rep("\1", 24 * 1024 * 1024)] = 1}`, []any{map[any]any{marker: nil}}},
		{`return {k = string.rep("\1", 24 * 1024 * 1024)}`, []any{map[any]any{"k": marker}}},
	}
	for _, c := range cases {
		res, vals := execValues(t, vm, c.code)
		if len(res.Values) > 4096 {
			t.Errorf("%s: %d bytes of values", c.code, len(res.Values))
		}
		if !reflect.DeepEqual(vals, c.want) {
			t.Errorf("%s: %#v, want %#v", c.code, vals, c.want)
		}
	}
	// Strings within the limit are kept whole.
	res, vals := execValues(t, vm, `return string.rep("x", 15 * 1024 * 1024), "y"`)
	if len(vals) != 2 || len(vals[0].(string)) != 15<<20 || vals[1] != "y" || !res.Success {
		t.Errorf("a 15 MiB string: %d values", len(vals))
	}
}

// Defect 8: os.exit(2^32) gave return code 0 in C with success false.
func TestExitCodeSaturates(t *testing.T) {
	vm := openVM(t, core.Options{})
	for code, want := range map[string]int{
		"os.exit(2^32)": math.MaxInt32, "os.exit(2^31)": math.MaxInt32, "os.exit(-2^40)": math.MinInt32,
		"os.exit(5)": 5, "os.exit(-1)": -1, "os.exit(true)": 0,
	} {
		res, err := vm.Exec(context.Background(), []byte(code), core.ExecOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.ReturnCode != want || res.Success != (want == 0) {
			t.Errorf("%s: rc %d success %v, want %d", code, res.ReturnCode, res.Success, want)
		}
	}
}

// Defect 11 (fixed in builtins.go): recursion through pcall in tail
// position surfaced a Go runtime error ("index out of range [254] with
// length 8") as the Lua error.
func TestPcallTailRecursion(t *testing.T) {
	vm := openVM(t, core.Options{Persistent: true})
	for _, code := range []string{
		`local function f() return pcall(f) end return f()`,
		`local function f() return xpcall(f, debug.traceback) end return f()`,
		`local function f() return pcall(f) end local r = {f()} return #r, r[#r]`,
	} {
		res, vals := execValues(t, vm, code)
		text := string(res.Values) + string(res.Stderr)
		if strings.Contains(text, "runtime error") || strings.Contains(text, "index out of range") {
			t.Errorf("%s: Go runtime error leaked: %.300s", code, text)
		}
		if !res.Success || len(vals) < 2 || !strings.Contains(string(res.Values), "C stack overflow") {
			t.Errorf("%s: %.300s %s", code, res.Values, res.Stderr)
		}
	}
	// The VM is still sound afterwards.
	if _, vals := execValues(t, vm, `local function g(n) if n == 0 then return 0 end return 1 + g(n - 1) end return g(1000), pcall(error, "x")`); !reflect.DeepEqual(vals, []any{int64(1000), false, "x"}) {
		t.Errorf("after the recursion: %#v", vals)
	}
}

// os.exit in a __tostring that prints the returned values (found by
// review, red team) gave return code 0, success, and "error printing
// results: (error object is a userdata value)" on stderr: the engine's
// exit marker. It exits as in the chunk, with no values.
func TestExitWhilePrintingResults(t *testing.T) {
	vm := openVM(t, core.Options{Persistent: true})
	res, err := vm.Exec(context.Background(), []byte(`return 1, setmetatable({}, {__tostring = function() io.write("printing ") os.exit(3) end})`),
		core.ExecOptions{PrintResults: true})
	if err != nil || res.ReturnCode != 3 || res.Success || string(res.Values) != "[]" ||
		string(res.Stdout) != "1\tprinting " || len(res.Stderr) != 0 {
		t.Fatalf("%v rc %d success %v values %s stdout %q stderr %q", err, res.ReturnCode, res.Success, res.Values, res.Stdout, res.Stderr)
	}
	res, err = vm.Exec(context.Background(), []byte("print(1 + 1)"), core.ExecOptions{})
	if err != nil || string(res.Stdout) != "2\n" {
		t.Fatalf("after: %v %v", err, res)
	}
}
