package packages

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"libbioxen/core"
)

// buildRepo makes a real rocks server directory with two pure-Lua rocks,
// world depending on hello, with luarocks itself (offline).
func buildRepo(t *testing.T, helloVersions ...string) string {
	t.Helper()
	if _, err := exec.LookPath("luarocks"); err != nil {
		t.Skip("luarocks is not installed")
	}
	repo := t.TempDir()
	rock := func(name, version, body, deps string) {
		src := t.TempDir()
		os.WriteFile(filepath.Join(src, name+".lua"), []byte(body), 0o644)
		spec := filepath.Join(src, name+"-"+version+".rockspec")
		os.WriteFile(spec, []byte(`package = "`+name+`"
version = "`+version+`"
source = { url = "file:///nonexistent" }
description = { summary = "test rock `+name+`" }
dependencies = { "lua >= 5.1"`+deps+` }
build = { type = "builtin", modules = { `+name+` = "`+name+`.lua" } }
`), 0o644)
		cmd := exec.Command("luarocks", "make", "--pack-binary-rock", "--deps-mode=none", "--lua-version=5.1", "--tree="+filepath.Join(src, "t"), spec)
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pack %s: %v\n%s", name, err, out)
		}
		matches, _ := filepath.Glob(filepath.Join(src, "*.rock"))
		for _, m := range matches {
			data, _ := os.ReadFile(m)
			os.WriteFile(filepath.Join(repo, filepath.Base(m)), data, 0o644)
		}
	}
	if len(helloVersions) == 0 {
		helloVersions = []string{"1.0-1"}
	}
	for _, v := range helloVersions {
		rock("hello", v, `return { hi = function() return "hi `+v+`" end }`, "")
	}
	rock("world", "1.0-1", `local h = require("hello") return { both = function() return h.hi() .. " world" end }`, `, "hello >= 1.0"`)
	if out, err := exec.Command("luarocks-admin", "make_manifest", repo).CombinedOutput(); err != nil {
		t.Fatalf("make_manifest: %v\n%s", err, out)
	}
	return repo
}

func open(t *testing.T, repos ...string) *Manager {
	t.Helper()
	var rs []Repo
	for i, r := range repos {
		u, err := NormalizeRepoURL(r)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, Repo{Name: "r" + string(rune('0'+i)), URL: u})
	}
	m, err := Open(Config{Home: t.TempDir(), DefaultRepos: rs})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInstallRequireRemove(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	ctx := context.Background()
	env, err := m.Env("default", true)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := env.Install(ctx, "world", "")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, i := range inst {
		names[i.Name+"@"+i.LuaVersion] = true
	}
	if !names["hello@5.1"] || !names["world@5.1"] {
		t.Errorf("installed %v", inst)
	}
	path, _, _ := env.Paths("5.1")
	for _, lua := range []string{"lua5.1", "luajit"} {
		if _, err := exec.LookPath(lua); err != nil {
			continue
		}
		out, err := exec.Command(lua, "-e", `package.path = "`+path+`" print(require("world").both())`).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "hi 1.0-1 world" {
			t.Errorf("%s require: %v %s", lua, err, out)
		}
	}
	if _, err := exec.LookPath("lua5.4"); err == nil {
		p54, _, _ := env.Paths("5.4")
		out, err := exec.Command("lua5.4", "-e", `package.path = "`+p54+`" print(require("world").both())`).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "hi 1.0-1 world" {
			t.Errorf("lua5.4 require: %v %s", err, out)
		}
	}
	// hello is needed by world: removing it would break world, so it is
	// refused and nothing changes.
	if err := env.Remove(ctx, "hello"); err == nil || !strings.Contains(err.Error(), "world") {
		t.Errorf("removing a dependency of world: %v", err)
	}
	if inst, _ := env.List(ctx); len(inst) != len(names) {
		t.Errorf("after the refused remove: %v", inst)
	}
	if err := env.Remove(ctx, "world"); err != nil {
		t.Fatal(err)
	}
	if err := env.Remove(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := env.Remove(ctx, "world"); core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("second remove: %v", err)
	}
}

