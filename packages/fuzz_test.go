package packages

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// A repository's manifest, a catalog and a repository URL come from
// outside (a server, a file, a lock file): these targets feed them any
// bytes.

var manifestSeeds = []string{
	`repository = { hello = { ["1.0-1"] = { { arch = "all" } } } }`,
	"commands = {}\nmodules = { a = {'x-1.0-1'} }\nrepository = {\n  ['lua-cjson'] = {\n    ['2.1.0-1'] = {\n      {arch = \"rockspec\"}, {arch = \"src\"}\n    },\n  }; x = {1, 2.5, -3, 0x1F, 1e+5, true, false, nil};\n}\n",
	"-- comment\n--[==[ long\ncomment ]==]\nrepository = { [ [[long]] ] = { [\"a\\n\\65\\\"\"] = {} } }",
	"repository = {'a'; 'b', [3] = 'c', d = \"\\\\\"}",
	"repository = { x = { ['1'] = {} }, y = 'unfinished",
	"repository = { f() }", "repository = {{{{{{}}}}}}", "x = - 5", "repository = { [-.5e-3] = 1 }",
}

// luaValue converts a manifest value to what Lua would hold: nil fields
// dropped, the last of duplicate keys kept. ok is false when the table
// has duplicate keys (Lua's order of assignment in a constructor then
// differs from the text's).
func manifestValue(v any) (any, bool) {
	t, isTable := v.(*mtable)
	if !isTable {
		return v, true
	}
	m := map[any]any{}
	for i, k := range t.keys {
		if _, dup := m[k]; dup {
			return nil, false
		}
		if f, isNum := k.(float64); isNum && math.IsNaN(f) {
			return nil, false
		}
		x, ok := manifestValue(t.vals[i])
		if !ok {
			return nil, false
		}
		m[k] = x
	}
	for k, x := range m {
		if x == nil {
			delete(m, k)
		}
	}
	return m, true
}

func luaGoValue(v lua.LValue) any {
	switch v := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		m := map[any]any{}
		v.ForEach(func(k, x lua.LValue) { m[luaGoValue(k)] = luaGoValue(x) })
		return m
	}
	return fmt.Sprintf("<%s>", v.Type())
}

func sameValue(a, b any) bool {
	ma, ok1 := a.(map[any]any)
	mb, ok2 := b.(map[any]any)
	if ok1 != ok2 {
		return false
	}
	if !ok1 {
		if fa, ok := a.(float64); ok {
			fb, ok := b.(float64)
			return ok && (fa == fb || math.IsNaN(fa) && math.IsNaN(fb))
		}
		return a == b
	}
	if len(ma) != len(mb) {
		return false
	}
	for k, x := range ma {
		y, ok := mb[k]
		if !ok || !sameValue(x, y) {
			return false
		}
	}
	return true
}

// FuzzParseManifest checks the manifest reader against a Lua interpreter
// (gopher-lua; luac5.1 or luac5.4 where gopher-lua refuses): what it
// accepts as data, Lua runs to the same repository table. It answers in time linear in the input, and an error is a
// *manifestError.
func FuzzParseManifest(f *testing.F) {
	for _, s := range manifestSeeds {
		f.Add(s)
	}
	var luacs []string
	for _, name := range []string{"luac5.1", "luac5.4"} {
		if p, err := exec.LookPath(name); err == nil {
			luacs = append(luacs, p)
		}
	}
	f.Fuzz(func(t *testing.T, src string) {
		var globals map[string]any
		var err error
		for try := 0; ; try++ { // the fastest of three runs: a shared machine pauses
			start := time.Now()
			globals, err = parseManifest(context.Background(), src)
			d := time.Since(start)
			if d <= 100*time.Millisecond+time.Duration(len(src))*20*time.Microsecond {
				break
			}
			if try == 2 {
				t.Fatalf("%d bytes took %v", len(src), d)
			}
		}
		if err != nil {
			if _, ok := err.(*manifestError); !ok {
				t.Fatalf("%q: error %T %v", src, err, err)
			}
			return
		}
		L := lua.NewState(lua.Options{SkipOpenLibs: true})
		defer L.Close()
		if err := L.DoString(src); err != nil {
			// gopher-lua has bugs of its own ("--[=0" is a comment to Lua
			// 5.1, an invalid long comment to it), and luarocks may run on
			// Lua 5.1 to 5.4 (";" is a statement from 5.2 on): what one of
			// luac5.1 and luac5.4 compiles is fine.
			if len(luacs) == 0 {
				t.Skipf("%q: gopher-lua says %v; no luac5.1 or luac5.4 installed", src, err)
			}
			var msgs []string
			for _, luac := range luacs {
				cmd := exec.Command(luac, "-p", "-")
				cmd.Stdin = strings.NewReader(src)
				out, lerr := cmd.CombinedOutput()
				if lerr == nil {
					return
				}
				msgs = append(msgs, string(out))
			}
			t.Fatalf("%q: accepted as data, Lua says: %v; %s", src, err, msgs)
		}
		repo, ok := globals["repository"]
		if !ok {
			return
		}
		want, ok := manifestValue(repo)
		if !ok {
			return
		}
		if got := luaGoValue(L.GetGlobal("repository")); !sameValue(want, got) {
			t.Fatalf("%q:\nparsed %v\n   Lua %v", src, want, got)
		}
	})
}

