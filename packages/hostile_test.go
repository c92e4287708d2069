package packages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"libbioxen/core"
)

// Hostile input: options smuggled in versions and names, tampered lock
// files, rockspecs with build commands, hostile manifests, credentials.

func filesUnder(dir string) []string {
	var found []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	return found
}

func TestVersionAndNameAreNeverOptions(t *testing.T) {
	repo := buildRepo(t)
	m := open(t, repo)
	env, _ := m.Env("default", true)
	ctx := context.Background()
	outside := filepath.Join(t.TempDir(), "outside-tree")
	for _, v := range []string{"--tree=" + outside, "--server=http://127.0.0.1:1/", "-1", "1.0 --force", "1.0/../x"} {
		_, err := env.Install(ctx, "hello", v)
		if core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("version %q: %v", v, err)
		}
	}
	for _, n := range []string{"--tree=" + outside, "-x", "a b", ""} {
		if _, err := env.Install(ctx, n, ""); core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("name %q: %v", n, err)
		}
	}
	if f := filesUnder(outside); len(f) > 0 {
		t.Errorf("luarocks wrote outside the environment: %v", f)
	}
	// A valid version reaches luarocks as a positional argument.
	inst, err := env.Install(ctx, "hello", "1.0-1")
	if err != nil || len(inst) == 0 || inst[0].Version != "1.0-1" {
		t.Errorf("install hello 1.0-1: %v %v", inst, err)
	}
}

func TestRemoveRejectsInvalidNames(t *testing.T) {
	m := open(t)
	env, _ := m.Env("default", true)
	for _, n := range []string{"../../..", "../rocks-5.4/hello", "--tree=/x/../../..", "", "a/b"} {
		if err := env.Remove(context.Background(), n); core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "invalid package name") {
			t.Errorf("Remove(%q): %v", n, err)
		}
	}
}

func TestTamperedLockFileIsRefused(t *testing.T) {
	base := t.TempDir()
	tmp := filepath.Join(base, "a", "b", "c")
	os.MkdirAll(tmp, 0o755)
	t.Setenv("TMPDIR", tmp)
	repoDir := filepath.Join(base, "x", "y", "z", "w")
	os.MkdirAll(repoDir, 0o755)
	payload := []byte("attacker controlled content\n")
	os.MkdirAll(filepath.Join(base, "x", "victim"), 0o755)
	os.WriteFile(filepath.Join(base, "x", "victim", "pwned"), payload, 0o644)
	os.MkdirAll(filepath.Join(base, "a", "victim"), 0o755)
	sum := sha256.Sum256(payload)
	m := open(t, repoDir)
	env, _ := m.Env("default", true)
	entry := LockEntry{Name: "x", Version: "1-1", Rock: "../../../victim/pwned", SHA256: hex.EncodeToString(sum[:]), Repo: m.Repos()[0].URL}
	for _, rock := range []string{"../../../victim/pwned", "/etc/passwd", "x-1-1.all.rock/..", "y-1-1.all.rock", "x-1-1.all.rock.sh", "x-1-1..rock"} {
		e := entry
		e.Rock = rock
		_, err := env.InstallLock(context.Background(), &LockFile{Format: 1, Packages: []LockEntry{e}})
		if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "invalid rock file name") {
			t.Errorf("rock %q: %v", rock, err)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "a", "victim", "pwned")); err == nil {
		t.Error("a lock file's rock name wrote outside the temp dir")
	}
	// A repository that is not configured is not read from.
	os.WriteFile(filepath.Join(base, "x", "victim", "x-1-1.all.rock"), payload, 0o644)
	e := entry
	e.Rock = "x-1-1.all.rock"
	e.Repo = "file://" + filepath.Join(base, "x", "victim")
	_, err := env.InstallLock(context.Background(), &LockFile{Format: 1, Packages: []LockEntry{e}})
	if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "not configured") || strings.Contains(err.Error(), hex.EncodeToString(sum[:])) {
		t.Errorf("unconfigured repository: %v", err)
	}
	for _, bad := range []LockEntry{{Name: "../x", Version: "1-1", Rock: "x-1-1.all.rock"}, {Name: "x", Version: "--tree=/", Rock: "x---tree=/.all.rock"}} {
		bad.Repo = entry.Repo
		if _, err := env.InstallLock(context.Background(), &LockFile{Format: 1, Packages: []LockEntry{bad}}); core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("entry %+v: %v", bad, err)
		}
	}
}

