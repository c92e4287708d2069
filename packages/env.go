package packages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"libbioxen/core"
)

// LuaVersions are the Lua versions an environment installs for: 5.1 serves
// the embedded engine, lua5.1 and LuaJIT; 5.4 serves lua5.4. Versions whose
// interpreter is missing are skipped.
var LuaVersions = []string{"5.1", "5.4"}

// Env is one isolated environment: a LuaRocks tree under Dir/tree.
type Env struct {
	Name string
	Dir  string
	m    *Manager
}

// Tree is the LuaRocks tree of the environment.
func (e *Env) Tree() string { return filepath.Join(e.Dir, "tree") }

// Paths returns package.path and package.cpath for a Lua version ("5.1",
// "5.4"), the environment's directories only.
func (e *Env) Paths(luaVersion string) (path, cpath string, err error) {
	if !slices.Contains(LuaVersions, luaVersion) {
		return "", "", core.Errorf(core.ErrInvalid, "paths", "unknown Lua version %q (valid: %s)", luaVersion, strings.Join(LuaVersions, ", "))
	}
	t := e.Tree()
	path = fmt.Sprintf("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua", t, luaVersion, t, luaVersion)
	cpath = fmt.Sprintf("%s/lib/lua/%s/?.so", t, luaVersion)
	return path, cpath, nil
}

// lockPath is the environment's lock file. It lives outside the
// environment's directory (Home/locks), so RemoveEnv never deletes a lock
// file other callers are waiting on.
func (e *Env) lockPath() string { return filepath.Join(e.m.home, "locks", e.Name+".lock") }

// lock takes the environment's file lock (shared by processes), recovering
// from an install that was interrupted before it could clean up. It fails
// with ErrFileNotFound when the environment was removed meanwhile.
func (e *Env) lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(e.lockPath()), 0o700); err != nil {
		return nil, core.Wrap(core.ErrGeneric, "environment", "cannot create "+filepath.Dir(e.lockPath()), err)
	}
	f, err := os.OpenFile(e.lockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, core.Wrap(core.ErrGeneric, "environment", "cannot open lock", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, core.Wrap(core.ErrGeneric, "environment", "cannot lock "+e.Dir, err)
	}
	unlock := func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
	if _, err := os.Stat(e.Dir); err != nil {
		unlock()
		return nil, core.Wrap(core.ErrFileNotFound, "environment", fmt.Sprintf("environment %q no longer exists", e.Name), err)
	}
	if err := e.recover(true); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// The backup of a change: copied to backupTmp, renamed to backupDir once
// complete, and renamed to backupOld before it is deleted. Only a complete
// backup is ever named backupDir, so recover never puts a partial copy in
// place of the tree.
func (e *Env) backupDir() string { return filepath.Join(e.Dir, "tree.backup") }
func (e *Env) backupTmp() string { return filepath.Join(e.Dir, "tree.backup.tmp") }
func (e *Env) backupOld() string { return filepath.Join(e.Dir, "tree.backup.old") }

// recover puts the backup of a change back in place, and deletes an
// incomplete copy or a backup that was being discarded. interrupted says
// why: a change an earlier process did not finish (a warning, found when
// the environment is next locked), or the rollback of a change that just
// failed, whose error the caller gets anyway (debug only).
func (e *Env) recover(interrupted bool) error {
	for _, d := range []string{e.backupTmp(), e.backupOld()} {
		if err := os.RemoveAll(d); err != nil {
			return core.Wrap(core.ErrGeneric, "environment", "cannot remove "+d, err)
		}
	}
	if _, err := os.Lstat(e.backupDir()); err != nil {
		return nil
	}
	if interrupted {
		core.Logf(core.LevelWarn, "environment %q: restoring the tree after an interrupted change", e.Name)
	} else {
		core.Logf(core.LevelDebug, "environment %q: the change failed; restoring the tree", e.Name)
	}
	if err := os.RemoveAll(e.Tree()); err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "cannot restore "+e.Tree(), err)
	}
	if err := os.Rename(e.backupDir(), e.Tree()); err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "cannot restore "+e.Tree(), err)
	}
	return nil
}