// FuzzCatalogJSON checks AddJSON and a search of what it loaded: errors
// are ErrInvalid, every entry loaded has a name.
func FuzzCatalogJSON(f *testing.F) {
	for _, s := range []string{
		`{"packages": [{"name": "bio_x", "summary": "x", "priority": 9223372036854775807}]}`,
		`[{"name": "a", "tags": ["t"]}, {"name": "b"}]`,
		`{"profiles": {"p": {"packages": ["a"]}}, "packages": {"x": {"summary": "s"}}}`,
		`{"packages": {"x": null}}`, `{"packages": [null]}`, `{"profiles": 1}`, `[1]`, "{\n\"a\":\n", `null`,
	} {
		f.Add([]byte(s), "bio")
	}
	f.Fuzz(func(t *testing.T, data []byte, query string) {
		c := NewCatalog()
		if err := c.AddJSON("c.json", data); err != nil {
			if core.CodeOf(err) != core.ErrInvalid {
				t.Fatalf("%q: %v, want ErrInvalid", data, err)
			}
			return
		}
		for n, p := range c.Packages {
			if p == nil || p.Name != n || n == "" {
				t.Fatalf("%q: package %q: %+v", data, n, p)
			}
		}
		for n, p := range c.Profiles {
			if p == nil || p.Name != n || n == "" {
				t.Fatalf("%q: profile %q: %+v", data, n, p)
			}
		}
		for _, m := range c.Search(query) {
			if m.Score <= 0 {
				t.Fatalf("%q: match %+v", data, m)
			}
		}
	})
}

// FuzzRepoURL checks NormalizeRepoURL and RedactURL: errors are
// ErrInvalid, normalizing is idempotent, and neither a normalized URL's
// redacted form nor an error message shows a password.
func FuzzRepoURL(f *testing.F) {
	for _, s := range []string{
		"https://luarocks.org", "https://u:p@host/x/", "file:///tmp/a%20b", "/tmp/a b", "rel/dir",
		"file://localhost/x/../y", "file://h/x", "ftp://x", "http://a@b@c/", "https://u:s3cret@h?x#y", " ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		norm, err := NormalizeRepoURL(raw)
		pw := ""
		if u, perr := url.Parse(strings.TrimSpace(raw)); perr == nil && u.User != nil {
			pw, _ = u.User.Password()
		}
		if err != nil {
			if core.CodeOf(err) != core.ErrInvalid {
				t.Fatalf("%q: %v, want ErrInvalid", raw, err)
			}
			if len(pw) >= 4 && strings.Contains(err.Error(), pw) {
				t.Fatalf("%q: error shows the password: %v", raw, err)
			}
			return
		}
		again, err := NormalizeRepoURL(norm)
		if err != nil || again != norm {
			t.Fatalf("%q: normalized %q, again %q %v", raw, norm, again, err)
		}
		if u, perr := url.Parse(norm); perr == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && len(p) >= 4 && strings.Contains(RedactURL(norm), p) {
				t.Fatalf("%q: redacted %q shows the password", raw, RedactURL(norm))
			}
			if n := u.User.Username(); len(n) >= 4 && strings.Contains(RedactURL(norm), n+"@") {
				t.Fatalf("%q: redacted %q shows the user", raw, RedactURL(norm))
			}
		}
	})
}

// FuzzCompareVersions checks that CompareVersions orders: antisymmetric
// and transitive on any three versions.
func FuzzCompareVersions(f *testing.F) {
	f.Add("1.0-1", "1.0-2", "scm-1")
	f.Add("2.1.0-1", "10.0", "+5")
	f.Add("1", "01", "1a")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if ab != -ba {
			t.Fatalf("%q vs %q: %d, reversed %d", a, b, ab, ba)
		}
		bc, ac := CompareVersions(b, c), CompareVersions(a, c)
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("%q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
		if ab == 0 && bc == 0 && ac != 0 {
			t.Fatalf("%q = %q = %q but %q vs %q is %d", a, b, c, a, c, ac)
		}
	})
}

// FuzzLockEntry checks what a lock file's entry may name: an accepted
// entry's rock is a plain file name of its package and version, which
// names a rock or a rockspec, so a lock file cannot make the manager
// fetch or write any other file.
func FuzzLockEntry(f *testing.F) {
	f.Add("hello", "1.0-1", "hello-1.0-1.all.rock")
	f.Add("lua-cjson", "2.1.0-1", "lua-cjson-2.1.0-1.rockspec")
	f.Add("a", "1", "a-1.linux-x86_64.rock")
	f.Add("a", "1", "../a-1.all.rock")
	f.Add("a.b", "1", "a.b-1.all.rock/x")
	f.Fuzz(func(t *testing.T, name, version, rock string) {
		err := checkLockEntry(LockEntry{Name: name, Version: version, Rock: rock})
		if err != nil {
			if core.CodeOf(err) != core.ErrInvalid {
				t.Fatalf("%q %q %q: %v, want ErrInvalid", name, version, rock, err)
			}
			return
		}
		if !ValidName(name) || !ValidVersion(version) || !validFileName(rock) ||
			!strings.HasPrefix(rock, name+"-"+version+".") ||
			!(strings.HasSuffix(rock, ".rock") || strings.HasSuffix(rock, ".rockspec")) ||
			strings.ContainsAny(rock, "/\\\x00 \n") {
			t.Fatalf("accepted %q %q %q", name, version, rock)
		}
	})
}