// sourceRockRepo makes a repository serving one source rock, <name>
// 1.0-1: its source holds files (name to content), and build is the
// rockspec's build table.
func sourceRockRepo(t *testing.T, name string, files map[string]string, build string) string {
	t.Helper()
	repo, work := t.TempDir(), t.TempDir()
	src := filepath.Join(work, name+"-1.0")
	os.MkdirAll(src, 0o755)
	for f, content := range files {
		os.WriteFile(filepath.Join(src, f), []byte(content), 0o644)
	}
	tarball := filepath.Join(work, name+"-1.0.tar.gz")
	if out, err := exec.Command("tar", "-C", work, "-czf", tarball, name+"-1.0").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	spec := filepath.Join(work, name+"-1.0-1.rockspec")
	os.WriteFile(spec, []byte(fmt.Sprintf("package = %q\nversion = \"1.0-1\"\nsource = { url = \"file://%s\" }\n"+
		"description = { summary = \"a test rock\" }\ndependencies = { \"lua >= 5.1\" }\nbuild = %s\n", name, tarball, build)), 0o644)
	// A source rock, as repositories serve them (luarocks unpacks it in
	// its own directory).
	pack := exec.Command("luarocks", "pack", spec)
	pack.Dir = repo
	if out, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("pack: %v\n%s", err, out)
	}
	if out, err := exec.Command("luarocks-admin", "make_manifest", repo).CombinedOutput(); err != nil {
		t.Fatalf("make_manifest: %v\n%s", err, out)
	}
	return repo
}