// discardBackup deletes the backup after a successful change: renamed
// first (atomic), so a kill while deleting leaves nothing recover would
// restore.
func (e *Env) discardBackup() error {
	if err := os.Rename(e.backupDir(), e.backupOld()); err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "cannot discard the backup", err)
	}
	if err := os.RemoveAll(e.backupOld()); err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "cannot remove "+e.backupOld(), err)
	}
	return nil
}

// transact runs change on the tree with a backup: if change fails (or the
// process dies), the tree goes back to what it was.
func (e *Env) transact(change func() error) error {
	unlock, err := e.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.MkdirAll(e.Tree(), 0o755); err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "cannot create tree", err)
	}
	if err := copyTree(e.Tree(), e.backupTmp()); err != nil {
		os.RemoveAll(e.backupTmp())
		return err
	}
	if err := os.Rename(e.backupTmp(), e.backupDir()); err != nil {
		os.RemoveAll(e.backupTmp())
		return core.Wrap(core.ErrGeneric, "environment", "backing up the tree", err)
	}
	if err := change(); err != nil {
		if rerr := e.recover(false); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return e.discardBackup()
}

func copyTree(src, dst string) error {
	out, err := exec.Command("cp", "-a", "--", src, dst).CombinedOutput()
	if err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "backing up the tree: "+strings.TrimSpace(string(out)), err)
	}
	return nil
}