func TestEnvironmentsAreIsolated(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	ctx := context.Background()
	a, _ := m.Env("a", true)
	b, _ := m.Env("b", true)
	if _, err := a.Install(ctx, "hello", ""); err != nil {
		t.Fatal(err)
	}
	if inst, _ := b.List(ctx); len(inst) != 0 {
		t.Errorf("b sees %v", inst)
	}
	if _, err := m.Env("../etc", true); core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("bad env name: %v", err)
	}
	if _, err := m.Env("missing", false); core.CodeOf(err) != core.ErrFileNotFound {
		t.Errorf("missing env: %v", err)
	}
}

func TestUnknownPackageAndUnreachableRepo(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	ctx := context.Background()
	env, _ := m.Env("default", true)
	_, err := env.Install(ctx, "helo", "")
	if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "hello") {
		t.Errorf("unknown package: %v", err)
	}
	env.Install(ctx, "hello", "")
	before, _ := env.List(ctx)
	bad := open(t, filepath.Join(t.TempDir(), "no-such-repo"))
	envBad, _ := bad.Env("default", true)
	if _, err := envBad.Install(ctx, "hello", ""); core.CodeOf(err) != core.ErrConnection || !strings.Contains(err.Error(), "reachable") {
		t.Errorf("unreachable repo: %v", err)
	}
	after, _ := env.List(ctx)
	if len(before) != len(after) {
		t.Errorf("tree changed: %v -> %v", before, after)
	}
}

func TestFailedInstallLeavesTreeUnchanged(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	ctx := context.Background()
	env, _ := m.Env("default", true)
	if _, err := env.Install(ctx, "hello", ""); err != nil {
		t.Fatal(err)
	}
	// world's dependency disappears from the repository: luarocks fails
	// halfway, after the transaction started.
	for _, f := range []string{"hello-1.0-1.all.rock"} {
		os.Remove(filepath.Join(repo, f))
	}
	env.Remove(ctx, "hello")
	if _, err := env.Install(ctx, "world", ""); err == nil {
		t.Fatal("install without its dependency succeeded")
	}
	if inst, _ := env.List(ctx); len(inst) != 0 {
		t.Errorf("half-installed tree: %v", inst)
	}
	if _, err := os.Stat(env.backupDir()); err == nil {
		t.Error("backup left behind")
	}
}

func TestInterruptedChangeIsRecovered(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	ctx := context.Background()
	env, _ := m.Env("default", true)
	env.Install(ctx, "hello", "")
	// Simulate a process killed mid-install: a backup of the good tree and
	// a broken tree.
	copyTree(env.Tree(), env.backupDir())
	os.RemoveAll(filepath.Join(env.Tree(), "lib"))
	if _, err := env.Install(ctx, "world", ""); err != nil {
		t.Fatal(err)
	}
	inst, _ := env.List(ctx)
	if len(inst) < 2 {
		t.Errorf("after recovery: %v", inst)
	}
}

// logLines collects the core's log lines at warning level and above
// until the test ends.
func logLines(t *testing.T) *[]string {
	t.Helper()
	var mu sync.Mutex
	lines := &[]string{}
	core.SetLogger(func(level int, msg string) {
		mu.Lock()
		defer mu.Unlock()
		*lines = append(*lines, msg)
	}, core.LevelWarn)
	t.Cleanup(func() { core.SetLogger(nil, 0) })
	return lines
}

// A failed install rolls the tree back without a warning that calls it an
// interrupted change (the caller gets the install's own error); a change
// that an earlier process left unfinished is still reported.
func TestFailedChangeRollsBackWithoutInterruptedWarning(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	ctx := context.Background()
	env, _ := m.Env("default", true)
	if _, err := env.Install(ctx, "hello", ""); err != nil {
		t.Fatal(err)
	}
	lines := logLines(t)
	if _, err := env.Install(ctx, "hello", "9.9-1"); err == nil {
		t.Fatal("installing a version no repository has succeeded")
	}
	if inst, _ := env.List(ctx); len(inst) == 0 {
		t.Errorf("the tree was not restored: %v", inst)
	}
	if _, err := os.Stat(env.backupDir()); err == nil {
		t.Errorf("backup left behind")
	}
	for _, l := range *lines {
		if strings.Contains(l, "interrupted") {
			t.Errorf("a failed install logged %q", l)
		}
	}
	copyTree(env.Tree(), env.backupDir())
	if _, err := env.Install(ctx, "world", ""); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range *lines {
		found = found || strings.Contains(l, "interrupted change")
	}
	if !found {
		t.Errorf("an interrupted change was not reported: %q", *lines)
	}
}