// A rockspec whose build step is a shell command: refused by default, run
// only when the manager allows build commands.
func TestBuildCommandsNeedOptIn(t *testing.T) {
	if _, err := exec.LookPath("luarocks"); err != nil {
		t.Skip("luarocks is not installed")
	}
	// This defence holds without the confinement (which would also stop
	// the marker being written): test it alone.
	defer func() { confineLuarocks = true }()
	confineLuarocks = false
	marker := filepath.Join(t.TempDir(), "ran")
	repo := sourceRockRepo(t, "evil", map[string]string{"evil.lua": "return {}\n"},
		`{ type = "command", build_command = "echo ran > `+marker+`", install = { lua = { evil = "evil.lua" } } }`)
	m := open(t, repo)
	env, _ := m.Env("default", true)
	_, err := env.Install(context.Background(), "evil", "")
	if err == nil || !strings.Contains(err.Error(), "accepted_build_types") {
		t.Errorf("build command not refused: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the rockspec's build command ran")
	}
	u, _ := NormalizeRepoURL(repo)
	trusted, err := Open(Config{Home: t.TempDir(), DefaultRepos: []Repo{{Name: "r", URL: u}}, AllowBuildCommands: true})
	if err != nil {
		t.Fatal(err)
	}
	tenv, _ := trusted.Env("default", true)
	if _, err := tenv.Install(context.Background(), "evil", ""); err != nil {
		if strings.Contains(err.Error(), "Lua header files") {
			t.Skipf("opted in, luarocks needs the Lua headers to build: %v", err)
		}
		t.Fatalf("opted-in install: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("opted in, the build command did not run")
	}
}

// A "builtin" rock's C module is not compiled without the opt-in: its
// sources become compiler arguments, and gcc runs the program a "-wrapper"
// option in an "@file" names (this ran a shell command at install time).
func TestCompilerArgumentsNeedOptIn(t *testing.T) {
	if _, err := exec.LookPath("luarocks"); err != nil {
		t.Skip("luarocks is not installed")
	}
	// This defence holds without the confinement (which would also stop
	// the marker being written): test it alone.
	defer func() { confineLuarocks = true }()
	confineLuarocks = false
	marker := filepath.Join(t.TempDir(), "ran")
	repo := sourceRockRepo(t, "evil", map[string]string{
		"evil.rsp": "-wrapper /bin/sh,-c,echo>" + marker + " real.c\n",
		"real.c":   "int luaopen_evil(void *L) { return 0; }\n",
	}, `{ type = "builtin", modules = { evil = { sources = { "@evil.rsp" } } } }`)
	m := open(t, repo)
	env, _ := m.Env("default", true)
	if _, err := env.Install(context.Background(), "evil", ""); err == nil {
		t.Error("the C module was built without the opt-in")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the compiler ran the rock's command")
	}
}

// What luarocks evaluates as Lua (a repository's manifest-5.x, which the
// library does not read) is bounded: an endless one held the
// environment's lock for the whole deadline.
func TestLuarocksIsBounded(t *testing.T) {
	if _, err := exec.LookPath("luarocks"); err != nil {
		t.Skip("luarocks is not installed")
	}
	defer func(old uint64) { luarocksMaxCPU = old }(luarocksMaxCPU)
	luarocksMaxCPU = 2
	repo := t.TempDir()
	os.WriteFile(filepath.Join(repo, "x-1.0-1.rockspec"), []byte(`package = "x"
version = "1.0-1"
source = { url = "file:///nonexistent/x.tar.gz" }
build = { type = "builtin", modules = {} }
`), 0o644)
	if out, err := exec.Command("luarocks-admin", "make_manifest", repo).CombinedOutput(); err != nil {
		t.Fatalf("make_manifest: %v\n%s", err, out)
	}
	zips, _ := filepath.Glob(filepath.Join(repo, "manifest-*"))
	for _, z := range zips {
		os.Remove(z)
	}
	for _, v := range LuaVersions {
		os.WriteFile(filepath.Join(repo, "manifest-"+v), []byte("while true do end\n"), 0o644)
	}
	m := open(t, repo)
	env, _ := m.Env("default", true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	_, err := env.Install(ctx, "x", "")
	t.Logf("%v after %v", err, time.Since(start))
	if err == nil || core.CodeOf(err) == core.ErrTimeout || time.Since(start) > time.Minute {
		t.Errorf("got %v after %v, want luarocks stopped by its CPU limit", err, time.Since(start))
	}
}

// luarocks never sees the system config or its default servers.
func TestLuarocksUsesOnlyOurServers(t *testing.T) {
	if _, err := exec.LookPath("luarocks"); err != nil {
		t.Skip("luarocks is not installed")
	}
	m := open(t)
	env, _ := m.Env("default", true)
	out, err := env.runLuarocks(context.Background(), "5.1", []string{"config", "rocks_servers"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "luarocks.org") || !strings.Contains(string(out), "no-repository") {
		t.Errorf("rocks_servers with no repository: %s", out)
	}
	out, err = env.runLuarocks(context.Background(), "5.1", []string{"config", "config_files"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "/etc/luarocks") {
		t.Errorf("system config consulted: %s", out)
	}
	// Certificates checked (luarocks' default is not to); a download
	// cache of the run's own, not ~/.cache/luarocks (named after the
	// URLs, credentials included); no C compiler without the opt-in.
	for key, want := range map[string]string{"check_certificates": "true", "local_cache": "bioxen-luarocks-", "variables.CC": "false"} {
		out, err = env.runLuarocks(context.Background(), "5.1", []string{"config", key})
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("config %s: %v %s, want %s", key, err, out, want)
		}
	}
}

func writeManifest(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifest"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func manifestOf(t *testing.T, body string) (map[string]*RepoPackage, error) {
	t.Helper()
	return Repo{Name: "r", URL: "file://" + writeManifest(t, body)}.Manifest(context.Background())
}

func TestManifestIsDataOnly(t *testing.T) {
	for name, body := range map[string]string{
		"string doubling": `local s = "xxxxxxxxxxxxxxxx" for i = 1, 40 do s = s .. s end repository = {}`,
		"loop":            `local v = {} for i = 1, 200000 do v["1."..i] = {} end repository = { p = v }`,
		"call":            `repository = { p = f() }`,
		"concatenation":   `repository = { ["a" .. "b"] = {} }`,
		"variable":        `repository = { p = x }`,
		"deep nesting":    "repository = " + strings.Repeat("{", 1000000) + strings.Repeat("}", 1000000),
		"unfinished":      `repository = { p = { ["1.0-1"] = {`,
	} {
		start := time.Now()
		_, err := manifestOf(t, body)
		if core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("%s: %v", name, err)
		}
		if el := time.Since(start); el > 20*time.Second {
			t.Errorf("%s: took %v", name, el)
		}
	}
	man, err := manifestOf(t, `-- a manifest
commands = {}; modules = { ["a.b"] = { "a/1.0-1" } }
repository = {
   a = {
      ["1.0-1"] = { { arch = "all" }, { arch = 'src' } },
      ["1.10-1"] = { { arch = "rockspec", x = [[long
string]], y = [==[a]]b]==], n = -1.5e3, h = 0x1F, t = true, f = false, z = nil, e = "\65\n\"\\" } },
   },
   --[[ a long
   comment ]]
   ["b-c"] = { ["scm-1"] = {} };
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if a := man["a"]; a == nil || strings.Join(a.Versions, ",") != "1.10-1,1.0-1" || man["b-c"] == nil {
		t.Errorf("manifest %+v", man)
	}
}

func TestManifestBounds(t *testing.T) {
	old := maxManifestBytes
	maxManifestBytes = 1000
	_, err := manifestOf(t, "repository = {}\n"+strings.Repeat("-- padding\n", 200))
	maxManifestBytes = old
	if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("size cap: %v", err)
	}
	// Many versions: parsed once each before sorting, well within the deadline.
	var b strings.Builder
	b.WriteString("repository = { p = {\n")
	for i := 0; i < 200000; i++ {
		fmt.Fprintf(&b, "[\"1.%d-x%d\"] = {},\n", i, i)
	}
	b.WriteString("} }\n")
	start := time.Now()
	man, err := manifestOf(t, b.String())
	if err != nil || len(man["p"].Versions) != 200000 || man["p"].Versions[0] != "1.199999-x199999" {
		t.Fatalf("200000 versions: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("200000 versions took %v", el)
	}
	oldV := maxManifestVersions
	maxManifestVersions = 1000
	_, err = manifestOf(t, b.String())
	maxManifestVersions = oldV
	if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "more than 1000 versions") {
		t.Errorf("version cap: %v", err)
	}
	// Values in the repository table are counted (64 MiB of "{}," took
	// 2.8 GB); the other tables (modules, commands) are checked and dropped.
	oldN := maxManifestValues
	maxManifestValues = 1000
	_, err = manifestOf(t, "repository = {"+strings.Repeat("{},", 2000)+"}")
	if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "more than 1000 values") {
		t.Errorf("value cap: %v", err)
	}
	man, err = manifestOf(t, "modules = {"+strings.Repeat("{},", 2000)+"} repository = { p = { [\"1.0-1\"] = {} } }")
	maxManifestValues = oldN
	if err != nil || len(man["p"].Versions) != 1 {
		t.Errorf("a large modules table: %v %v", man, err)
	}
	if CompareVersions("1.10-1", "1.9-2") != 1 || CompareVersions("1.0-1", "1.0-2") != -1 || CompareVersions("1.0", "1.0.0") != -1 || CompareVersions("2rc", "2rc") != 0 {
		t.Error("version order")
	}
}

// Local repository files must be regular files: a FIFO or a device is
// refused at once.
func TestLocalRepositoryFilesMustBeRegular(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "manifest"), 0o644); err != nil {
		t.Skip(err)
	}
	syscall.Mkfifo(filepath.Join(dir, "r-1-1.all.rock"), 0o644)
	done := make(chan error, 2)
	go func() { _, err := Repo{Name: "r", URL: "file://" + dir}.Manifest(context.Background()); done <- err }()
	go func() {
		_, err := Repo{Name: "r", URL: "file://" + dir}.Fetch(context.Background(), "r-1-1.all.rock")
		done <- err
	}()
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("FIFO: %v", err)
			}
		case <-time.After(30 * time.Second):
			// Unblock the readers so the test can end.
			for _, n := range []string{"manifest", "r-1-1.all.rock"} {
				if f, err := os.OpenFile(filepath.Join(dir, n), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
			}
			t.Fatal("reading a FIFO blocked")
		}
	}
	if _, err := (Repo{Name: "dev", URL: "file:///dev"}).Fetch(context.Background(), "zero"); core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("/dev/zero: %v", err)
	}
}

// A process killed while it copies the tree aside leaves a partial copy;
// the next change must not put it in place of the intact tree.
func TestKillDuringBackupKeepsTree(t *testing.T) {
	if home := os.Getenv("BIOXEN_TEST_CHILD_HOME"); home != "" {
		m, err := Open(Config{Home: home})
		if err != nil {
			os.Exit(3)
		}
		env, err := m.Env("default", false)
		if err != nil {
			os.Exit(3)
		}
		env.transact(func() error { return nil })
		os.Exit(0)
	}
	m := open(t)
	env, _ := m.Env("default", true)
	for i := 0; i < 20; i++ {
		p := filepath.Join(env.Tree(), "lib", "luarocks", "rocks-5.1", fmt.Sprintf("r%d", i), "1.0-1")
		os.MkdirAll(p, 0o755)
	}
	before, _ := env.List(context.Background())
	// A cp that copies part of the tree, says so, and hangs.
	bin := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "ready")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	os.WriteFile(filepath.Join(bin, "cp"), []byte("#!/bin/sh\nfor a; do dst=$a; done\nmkdir -p \"$dst/lib\"\necho ready > "+fifo+"\nexec sleep 600\n"), 0o755)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKillDuringBackupKeepsTree$")
	cmd.Env = append(os.Environ(), "BIOXEN_TEST_CHILD_HOME="+m.Home(), "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ready := make(chan struct{})
	go func() { os.ReadFile(fifo); close(ready) }()
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("child ended before the copy: %v", err)
	case <-time.After(60 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatal("the copy never started")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	if err := env.transact(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	after, _ := env.List(context.Background())
	if len(after) != len(before) || len(before) != 20 {
		t.Errorf("a partial backup replaced the tree: %d rocks before, %d after", len(before), len(after))
	}
	for _, d := range []string{env.backupDir(), env.backupTmp(), env.backupOld()} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left behind", d)
		}
	}
	// A backup being discarded (renamed .old) is never restored either.
	os.MkdirAll(filepath.Join(env.backupOld(), "lib"), 0o755)
	if err := env.transact(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if after, _ := env.List(context.Background()); len(after) != 20 {
		t.Errorf("after a stale .old: %d rocks", len(after))
	}
}

// RemoveEnv keeps the lock file: a caller that waited on it finds the
// environment gone instead of taking a fresh lock of its own.
func TestRemoveEnvKeepsLock(t *testing.T) {
	m := open(t)
	env, _ := m.Env("default", true)
	if strings.HasPrefix(env.lockPath(), env.Dir+string(filepath.Separator)) {
		t.Fatalf("lock file %s inside the removable directory", env.lockPath())
	}
	unlock, err := env.lock()
	if err != nil {
		t.Fatal(err)
	}
	held, _ := os.Stat(env.lockPath())
	removed := make(chan error, 1)
	go func() { removed <- m.RemoveEnv("default") }()
	unlock()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	now, err := os.Stat(env.lockPath())
	if err != nil || !os.SameFile(held, now) {
		t.Errorf("lock file replaced or deleted: %v", err)
	}
	ran := false
	err = env.transact(func() error { ran = true; return nil })
	if core.CodeOf(err) != core.ErrFileNotFound || ran {
		t.Errorf("change on a removed environment: %v (ran %v)", err, ran)
	}
	if _, err := os.Stat(env.Dir); err == nil {
		t.Error("the removed environment was recreated")
	}
}

func TestCredentialsNeverShown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 500) }))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://alice:S3cr3tPassw0rd@", 1)
	m := open(t)
	if err := m.AddRepo("", u, 0); err != nil {
		t.Fatal(err)
	}
	if r := m.Repos()[0]; strings.Contains(r.Name, "S3cr3t") {
		t.Errorf("default name %q", r.Name)
	}
	_, errs := m.Search(context.Background(), "x")
	env, _ := m.Env("default", true)
	_, ierr := env.Install(context.Background(), "hello", "")
	_, lerr := env.InstallLock(context.Background(), &LockFile{Packages: []LockEntry{{Name: "a", Version: "1-1", Rock: "a-1-1.all.rock", Repo: "http://bob:Other5ecret@127.0.0.1:1"}}})
	_, ferr := Repo{Name: "r", URL: "http://alice:S3cr3tPassw0rd@127.0.0.1:1"}.Fetch(context.Background(), "manifest")
	for _, e := range append(errs, ierr, lerr, ferr, m.RemoveRepo("http://alice:S3cr3tPassw0rd@nowhere")) {
		if e == nil {
			t.Error("expected an error")
		} else if strings.Contains(e.Error(), "S3cr3t") || strings.Contains(e.Error(), "Other5ecret") || strings.Contains(e.Error(), "alice") {
			t.Errorf("credentials in error: %v", e)
		}
	}
	st, _ := os.Stat(filepath.Join(m.Home(), "repos.json"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("repos.json mode %v", st.Mode())
	}
	if got := RedactURL("https://tok@h/x@y"); got != "https://***@h/x@y" {
		t.Errorf("redact %q", got)
	}
}

func TestLockFileHoldsNoCredentials(t *testing.T) {
	repo := buildRepo(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(repo)))
	defer srv.Close()
	m := open(t)
	m.AddRepo("priv", strings.Replace(srv.URL, "http://", "http://alice:S3cr3tPassw0rd@", 1), 0)
	env, _ := m.Env("default", true)
	if _, err := env.Install(context.Background(), "hello", ""); err != nil {
		t.Fatal(err)
	}
	lf, err := env.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lock.json")
	if err := WriteLockFile(p, lf); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if strings.Contains(string(data), "S3cr3t") || st.Mode().Perm() != 0o600 {
		t.Errorf("lock file (%v):\n%s", st.Mode(), data)
	}
	read, _ := ReadLockFile(p)
	other, _ := m.Env("other", true)
	if inst, err := other.InstallLock(context.Background(), read); err != nil || len(inst) == 0 {
		t.Errorf("install from the redacted lock: %v %v", inst, err)
	}
}

// A percent-encoded file URL (Python's Path.as_uri()) names the decoded
// directory.
func TestPercentEncodedFileURL(t *testing.T) {
	repo := buildRepo(t)
	spaced := filepath.Join(t.TempDir(), "a b%c")
	if err := os.Rename(repo, spaced); err != nil {
		t.Fatal(err)
	}
	uri := (&url.URL{Scheme: "file", Path: spaced}).String()
	if !strings.Contains(uri, "%20") {
		t.Fatalf("uri %s", uri)
	}
	m := open(t)
	if err := m.AddRepo("spaced", uri, 0); err != nil {
		t.Fatal(err)
	}
	if n, _ := NormalizeRepoURL(spaced); n != uri {
		t.Errorf("normalized path %q, want %q", n, uri)
	}
	env, _ := m.Env("default", true)
	if inst, err := env.Install(context.Background(), "world", ""); err != nil || len(inst) < 2 {
		t.Errorf("install from %s: %v %v", uri, inst, err)
	}
}

// A manifest full of signed exponents parses in linear time: each "1e+5"
// lowercased the rest of the manifest (2,000 of them in 4 MiB took 23 s).
func TestManifestSignedExponentsAreLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString("commands = {")
	for i := 0; i < 20000; i++ {
		b.WriteString("1e+5, ")
	}
	b.WriteString("}\nrepository = {}\n-- " + strings.Repeat("X", 1<<20) + "\n")
	start := time.Now()
	if _, err := parseManifest(context.Background(), b.String()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second { // minutes before the fix
		t.Errorf("parsing took %v", d)
	}
}

// A lock file or catalog that is a device, a FIFO or a huge file is a
// typed error at once: /dev/zero ended the process ("out of memory"), a
// FIFO hung it.
func TestLockAndCatalogFilesAreBounded(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.lock")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	for _, path := range []string{"/dev/zero", fifo, huge} {
		if _, err := ReadLockFile(path); core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("lock file %s: got %v, want ErrInvalid", path, err)
		}
		if err := NewCatalog().AddFile(path); core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("catalog %s: got %v, want ErrInvalid", path, err)
		}
	}
}

// An https repository whose certificate is not trusted is not merely
// skipped as unreachable: luarocks would fetch from it next (and LuaSec,
// which it uses, verifies nothing). The install fails with ErrHostKey.
func TestUntrustedCertificateFailsTheInstall(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `repository = { hello = { ["1.0-1"] = { { arch = "all" } } } }`)
	}))
	defer srv.Close()
	m := open(t)
	if err := m.AddRepo("mitm", srv.URL, 0); err != nil {
		t.Fatal(err)
	}
	env, _ := m.Env("default", true)
	_, err := env.Install(context.Background(), "hello", "")
	if core.CodeOf(err) != core.ErrHostKey {
		t.Errorf("got %v, want ErrHostKey", err)
	}
}

// A catalog's priority is bounded where it adds to a search score: one
// of 2^63-1 overflowed it to the lowest score.
func TestCatalogPriorityIsBounded(t *testing.T) {
	c := NewCatalog()
	if err := c.AddJSON("c.json", []byte(`{"packages": [{"name": "bio_x", "summary": "x", "priority": 9223372036854775807}]}`)); err != nil {
		t.Fatal(err)
	}
	if m := c.Search("bio"); len(m) != 1 || m[0].Score <= 0 {
		t.Errorf("search: %+v", m)
	}
}

// luarocks runs confined: a trusted rock's build command (allowed) cannot
// write outside the environment's tree, here a file in the test's
// directory, nor read one there.
func TestLuarocksRunsConfined(t *testing.T) {
	if _, err := exec.LookPath("luarocks"); err != nil {
		t.Skip("luarocks is not installed")
	}
	if landlockABI() < 1 {
		t.Skip("the kernel has no Landlock")
	}
	outside := t.TempDir()
	marker := filepath.Join(outside, "written")
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s3cret"), 0o600)
	repo := sourceRockRepo(t, "spy", map[string]string{"spy.lua": "return {}\n"},
		`{ type = "command", build_command = "cp `+filepath.Join(outside, "secret")+` spy.lua; echo ran > `+marker+`",
		   install = { lua = { spy = "spy.lua" } } }`)
	u, _ := NormalizeRepoURL(repo)
	trusted, err := Open(Config{Home: t.TempDir(), DefaultRepos: []Repo{{Name: "r", URL: u}}, AllowBuildCommands: true})
	if err != nil {
		t.Fatal(err)
	}
	env, _ := trusted.Env("default", true)
	_, err = env.Install(context.Background(), "spy", "")
	t.Logf("install: %v", err)
	if err == nil {
		t.Error("the build command read or wrote outside the tree")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the build command wrote outside the tree")
	}
}

// A repository's name is shown in lists and logs, and stored: no control
// characters (a NUL byte was accepted from C), at most 256 bytes.
func TestRepoNameIsChecked(t *testing.T) {
	m := open(t)
	u, _ := NormalizeRepoURL(t.TempDir())
	for _, bad := range []string{"a\x00b", "line\nbreak", strings.Repeat("n", 257), "\xff"} {
		if err := m.AddRepo(bad, u, 0); core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("%q: %v", core.Clip(bad, 20), err)
		}
	}
	if err := m.AddRepo("my mirror (é)", u, 0); err != nil {
		t.Error(err)
	}
}

// TestManifestReadsAsLua: the manifest reader took what Lua does not
// read as data, or read it otherwise (found by FuzzParseManifest, which
// checks it against gopher-lua): "-inf" and "-nan" as numbers (a NaN table
// key, which no Lua table holds), "0_0" (strconv.ParseFloat takes Go's
// digit separators), a reserved word as a variable or field
// name ("true = {}"), a carriage return inside a quoted string; and long
// strings kept "\r\n" where Lua reads "\n"; a line comment ran past a
// lone "\r".
func TestManifestReadsAsLua(t *testing.T) {
	for _, bad := range []string{
		"repository = {-inf}", "repository = {[-nan] = 1}", "repository = {- infinity}", "true = {}",
		"repository = {end = 1}", "repository = {'a\rb'}", "repository = {-}", "repository = {0_0}", "repository = {1_000.5}",
	} {
		if _, err := parseManifest(context.Background(), bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for src, want := range map[string]string{
		"repository = [[a\r\nb\n\rc\rd]]": "a\nb\nc\nd", "repository = [[\r\nq]]": "q", "repository = [[\n\rw]]": "w",
		"repository = [[\n\nw]]": "\nw", "repository = [==[\rx\r]==]": "x\n", "repository = [[]]": "",
	} {
		g, err := parseManifest(context.Background(), src)
		if err != nil || g["repository"] != want {
			t.Errorf("%q: %q %v, want %q", src, g["repository"], err, want)
		}
	}
	// A line comment ends at "\r" too: Lua reads the assignment after it.
	if g, err := parseManifest(context.Background(), "-- c\rrepository = 'r'"); err != nil || g["repository"] != "r" {
		t.Errorf("comment ended by \\r: %v %v", g, err)
	}
	if g, err := parseManifest(context.Background(), "repository = {-.5, - 2, x = -0x10}"); err != nil {
		t.Errorf("negative numbers: %v %v", g, err)
	}
}

// TestRootRepoURLIsStable: the root directory normalized to "file:///",
// and that again to "file:", which has no path (found by FuzzRepoURL).
func TestRootRepoURLIsStable(t *testing.T) {
	for _, raw := range []string{"/", "file:///", "file:///.//", "file://localhost/"} {
		u, err := NormalizeRepoURL(raw)
		if err != nil || u != "file:///" {
			t.Errorf("%q: %q %v, want file:///", raw, u, err)
		}
	}
}

// TestHTTPRepoURLNamesAHost: "http://" was accepted and normalized to
// "http:", which names no host, and which normalizes again to a local
// directory named "http:" (found by FuzzRepoURL). A '/' that ends a
// query is kept.
func TestHTTPRepoURLNamesAHost(t *testing.T) {
	for _, raw := range []string{"http://", "https:///x", "https://?q"} {
		if u, err := NormalizeRepoURL(raw); core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("%q: %q %v, want ErrInvalid", raw, u, err)
		}
	}
	for raw, want := range map[string]string{"https://h/x//": "https://h/x", "https://h/?p=/": "https://h/?p=/", "http://h#/": "http://h#/"} {
		if u, err := NormalizeRepoURL(raw); err != nil || u != want {
			t.Errorf("%q: %q %v, want %q", raw, u, err, want)
		}
	}
}

// TestCompareVersionsIsAnOrder: a number and a word were compared by
// their text, and a number past int64 counted as a word, so versions were
// no order ("010000000000000000000" <= "0A" <= "0" but the first > "0";
// "+5" < "/" < "3" < "+5"): a sort of them is then arbitrary. Found by
// FuzzCompareVersions.
func TestCompareVersionsIsAnOrder(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"010000000000000000000", "0", 1}, {"010000000000000000000", "0A", 1}, {"99999999999999999999", "100000000000000000000", -1},
		{"+5", "3", 1}, {"/", "3", 1}, {"/", "+5", 1}, {"scm-1", "1.0-1", 1}, {"1.0", "1.0.1", -1}, {"1.0", "1.0.rc", -1},
		{"1.10-1", "1.9-2", 1}, {"007", "7", 0},
	} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
