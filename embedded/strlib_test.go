package embedded

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

func openVM(t *testing.T, opts core.Options) *core.VM {
	t.Helper()
	opts.Engine = "embedded"
	vm, err := core.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

func TestStringPatternFunctions(t *testing.T) {
	cases := []struct{ code, want string }{
		{`return string.find("hello world", "o w")`, `[5,7]`},
		{`return ("hello"):find("l")`, `[3,3]`},
		{`return ("hello"):find("l", -2)`, `[4,4]`},
		{`return ("a.b"):find(".", 1, true)`, `[2,2]`},
		{`return ("a+b"):find("+")`, `[2,2]`}, // no specials: a plain search
		{`return ("abc"):find("", 10)`, `[null]`},
		{`return ("abc"):find("", 4)`, `[4,3]`},
		{`return ("key=val"):find("(%w+)=(%w+)")`, `[1,7,"key","val"]`},
		{`return ("hello"):find("()ll()")`, `[3,4,3,5]`},
		{`return ("  x  "):match("^%s*(.-)%s*$")`, `["x"]`},
		{`return ("hello"):match(".l+")`, `["ell"]`},
		{`return ("hello"):match("l", 4)`, `["l"]`},
		{`return ("hello"):match("x")`, `[null]`},
		{`return ("f(a(b))"):match("%b()")`, `["(a(b))"]`},
		{`return ("THE end"):match("%f[%a]%l+")`, `["end"]`},
		{`return ("a\0b"):match("%z") == "\0"`, `[true]`},
		{`local t = {} for k, v in ("a=1, b=2"):gmatch("(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, ",")`, `["a1,b2"]`},
		{`local n = 0 for w in ("abc"):gmatch("%w*") do n = n + 1 end return n`, `[1]`},
		{`local t = {} for w in ("^a^a"):gmatch("^a") do t[#t+1] = w end return #t`, `[2]`},
		{`local t = {} for p in ("abc"):gmatch("()") do t[#t+1] = p end return table.concat(t, ",")`, `["1,2,3,4"]`},
		{`return ("abc"):gsub("%w*", "-")`, `["-",1]`},
		{`return ("abc"):gsub("", "-")`, `["-a-b-c-",4]`},
		{`return ("abc"):gsub("", "-", 2)`, `["-a-bc",2]`},
		{`return ("hello world"):gsub("o", {o = "0"})`, `["hell0 w0rld",2]`},
		{`return ("abc"):gsub("%w", function(c) return c:upper() .. "." end)`, `["A.B.C.",3]`},
		{`return ("abc"):gsub("%w", function(c) if c == "b" then return false end end)`, `["abc",3]`},
		{`return ("abc"):gsub("b", "%%%0%1")`, `["a%bbc",1]`},
		{`return ("x = 1"):gsub("(%w+) = (%w+)", "%2 = %1")`, `["1 = x",1]`},
		{`return ("abc"):gsub("()b", "%1")`, `["a2c",1]`},
		{`return ("abc"):gsub("^.", "X")`, `["Xbc",1]`},
		{`return ("abc"):gsub("b", 7)`, `["a7c",1]`},
		{`return select(2, pcall(string.find, "x", "[a")):match("malformed pattern %(missing ']'%)$") ~= nil`, `[true]`},
		{`return select(2, pcall(string.gsub, "x", "x", "%2")):match("invalid capture index %%2") ~= nil`, `[true]`},
		{`return select(2, pcall(string.gsub, "x", "x", "%")):match("invalid use of '%%' in replacement string$") ~= nil`, `[true]`},
		{`return select(2, pcall(string.gsub, "x", "x", {x = true})):match("invalid replacement value %(a boolean%)$") ~= nil`, `[true]`},
		{`return select(2, pcall(string.find, ("a"):rep(300), ("a?"):rep(300))):match("pattern too complex$") ~= nil`, `[true]`},
		{`return pcall(string.find, "x", "[a", 1, true)`, `[true,null]`},
	}
	for _, trusted := range []bool{true, false} {
		vm := openVM(t, core.Options{Trusted: trusted})
		for _, c := range cases {
			res, err := vm.Exec(context.Background(), []byte(c.code), core.ExecOptions{})
			if err != nil {
				t.Fatalf("%s: %v", c.code, err)
			}
			if !res.Success || string(res.Values) != c.want {
				t.Errorf("trusted=%v %s: %s %s, want %s", trusted, c.code, res.Values, res.Stderr, c.want)
			}
		}
	}
}

// string.gfind is gopher-lua's old name of gmatch; where it exists (the
// trusted library) it is ours too.
func TestGfindIsGmatch(t *testing.T) {
	vm := openVM(t, core.Options{Trusted: true})
	res, err := vm.Exec(context.Background(), []byte(`return string.gfind == string.gmatch`), core.ExecOptions{})
	if err != nil || string(res.Values) != "[true]" {
		t.Fatalf("%v %s %s", err, res.Values, res.Stderr)
	}
}

// A pathological pattern stops at the call's deadline, inside the matcher
// (the engine does not have to give the state up), and leaves the VM
// usable. The machine may be shared (a thread is sometimes descheduled for
// tens of milliseconds): the best of three tries counts.
func TestPatternTimeout(t *testing.T) {
	const setup = `local s, p = string.rep("a", 1e5), string.rep("a*", 30) .. "b" `
	chunks := []string{
		`return string.find(s, p)`,
		`return s:match(p)`,
		`return s:gsub(p, "")`,
		`for x in s:gmatch(p) do end`,
		`local ok = pcall(string.find, s, p) return ok`,
	}
	for _, trusted := range []bool{true, false} {
		vm := openVM(t, core.Options{Trusted: trusted, Persistent: true})
		for _, chunk := range chunks {
			var last string
			for try := 0; try < 3; try++ {
				start := time.Now()
				_, err := vm.Exec(context.Background(), []byte(setup+chunk), core.ExecOptions{Timeout: 50 * time.Millisecond})
				elapsed := time.Since(start)
				if core.CodeOf(err) != core.ErrTimeout {
					t.Fatalf("trusted=%v %s: %v, want a timeout", trusted, chunk, err)
				}
				res, err2 := vm.Exec(context.Background(), []byte("return 1+1"), core.ExecOptions{Timeout: time.Second})
				if err2 != nil || string(res.Values) != "[2]" {
					t.Fatalf("after the timeout: %v %+v", err2, res)
				}
				last = fmt.Sprintf("%v after %v", err, elapsed)
				if !strings.Contains(err.Error(), "reset") && elapsed < 100*time.Millisecond {
					last = ""
					break
				}
			}
			if last != "" {
				t.Errorf("trusted=%v %s: the matcher did not stop in time: %s", trusted, chunk, last)
			}
		}
	}
}

// TestOneByteGsubStopsAtTheDeadline: gsub with a one-byte pattern and a
// replacement of the byte alone runs its own loop (gsubOneByte), which
// must poll the call's limits whether the bytes match or not (without
// the polls: 185-425 ms past a 30 ms deadline).
func TestOneByteGsubStopsAtTheDeadline(t *testing.T) {
	vm := openVM(t, core.Options{Persistent: true})
	if _, err := vm.Exec(context.Background(), []byte(`big = string.rep("a", 2^27)`), core.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []string{
		`return (big:gsub("b", ""))`,             // no byte matches
		`return #big:gsub(".", "b")`,             // every byte, one-byte replacement
		`return #big:gsub("[ab]", {a = "xy"})`,   // every byte, longer replacement
		`return select(2, big:gsub("%a", "%0"))`, // an expanded replacement
	} {
		var last string
		for try := 0; try < 3; try++ {
			start := time.Now()
			_, err := vm.Exec(context.Background(), []byte(chunk), core.ExecOptions{Timeout: 30 * time.Millisecond})
			elapsed := time.Since(start)
			if core.CodeOf(err) != core.ErrTimeout {
				t.Fatalf("%s: %v, want a timeout", chunk, err)
			}
			last = fmt.Sprintf("%v after %v", err, elapsed)
			if elapsed < 80*time.Millisecond {
				last = ""
				break
			}
		}
		if last != "" {
			t.Errorf("%s: did not stop in time: %s", chunk, last)
		}
	}
	res, err := vm.Exec(context.Background(), []byte(`return #big:gsub("b", "")`), core.ExecOptions{})
	if err != nil || string(res.Values) != "[134217728]" {
		t.Fatalf("without a deadline: %v %s", err, res.Values)
	}
}