func TestLockFileRoundTrip(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	ctx := context.Background()
	env, _ := m.Env("src", true)
	if _, err := env.Install(ctx, "world", ""); err != nil {
		t.Fatal(err)
	}
	lf, err := env.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lf.Packages) != 2 || len(lf.Packages[0].SHA256) != 64 {
		t.Fatalf("lock %+v", lf)
	}
	path := filepath.Join(t.TempDir(), "bioxen.lock")
	if err := WriteLockFile(path, lf); err != nil {
		t.Fatal(err)
	}
	read, err := ReadLockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := m.Env("copy", true)
	inst, err := fresh.InstallLock(ctx, read)
	if err != nil {
		t.Fatal(err)
	}
	if len(inst) < 2 {
		t.Errorf("reproduced %v", inst)
	}
	read.Packages[0].SHA256 = strings.Repeat("0", 64)
	other, _ := m.Env("tampered", true)
	if _, err := other.InstallLock(ctx, read); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("tampered lock: %v", err)
	}
	if inst, _ := other.List(ctx); len(inst) != 0 {
		t.Errorf("tampered lock installed %v", inst)
	}
}

func TestSearchAndCatalog(t *testing.T) {
	repo := buildRepo(t)
	dir := t.TempDir()
	cat := filepath.Join(dir, "packages.json")
	os.WriteFile(cat, []byte(`{"packages": [
	  {"name": "bio_compute", "summary": "sequence analysis", "tags": ["bio", "dna"]},
	  {"name": "lua-cjson", "summary": "fast JSON", "tags": ["json"], "pure_lua": false}
	], "profiles": {"minimal": {"description": "small", "packages": ["lua-cjson"]}}}`), 0o644)
	u, _ := NormalizeRepoURL(repo)
	m, err := Open(Config{Home: t.TempDir(), DefaultRepos: []Repo{{Name: "local", URL: u}}, Catalogs: []string{cat}})
	if err != nil {
		t.Fatal(err)
	}
	res, errs := m.Search(context.Background(), "hello")
	if len(errs) != 0 || len(res) == 0 || res[0].Name != "hello" || res[0].Source != "local" || res[0].Version != "1.0-1" {
		t.Errorf("search hello: %+v %v", res, errs)
	}
	res, _ = m.Search(context.Background(), "dna")
	if len(res) != 1 || res[0].Name != "bio_compute" {
		t.Errorf("search by tag: %+v", res)
	}
	if p := m.Catalog().Profiles["minimal"]; p == nil || p.Packages[0] != "lua-cjson" {
		t.Errorf("profiles %+v", m.Catalog().Profiles)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{\n  \"packages\": [\n    {\"name\": \"x\",}\n  ]\n}"), 0o644)
	_, err = LoadCatalog(bad)
	if err == nil || !strings.Contains(err.Error(), "bad.json:3:") {
		t.Errorf("syntax error: %v", err)
	}
}

