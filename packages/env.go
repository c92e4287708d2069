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
func (e *Env) Paths(luaVersion string) (path, cpath string) {
	t := e.Tree()
	path = fmt.Sprintf("%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua", t, luaVersion, t, luaVersion)
	cpath = fmt.Sprintf("%s/lib/lua/%s/?.so", t, luaVersion)
	return path, cpath
}

// lock takes the environment's file lock (shared by processes), recovering
// from an install that was interrupted before it could clean up.
func (e *Env) lock() (func(), error) {
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return nil, core.Wrap(core.ErrGeneric, "environment", "cannot create "+e.Dir, err)
	}
	f, err := os.OpenFile(filepath.Join(e.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, core.Wrap(core.ErrGeneric, "environment", "cannot open lock", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, core.Wrap(core.ErrGeneric, "environment", "cannot lock "+e.Dir, err)
	}
	if err := e.recover(); err != nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func (e *Env) backupDir() string { return filepath.Join(e.Dir, "tree.backup") }

// recover puts the backup of an interrupted change back in place.
func (e *Env) recover() error {
	if _, err := os.Stat(e.backupDir()); err != nil {
		return nil
	}
	core.Logf(core.LevelWarn, "environment %q: restoring the tree after an interrupted change", e.Name)
	if err := os.RemoveAll(e.Tree()); err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "cannot restore "+e.Tree(), err)
	}
	return os.Rename(e.backupDir(), e.Tree())
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
	if err := copyTree(e.Tree(), e.backupDir()); err != nil {
		os.RemoveAll(e.backupDir())
		return err
	}
	if err := change(); err != nil {
		if rerr := e.recover(); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return os.RemoveAll(e.backupDir())
}

func copyTree(src, dst string) error {
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
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
// tree and the manager's repositories, through a config file of its own (so
// no user or system configuration, and no default server, is consulted).
func (e *Env) runLuarocks(ctx context.Context, luaVersion string, args ...string) ([]byte, error) {
	if err := e.m.checkLuarocks(); err != nil {
		return nil, err
	}
	cfg, err := os.CreateTemp("", "bioxen-luarocks-*.lua")
	if err != nil {
		return nil, core.Wrap(core.ErrGeneric, "luarocks", "config file", err)
	}
	defer os.Remove(cfg.Name())
	var servers []string
	for _, r := range e.m.Repos() {
		servers = append(servers, quoteLua(r.URL))
	}
	fmt.Fprintf(cfg, "rocks_trees = { { name = \"bioxen\", root = %s } }\n", quoteLua(e.Tree()))
	fmt.Fprintf(cfg, "rocks_servers = { %s }\n", strings.Join(servers, ", "))
	fmt.Fprintf(cfg, "local_by_default = false\n")
	cfg.Close()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
	}
	full := append([]string{"--lua-version=" + luaVersion, "--tree=" + e.Tree()}, args...)
	cmd := exec.CommandContext(ctx, e.m.luarocks, full...)
	cmd.Env = append(os.Environ(), "LUAROCKS_CONFIG="+cfg.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ctx.Err() != nil {
		return out.Bytes(), core.Errorf(core.ErrTimeout, "luarocks", "luarocks %s timed out", strings.Join(args, " "))
	}
	if err != nil {
		return out.Bytes(), core.Errorf(core.ErrEngine, "luarocks", "luarocks %s failed: %s", strings.Join(args, " "), lastLines(out.String(), 6))
	}
	return out.Bytes(), nil
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
	if name == "" || strings.ContainsAny(name, " \t\n/\\") {
		return nil, core.Errorf(core.ErrInvalid, "install", "invalid package name %q", name)
	}
	if err := e.checkKnown(ctx, name); err != nil {
		return nil, err
	}
	err := e.transact(func() error {
		for _, lv := range luaVersionsAvailable() {
			args := []string{"install", name}
			if version != "" {
				args = append(args, version)
			}
			if _, err := e.runLuarocks(ctx, lv, args...); err != nil {
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
func (e *Env) checkKnown(ctx context.Context, name string) error {
	reachable := false
	for _, r := range e.m.Repos() {
		man, err := r.Manifest(ctx)
		if err != nil {
			continue
		}
		reachable = true
		if _, ok := man[name]; ok {
			return nil
		}
	}
	if !reachable {
		var urls []string
		for _, r := range e.m.Repos() {
			urls = append(urls, r.URL)
		}
		return core.Errorf(core.ErrEngine, "install", "no repository is reachable (%s); nothing was changed", strings.Join(urls, ", "))
	}
	msg := fmt.Sprintf("unknown package %q", name)
	if close := CloseMatches(name, e.m.knownNames(ctx), 5); len(close) > 0 {
		msg += "; did you mean " + strings.Join(close, ", ") + "?"
	}
	return core.Errorf(core.ErrInvalid, "install", "%s", msg)
}

// Remove uninstalls a package from every Lua version's part of the tree.
func (e *Env) Remove(ctx context.Context, name string) error {
	return e.transact(func() error {
		removed := false
		for _, lv := range luaVersionsAvailable() {
			if !e.has(lv, name) {
				continue
			}
			if _, err := e.runLuarocks(ctx, lv, "remove", "--force", name); err != nil {
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
			data, err := r.fetch(ctx, file)
			if err != nil {
				continue
			}
			sum := sha256.Sum256(data)
			return &LockEntry{Name: name, Version: version, Rock: file, SHA256: hex.EncodeToString(sum[:]), Repo: r.URL}, nil
		}
	}
	return nil, core.Errorf(core.ErrFileNotFound, "lock", "no repository has the rock of %s %s", name, version)
}

// InstallLock reproduces a lock file in this environment: each rock is
// fetched, checked against its sha256, and installed without resolving
// dependencies (the lock lists them all). A mismatch changes nothing.
func (e *Env) InstallLock(ctx context.Context, lf *LockFile) ([]Installed, error) {
	dir, err := os.MkdirTemp("", "bioxen-lock-*")
	if err != nil {
		return nil, core.Wrap(core.ErrGeneric, "lock", "temp dir", err)
	}
	defer os.RemoveAll(dir)
	var files []string
	for _, p := range lf.Packages {
		r := Repo{Name: p.Repo, URL: p.Repo}
		data, err := r.fetch(ctx, p.Rock)
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
				if _, err := e.runLuarocks(ctx, lv, "install", "--deps-mode=none", f); err != nil {
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

// WriteLockFile writes lf as JSON to path.
func WriteLockFile(path string, lf *LockFile) error {
	data, _ := json.MarshalIndent(lf, "", "  ")
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReadLockFile reads a lock file.
func ReadLockFile(path string) (*LockFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, core.Wrap(core.ErrFileNotFound, "lock", "cannot read "+path, err)
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