// luaVersionsAvailable lists the versions of LuaVersions whose interpreter
// is installed (5.1: lua5.1 or luajit), and always 5.1 (the embedded
// engine needs no interpreter).
func luaVersionsAvailable() []string {
	out := []string{"5.1"}
	for _, v := range LuaVersions[1:] {
		if _, err := exec.LookPath("lua" + v); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// runLuarocks runs luarocks for one Lua version against this environment's
// tree and the manager's repositories, through a private configuration: a
// config file of its own as the user config, an empty directory as the
// system config directory (so /etc/luarocks is not read), an explicit
// server list (never luarocks' default servers), and, unless the manager
// allows build commands, only the "builtin" and "none" build types and no
// hooks. args are luarocks' command and options; positional arguments
// (names, versions, files) go in pos, after "--", so none is ever read as
// an option.
func (e *Env) runLuarocks(ctx context.Context, luaVersion string, args []string, pos ...string) ([]byte, error) {
	if err := e.m.checkLuarocks(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bioxen-luarocks-*")
	if err != nil {
		return nil, core.Wrap(core.ErrGeneric, "luarocks", "config directory", err)
	}
	defer os.RemoveAll(dir)
	sysconf := filepath.Join(dir, "sysconf")
	none := filepath.Join(dir, "no-repository")
	for _, d := range []string{sysconf, none} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, core.Wrap(core.ErrGeneric, "luarocks", "config directory", err)
		}
	}
	repos := e.m.Repos()
	var servers []string
	for _, r := range repos {
		if d := r.localDir(); d != "" {
			servers = append(servers, quoteLua(d))
		} else {
			servers = append(servers, quoteLua(r.URL))
		}
	}
	if len(servers) == 0 {
		// An empty list would fall back to luarocks' default servers.
		servers = append(servers, quoteLua(none))
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "rocks_trees = { { name = \"bioxen\", root = %s } }\n", quoteLua(e.Tree()))
	fmt.Fprintf(&cfg, "rocks_servers = { %s }\n", strings.Join(servers, ", "))
	fmt.Fprintf(&cfg, "local_by_default = false\n")
	// https is verified (luarocks' default is not to), and the download
	// cache is this run's own: luarocks' shared one (~/.cache/luarocks)
	// is named after the URLs, credentials included, and kept failures.
	fmt.Fprintf(&cfg, "check_certificates = true\n")
	fmt.Fprintf(&cfg, "local_cache = %s\n", quoteLua(filepath.Join(dir, "cache")))
	if !e.m.allowBuildCommands {
		fmt.Fprintf(&cfg, "accepted_build_types = { \"builtin\", \"none\" }\n")
		fmt.Fprintf(&cfg, "hooks_enabled = false\n")
		// Compiling C is a build step too: the rockspec's sources and
		// flags become compiler arguments (gcc reads options from
		// "@file" and runs "-wrapper" programs), so a "builtin" rock's C
		// modules are not compiled either.
		fmt.Fprintf(&cfg, "variables = { CC = \"false\", LD = \"false\" }\n")
	}
	cfgFile := filepath.Join(dir, "config.lua")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		return nil, core.Wrap(core.ErrGeneric, "luarocks", "config file", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
	}
	full := append([]string{"--lua-version=" + luaVersion, "--tree=" + e.Tree()}, args...)
	full = append(append(full, "--"), pos...)
	cmd := exec.CommandContext(ctx, e.m.luarocks, full...)
	cmd.Dir = dir // no project configuration (.luarocks/) of the caller's directory
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LUAROCKS_") && !strings.HasPrefix(kv, "LUA_INIT") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Lua's os.tmpname makes its files in /tmp whatever TMPDIR says, and
	// luarocks reads commands' output through them: make them in the run's
	// own directory, so that luarocks needs no access to /tmp.
	cmd.Env = append(cmd.Env, "LUA_INIT="+tmpnameInit)
	// Its temporary files and home are the run's own directory: luarocks
	// is confined to it (see confineThread), and wget and curl read
	// their configuration from the home.
	cmd.Env = append(cmd.Env, "LUAROCKS_CONFIG="+cfgFile, "LUAROCKS_SYSCONFDIR="+sysconf, "TMPDIR="+dir, "HOME="+dir)
	if _, set := os.LookupEnv("no_proxy"); !set && slices.ContainsFunc(repos, func(r Repo) bool { return strings.HasPrefix(r.URL, "https://") }) {
		// luarocks fetches https with LuaSec, which never verifies the
		// certificate (check_certificates covers only wget and curl); a
		// no_proxy variable, even empty, makes it use wget or curl.
		cmd.Env = append(cmd.Env, "no_proxy=")
	}
	// Pdeathsig: if this process dies mid-change, luarocks dies too instead
	// of writing into the tree while the next change restores the backup.
	// (The signal follows the thread that started luarocks: runConfined
	// keeps it.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = runConfined(cmd, e.confinement(dir, repos, pos))
	what := strings.Join(append(append([]string(nil), args...), pos...), " ")
	if ctx.Err() != nil {
		return out.Bytes(), core.Errorf(core.ErrTimeout, "luarocks", "luarocks %s timed out", what)
	}
	if err != nil {
		msg := lastLines(out.String(), 6)
		if msg == "" {
			msg = err.Error() // "signal: killed" (past its CPU limit, say)
		}
		for _, r := range repos {
			msg = r.scrub(msg)
		}
		return out.Bytes(), core.Errorf(core.ErrEngine, "luarocks", "luarocks %s failed: %s", what, msg)
	}
	return out.Bytes(), nil
}

// tmpnameInit replaces os.tmpname, for luarocks, by one that makes its
// files in TMPDIR (the run's own directory; see runLuarocks).
const tmpnameInit = `do
  local dir, n = os.getenv("TMPDIR"), 0
  if dir then
    os.tmpname = function()
      n = n + 1
      local name = dir .. "/lua_tmpname_" .. n
      local f = assert(io.open(name, "w"))
      f:close()
      return name
    end
  end
end`

// Resource limits of luarocks and the programs it runs (per process): an
// address space of 4 GiB and 300 s of CPU time (a variable for the tests).
const luarocksMaxMemory = 4 << 30

var luarocksMaxCPU uint64 = 300

// limitLuarocks bounds luarocks and the programs it runs: it evaluates
// what a repository serves (its manifests, rockspecs, rock_manifest files)
// as Lua, unbounded: an endless or allocating manifest held the
// environment's lock for the whole deadline, or took gigabytes. (Set
// before luarocks has fetched anything.)
func limitLuarocks(pid int) {
	for res, limit := range map[int]uint64{syscall.RLIMIT_AS: luarocksMaxMemory, syscall.RLIMIT_CPU: luarocksMaxCPU} {
		if err := core.Prlimit(pid, res, limit); err != nil {
			core.Logf(core.LevelWarn, "packages: cannot limit luarocks (pid %d): %v", pid, err)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Installed is a package installed in an environment.
type Installed struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	LuaVersion string `json:"lua_version"`
}

// Install installs a package (and its dependencies) for every available
// Lua version. version "" means the newest. Unknown packages fail with
// close matches in the message; an unreachable repository or any failure
// leaves the tree as it was.
func (e *Env) Install(ctx context.Context, name, version string) ([]Installed, error) {
	if err := checkName("install", name); err != nil {
		return nil, err
	}
	if version != "" && !ValidVersion(version) {
		return nil, core.Errorf(core.ErrInvalid, "install", "invalid version %q (letters, digits, '.', '-', '_', like 1.0-1 or scm-1)", version)
	}
	if err := e.checkKnown(ctx, name); err != nil {
		return nil, err
	}
	e.m.warnPlainHTTP()
	err := e.transact(func() error {
		for _, lv := range luaVersionsAvailable() {
			pos := []string{name}
			if version != "" {
				pos = append(pos, version)
			}
			if _, err := e.runLuarocks(ctx, lv, []string{"install"}, pos...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e.List(ctx)
}

// checkKnown refuses a package no repository has, naming close matches.
// Each manifest is read once.
func (e *Env) checkKnown(ctx context.Context, name string) error {
	reachable := false
	set := map[string]bool{}
	for n := range e.m.catalog.Packages {
		set[n] = true
	}
	repos := e.m.Repos()
	for _, r := range repos {
		man, err := r.Manifest(ctx)
		if core.CodeOf(err) == core.ErrHostKey {
			// Not merely unreachable: someone may be in the way, and
			// luarocks would fetch from it next.
			return err
		}
		if err != nil {
			continue
		}
		reachable = true
		if _, ok := man[name]; ok {
			return nil
		}
		for n := range man {
			set[n] = true
		}
	}
	if !reachable {
		var urls []string
		for _, r := range repos {
			urls = append(urls, r.display())
		}
		return core.Errorf(core.ErrConnection, "install", "no repository is reachable (%s); nothing was changed", strings.Join(urls, ", "))
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	msg := fmt.Sprintf("unknown package %q", name)
	if close := CloseMatches(name, names, 5); len(close) > 0 {
		msg += "; did you mean " + strings.Join(close, ", ") + "?"
	}
	return core.Errorf(core.ErrInvalid, "install", "%s", msg)
}

// Remove uninstalls a package from every Lua version's part of the tree.
func (e *Env) Remove(ctx context.Context, name string) error {
	if err := checkName("remove", name); err != nil {
		return err
	}
	return e.transact(func() error {
		removed := false
		for _, lv := range luaVersionsAvailable() {
			if !e.has(lv, name) {
				continue
			}
			// Without --force: luarocks refuses to remove a package that
			// another installed one needs (it would break it silently).
			if out, err := e.runLuarocks(ctx, lv, []string{"remove"}, name); err != nil {
				if deps := dependents(out); len(deps) > 0 {
					return core.Errorf(core.ErrInvalid, "remove", "package %q is needed by %s in environment %q: remove those first",
						name, strings.Join(deps, ", "), e.Name)
				}
				return err
			}
			removed = true
		}
		if !removed {
			return core.Errorf(core.ErrInvalid, "remove", "package %q is not installed in environment %q", name, e.Name)
		}
		return nil
	})
}

// dependents returns the packages luarocks named when it refused a remove
// ("Removing it would break dependencies for:" and one "name version" per
// line after it), or nil.
func dependents(out []byte) []string {
	const marker = "would break dependencies for:"
	text := string(out)
	i := strings.Index(text, marker)
	if i < 0 {
		return nil
	}
	var deps []string
	for _, line := range strings.Split(text[i+len(marker):], "\n")[1:] {
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		deps = append(deps, line)
	}
	return deps
}

// Update installs the newest version of an installed package.
func (e *Env) Update(ctx context.Context, name string) ([]Installed, error) {
	return e.Install(ctx, name, "")
}

func (e *Env) has(luaVersion, name string) bool {
	_, err := os.Stat(filepath.Join(e.Tree(), "lib", "luarocks", "rocks-"+luaVersion, name))
	return err == nil
}

// List lists what is installed, per Lua version.
func (e *Env) List(ctx context.Context) ([]Installed, error) {
	var out []Installed
	for _, lv := range luaVersionsAvailable() {
		dir := filepath.Join(e.Tree(), "lib", "luarocks", "rocks-"+lv)
		names, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, n := range names {
			if !n.IsDir() {
				continue
			}
			vers, _ := os.ReadDir(filepath.Join(dir, n.Name()))
			for _, v := range vers {
				if v.IsDir() {
					out = append(out, Installed{Name: n.Name(), Version: v.Name(), LuaVersion: lv})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].LuaVersion < out[j].LuaVersion
	})
	return out, nil
}

// LockEntry pins one rock.
type LockEntry struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Rock    string `json:"rock"` // file name in the repository
	SHA256  string `json:"sha256"`
	Repo    string `json:"repo"`
}

// LockFile pins an environment: every rock with its version and sha256.
type LockFile struct {
	Format   int         `json:"format"`
	Packages []LockEntry `json:"packages"`
}

// Lock writes the environment's lock file content: every installed rock
// (the 5.1 part, which every environment has), found in a repository and
// hashed.
func (e *Env) Lock(ctx context.Context) (*LockFile, error) {
	inst, err := e.List(ctx)
	if err != nil {
		return nil, err
	}
	lf := &LockFile{Format: 1}
	for _, it := range inst {
		if it.LuaVersion != "5.1" {
			continue
		}
		entry, err := e.findRock(ctx, it.Name, it.Version)
		if err != nil {
			return nil, err
		}
		lf.Packages = append(lf.Packages, *entry)
	}
	return lf, nil
}

func (e *Env) findRock(ctx context.Context, name, version string) (*LockEntry, error) {
	for _, r := range e.m.Repos() {
		for _, arch := range []string{"all", "src"} {
			file := fmt.Sprintf("%s-%s.%s.rock", name, version, arch)
			data, err := r.fetch(ctx, file, maxRockBytes)
			if err != nil {
				continue
			}
			sum := sha256.Sum256(data)
			// Never the credentials: InstallLock finds the configured
			// repository (with them) by its redacted URL.
			return &LockEntry{Name: name, Version: version, Rock: file, SHA256: hex.EncodeToString(sum[:]), Repo: r.display()}, nil
		}
	}
	return nil, core.Errorf(core.ErrFileNotFound, "lock", "no repository has the rock of %s %s", name, version)
}

// InstallLock reproduces a lock file in this environment: each rock is
// fetched, checked against its sha256, and installed without resolving
// dependencies (the lock lists them all). A mismatch changes nothing.
// Every entry must name a rock file of its package and version (a plain
// file name ending in .rock or .rockspec) and a repository that is
// configured in the manager (compared without credentials); anything else
// fails with ErrInvalid before anything is fetched.
func (e *Env) InstallLock(ctx context.Context, lf *LockFile) ([]Installed, error) {
	repos := make([]Repo, len(lf.Packages))
	for i, p := range lf.Packages {
		if err := checkLockEntry(p); err != nil {
			return nil, err
		}
		r, err := e.m.ResolveLockRepo(p.Repo)
		if err != nil {
			return nil, err
		}
		repos[i] = r
	}
	e.m.warnPlainHTTP()
	dir, err := os.MkdirTemp("", "bioxen-lock-*")
	if err != nil {
		return nil, core.Wrap(core.ErrGeneric, "lock", "temp dir", err)
	}
	defer os.RemoveAll(dir)
	var files []string
	for i, p := range lf.Packages {
		data, err := repos[i].fetch(ctx, p.Rock, maxRockBytes)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != p.SHA256 {
			return nil, core.Errorf(core.ErrInvalid, "lock", "%s: sha256 %s does not match the lock file's %s; nothing was installed", p.Rock, got, p.SHA256)
		}
		f := filepath.Join(dir, p.Rock)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			return nil, core.Wrap(core.ErrGeneric, "lock", "writing "+f, err)
		}
		files = append(files, f)
	}
	err = e.transact(func() error {
		for _, lv := range luaVersionsAvailable() {
			for _, f := range files {
				if _, err := e.runLuarocks(ctx, lv, []string{"install", "--deps-mode=none"}, f); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e.List(ctx)
}

// WriteLockFile writes lf as JSON to path (created 0600). Repository URLs
// are written without credentials.
func WriteLockFile(path string, lf *LockFile) error {
	clean := *lf
	clean.Packages = append([]LockEntry(nil), lf.Packages...)
	for i := range clean.Packages {
		clean.Packages[i].Repo = RedactURL(clean.Packages[i].Repo)
	}
	data, _ := json.MarshalIndent(&clean, "", "  ")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return core.Wrap(core.ErrGeneric, "lock", "cannot write "+path, err)
	}
	// The mode of a file that was there is kept by open: a regular one is
	// made 0600 too (never a device, /dev/stdout say).
	if fi, serr := f.Stat(); serr != nil {
		err = serr
	} else if fi.Mode().IsRegular() && fi.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	if _, werr := f.Write(append(data, '\n')); err == nil {
		err = werr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return core.Wrap(core.ErrGeneric, "lock", "cannot write "+path, err)
	}
	return nil
}

// maxLockFileBytes bounds a lock file (a few hundred bytes per package).
const maxLockFileBytes = 16 << 20

// ReadLockFile reads a lock file.
func ReadLockFile(path string) (*LockFile, error) {
	data, err := core.ReadRegularFile("lock", path, maxLockFileBytes)
	if err != nil {
		return nil, err
	}
	var lf LockFile
	if err := json.Unmarshal(data, &lf); err != nil {
		return nil, core.Errorf(core.ErrInvalid, "lock", "%s", describeJSONError(path, data, err))
	}
	return &lf, nil
}

// Health describes the environment for Curator.health_check.
func (e *Env) Health(ctx context.Context) map[string]any {
	inst, _ := e.List(ctx)
	_, lrErr := exec.LookPath(e.m.luarocks)
	reach := 0
	for _, r := range e.m.Repos() {
		if _, err := r.Manifest(ctx); err == nil {
			reach++
		}
	}
	return map[string]any{
		"environment":          e.Name,
		"tree":                 e.Tree(),
		"luarocks_available":   lrErr == nil,
		"lua_versions":         luaVersionsAvailable(),
		"installed_packages":   len(inst),
		"repositories":         len(e.m.Repos()),
		"repositories_reached": reach,
		"catalog_size":         len(e.m.catalog.Packages),
		"available_profiles":   len(e.m.catalog.Profiles),
	}
}