func TestRepos(t *testing.T) {
	m := open(t)
	if err := m.AddRepo("a", "/tmp/a", -1); err != nil {
		t.Fatal(err)
	}
	m.AddRepo("b", "https://example.invalid/rocks", 0)
	if rs := m.Repos(); len(rs) != 2 || rs[0].Name != "b" || rs[1].URL != "file:///tmp/a" {
		t.Errorf("repos %+v", rs)
	}
	if err := m.AddRepo("c", "ftp://x", -1); core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("ftp: %v", err)
	}
	m2, _ := Open(Config{Home: m.Home()})
	if len(m2.Repos()) != 2 {
		t.Errorf("repos not persisted: %+v", m2.Repos())
	}
	if err := m.RemoveRepo("b"); err != nil || len(m.Repos()) != 1 {
		t.Errorf("remove: %v %+v", err, m.Repos())
	}
	// Listings show no password; moving keeps it.
	if err := m.AddRepo("priv", "https://alice:S3cr3t@example.invalid/rocks", 0); err != nil {
		t.Fatal(err)
	}
	if rs := m.ReposRedacted(); rs[0].URL != "https://***@example.invalid/rocks" {
		t.Errorf("redacted %+v", rs)
	}
	if err := m.MoveRepo("priv", -1); err != nil {
		t.Fatal(err)
	}
	if rs := m.Repos(); len(rs) != 2 || rs[1].Name != "priv" || rs[1].URL != "https://alice:S3cr3t@example.invalid/rocks" {
		t.Errorf("after the move %+v", rs)
	}
	if err := m.MoveRepo("nope", 0); core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("moving an unknown repository: %v", err)
	}
	if CompareVersions("1.10-1", "1.9-2") != 1 || CompareVersions("1.0-1", "1.0-2") != -1 {
		t.Error("version order")
	}
}

// An http(s) repository and catalog: the same rocks served over HTTP on
// loopback.
func TestHTTPRepositoryAndCatalog(t *testing.T) {
	repo := buildRepo(t)
	os.WriteFile(filepath.Join(repo, "catalog.json"), []byte(`{"packages": [{"name": "hello", "summary": "greets", "tags": ["demo"]}]}`), 0o644)
	srv := httptest.NewServer(http.FileServer(http.Dir(repo)))
	defer srv.Close()
	m, err := Open(Config{Home: t.TempDir(), DefaultRepos: []Repo{{Name: "web", URL: srv.URL}}, Catalogs: []string{srv.URL + "/catalog.json"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Catalog().Packages["hello"]; p == nil || p.Summary != "greets" {
		t.Fatalf("catalog over http: %+v", m.Catalog().Packages)
	}
	env, _ := m.Env("default", true)
	if _, err := env.Install(context.Background(), "world", ""); err != nil {
		t.Fatal(err)
	}
	lf, err := env.Lock(context.Background())
	if err != nil || len(lf.Packages) != 2 || lf.Packages[0].Repo != srv.URL {
		t.Fatalf("lock over http: %+v %v", lf, err)
	}
}

// Moving a repository by a URL (as RemoveRepo takes one) found nothing and
// quoted that URL, password included, in its error; a repository name that
// is a URL with credentials (the default name before names were redacted,
// or one given) showed them in every listing and search result.
func TestRepoNamesAndMoveShowNoPassword(t *testing.T) {
	m := open(t)
	const secret = "https://alice:S3cr3t@example.invalid/rocks"
	if err := m.AddRepo("", "/tmp/a", -1); err != nil {
		t.Fatal(err)
	}
	if err := m.AddRepo("priv", secret, -1); err != nil {
		t.Fatal(err)
	}
	err := m.MoveRepo("https://bob:Pa55word@example.invalid/other", 0)
	if core.CodeOf(err) != core.ErrInvalid || strings.Contains(err.Error(), "Pa55word") {
		t.Errorf("moving an unknown URL: %v", err)
	}
	if err := m.MoveRepo("https://***@example.invalid/rocks", 0); err != nil {
		t.Errorf("moving by the URL as listed: %v", err)
	}
	if rs := m.Repos(); rs[0].Name != "priv" || rs[0].URL != secret {
		t.Errorf("after the move %+v", rs)
	}
	if err := m.AddRepo(secret, secret, -1); err != nil {
		t.Fatal(err)
	}
	legacy := `[{"name": "` + secret + `", "url": "` + secret + `"}]`
	if err := os.WriteFile(filepath.Join(m.Home(), "repos.json"), []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	m2, err := Open(Config{Home: m.Home()})
	if err != nil {
		t.Fatal(err)
	}
	for _, mm := range []*Manager{m, m2} {
		if got, _ := json.Marshal(mm.ReposRedacted()); strings.Contains(string(got), "S3cr3t") {
			t.Errorf("listing %s", got)
		}
		if rs := mm.Repos(); rs[len(rs)-1].URL != secret {
			t.Errorf("the credentials are lost: %+v", rs)
		}
	}
}
