package embedded

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// FuzzCompile compiles any source through the engine's compile path (the
// nesting and lexical pre-pass, gopher-lua's parser, the tree rewrites,
// the compiler): it ends in a chunk or a *syntaxError, quickly, without
// a panic. When luac5.1 is installed, the engine accepts what Lua 5.1
// accepts, and what else it accepts (gopher-lua takes some of Lua 5.2's
// syntax: ";", goto and labels) luac5.4 accepts too.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"return 1", "local a, b = 1 return a, b", "x = {1e, 2}", "return '\\300'", "return 0x8000000000000000",
		"for i = 1, 3 do local t = {} t[i] = i end", "local function f(...) return ... end return f(1, 2)",
		"return [==[ long ]==] .. 'x' .. \"y\"", "--[[ c ]] return 1 --x", "a = b and c or d",
		"while true do break end repeat until false", "return 1_000", "return 3..2", "if x then elseif y then else end",
		"return (f())", "local t = {a = 1, [2] = 3; 4}", "return #t, -x, not y", "f{...}",
	} {
		f.Add(s)
	}
	luac, _ := exec.LookPath("luac5.1")
	luac54, _ := exec.LookPath("luac5.4")
	f.Fuzz(func(t *testing.T, src string) {
		start := time.Now()
		c, err := compile([]byte(src), "=input")
		if d := time.Since(start); d > 200*time.Millisecond+time.Duration(len(src))*50*time.Microsecond {
			// Once more, past the cache: a shared machine pauses.
			start = time.Now()
			_, _ = compileSource([]byte(src), "input")
			if d := time.Since(start); d > 200*time.Millisecond+time.Duration(len(src))*50*time.Microsecond {
				t.Fatalf("%d bytes took %v", len(src), d)
			}
		}
		if err != nil {
			if _, ok := err.(*syntaxError); !ok {
				t.Fatalf("%q: %T %v, want a *syntaxError", src, err, err)
			}
			if !strings.HasPrefix(err.Error(), "input") {
				t.Fatalf("%q: message %q does not name the chunk", src, err)
			}
		} else if c == nil || c.proto == nil {
			t.Fatalf("%q: no chunk and no error", src)
		}
		if luac == "" || strings.Contains(src, "goto") || strings.Contains(src, "::") || strings.ContainsRune(src, 0) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, luac, "-p", "-")
		// (A newline first: luac skips a first line starting with '#', as
		// a file's, which a chunk of code has not.)
		cmd.Stdin = strings.NewReader("\n" + src)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		lerr := cmd.Run()
		if ctx.Err() != nil {
			return
		}
		if lerr == nil && err != nil {
			t.Fatalf("%q: engine %v, luac5.1 accepts it", src, err)
		}
		if lerr != nil && err == nil {
			// gopher-lua takes some of Lua 5.2's syntax (";" as a
			// statement, goto): fine if luac5.4 takes it too.
			if luac54 == "" {
				return
			}
			cmd := exec.CommandContext(ctx, luac54, "-p", "-")
			cmd.Stdin = strings.NewReader("\n" + src)
			if out, err54 := cmd.CombinedOutput(); err54 != nil && ctx.Err() == nil {
				t.Fatalf("%q: engine accepts it, luac5.1 says %s, luac5.4 %s", src, stderr.String(), out)
			}
		}
	})
}
