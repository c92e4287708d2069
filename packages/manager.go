package packages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"libbioxen/core"
)

// Config opens a Manager.
type Config struct {
	// Home holds the environments (Home/envs/<name>) and the repository
	// list (Home/repos.json). A relative path is taken from the current
	// directory when the manager is opened.
	Home string
	// Luarocks is the luarocks executable; default "luarocks".
	Luarocks string
	// DefaultRepos are used when Home has no repos.json yet.
	DefaultRepos []Repo
	// Catalogs are catalog files to load.
	Catalogs []string
	// AllowBuildCommands lets rockspecs run their own build steps: build
	// types other than "builtin" and "none" ("command", "make", "cmake",
	// and custom types, which install and run a luarocks-build-* rock) and
	// install hooks. Off by default: such steps run arbitrary commands on
	// this machine, as the calling user. Turn it on only for trusted
	// repositories.
	AllowBuildCommands bool
}

// Manager is the package manager of one home directory. It is safe for
// concurrent use; installs into one environment are serialised by a file
// lock, so separate processes are serialised too.
type Manager struct {
	home     string
	luarocks string
	catalog  *Catalog

	allowBuildCommands bool

	mu    sync.Mutex
	repos []Repo
}

var envName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidEnvName reports whether name can name an environment.
func ValidEnvName(name string) bool { return envName.MatchString(name) }

// Open opens (creating) the manager's home.
func Open(cfg Config) (*Manager, error) {
	if cfg.Home == "" {
		return nil, core.Errorf(core.ErrInvalid, "packages", "no home directory given")
	}
	// Absolute: luarocks runs in a directory of its own, where a relative
	// tree would name a directory removed after the run.
	home, err := filepath.Abs(cfg.Home)
	if err != nil {
		return nil, core.Wrap(core.ErrInvalid, "packages", "bad home directory "+cfg.Home, err)
	}
	cfg.Home = home
	if err := os.MkdirAll(filepath.Join(cfg.Home, "envs"), 0o755); err != nil {
		return nil, core.Wrap(core.ErrGeneric, "packages", "cannot create "+cfg.Home, err)
	}
	m := &Manager{home: cfg.Home, luarocks: cfg.Luarocks, allowBuildCommands: cfg.AllowBuildCommands}
	if m.luarocks == "" {
		m.luarocks = "luarocks"
	}
	cat, err := LoadCatalog(cfg.Catalogs...)
	if err != nil {
		return nil, err
	}
	m.catalog = cat
	// A regular file of bounded size: a FIFO there blocked every call.
	data, err := core.ReadRegularFile("packages", m.reposFile(), maxReposFileBytes)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &m.repos); err != nil {
			return nil, core.Errorf(core.ErrInvalid, "packages", "%s", describeJSONError(m.reposFile(), data, err))
		}
		// Checked as AddRepo checks them (the file may be edited by hand):
		// a plain path becomes a file:// URL.
		for i := range m.repos {
			r := &m.repos[i]
			u, err := NormalizeRepoURL(r.URL)
			if err == nil {
				r.Name = repoName(r.Name, u)
				err = checkRepoName(r.Name)
			}
			if err != nil {
				return nil, core.Wrap(core.ErrInvalid, "packages", fmt.Sprintf("%s: repository #%d", m.reposFile(), i+1), err)
			}
			r.URL = u
		}
	case errors.Is(err, os.ErrNotExist):
		m.repos = append([]Repo(nil), cfg.DefaultRepos...)
	default:
		return nil, err
	}
	return m, nil
}

// maxReposFileBytes bounds repos.json (a few hundred bytes a repository).
const maxReposFileBytes = 16 << 20

// Home is the manager's home directory.
func (m *Manager) Home() string { return m.home }

// Catalog is the loaded catalog.
func (m *Manager) Catalog() *Catalog { return m.catalog }

func (m *Manager) reposFile() string { return filepath.Join(m.home, "repos.json") }

// Repos lists the repositories in priority order.
func (m *Manager) Repos() []Repo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Repo(nil), m.repos...)
}

// ReposRedacted lists the repositories in priority order, their URLs
// without credentials ("https://***@host/"): what the C and Python APIs
// show, so that a listing printed or logged leaks no credentials. A
// repository is named, moved and removed by its name.
func (m *Manager) ReposRedacted() []Repo {
	repos := m.Repos()
	for i := range repos {
		repos[i].URL = repos[i].display()
	}
	return repos
}

// MoveRepo moves a repository, named by its name or URL (as RemoveRepo),
// to position index (0 = highest priority; <0 or past the end = last),
// keeping its URL.
func (m *Manager) MoveRepo(nameOrURL string, index int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range m.repos {
		if r.Name != nameOrURL && r.URL != nameOrURL && r.display() != nameOrURL {
			continue
		}
		m.repos = insertRepo(append(m.repos[:i], m.repos[i+1:]...), r, index)
		return m.saveRepos()
	}
	return core.Errorf(core.ErrInvalid, "packages", "no repository %q", core.Clip(RedactURL(nameOrURL), 64))
}

// repoName is the name of the repository at URL u: name, or the URL when
// name is empty, without credentials either way (a name is listed and
// quoted as it is; the default name was once the URL itself).
func repoName(name, u string) string {
	if name == "" {
		name = u
	}
	return RedactURL(name)
}

// saveRepos writes repos.json, mode 0600 (URLs may carry credentials).
func (m *Manager) saveRepos() error {
	data, _ := json.MarshalIndent(m.repos, "", "  ")
	f, err := os.CreateTemp(m.home, "repos.json.tmp-*") // created 0600
	if err != nil {
		return core.Wrap(core.ErrGeneric, "packages", "cannot write "+m.reposFile(), err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return core.Wrap(core.ErrGeneric, "packages", "cannot write "+f.Name(), werr)
	}
	if err := os.Rename(f.Name(), m.reposFile()); err != nil {
		os.Remove(f.Name())
		return core.Wrap(core.ErrGeneric, "packages", "cannot write "+m.reposFile(), err)
	}
	return nil
}

// AddRepo adds (or moves) a repository at position index (0 = highest
// priority; <0 or past the end = last).
func (m *Manager) AddRepo(name, rawURL string, index int) error {
	u, err := NormalizeRepoURL(rawURL)
	if err != nil {
		return err
	}
	name = repoName(name, u)
	if err := checkRepoName(name); err != nil {
		return err
	}
	warnIfPlainHTTP(u)
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := m.repos[:0]
	for _, r := range m.repos {
		if r.Name != name && r.URL != u {
			kept = append(kept, r)
		}
	}
	m.repos = insertRepo(kept, Repo{Name: name, URL: u}, index)
	return m.saveRepos()
}

// insertRepo puts r at position index of repos (<0 or past the end: last).
func insertRepo(repos []Repo, r Repo, index int) []Repo {
	if index < 0 || index >= len(repos) {
		return append(repos, r)
	}
	return append(repos[:index], append([]Repo{r}, repos[index:]...)...)
}

// checkRepoName accepts a repository name of at most 256 characters of
// valid UTF-8, without control characters.
func checkRepoName(name string) error {
	if len(name) > 256 || strings.IndexFunc(name, unicode.IsControl) >= 0 || !utf8.ValidString(name) {
		return core.Errorf(core.ErrInvalid, "add_repo", "invalid repository name %q (at most 256 characters, no control characters)", core.Clip(name, 64))
	}
	return nil
}

// RemoveRepo removes a repository by name or URL.
func (m *Manager) RemoveRepo(nameOrURL string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range m.repos {
		if r.Name == nameOrURL || r.URL == nameOrURL || r.display() == nameOrURL {
			m.repos = append(m.repos[:i], m.repos[i+1:]...)
			return m.saveRepos()
		}
	}
	return core.Errorf(core.ErrInvalid, "packages", "no repository %q", RedactURL(nameOrURL))
}

// Search ranks packages of the catalog and of every repository's manifest
// against query. Unreachable repositories are skipped (and reported in the
// second result).
func (m *Manager) Search(ctx context.Context, query string) ([]Match, []error) {
	found := map[string]Match{}
	for _, mt := range m.catalog.Search(query) {
		found[mt.Name] = mt
	}
	var errs []error
	q := strings.ToLower(strings.TrimSpace(query))
	for _, r := range m.Repos() {
		man, err := r.Manifest(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for name, rp := range man {
			summary := ""
			var tags []string
			if p := m.catalog.Packages[name]; p != nil {
				summary, tags = p.Summary, p.Tags
			}
			s := 50
			if q != "" {
				s = score(q, name, summary, tags)
			}
			if s == 0 {
				continue
			}
			mt := Match{Name: name, Summary: summary, Score: s, Source: r.Name, Tags: tags}
			if len(rp.Versions) > 0 {
				mt.Version = rp.Versions[0]
			}
			if old, ok := found[name]; !ok || old.Source == "catalog" {
				if ok {
					mt.Score = max(mt.Score, old.Score)
				}
				found[name] = mt
			}
		}
	}
	out := make([]Match, 0, len(found))
	for _, mt := range found {
		out = append(out, mt)
	}
	sortMatches(out)
	return out, errs
}

// Env returns the environment name, creating its directory when create is
// set.
func (m *Manager) Env(name string, create bool) (*Env, error) {
	if !ValidEnvName(name) {
		return nil, core.Errorf(core.ErrInvalid, "environment", "invalid environment name %q (letters, digits, '_', '.', '-')", name)
	}
	if strings.ContainsAny(m.home, ";?") {
		// package.path is ';'-separated and '?' stands for the module
		// name: a tree here would take installs no require could find.
		return nil, core.Errorf(core.ErrInvalid, "environment", "the package home %q holds ';' or '?', which package.path cannot hold", m.home)
	}
	dir := filepath.Join(m.home, "envs", name)
	if _, err := os.Stat(dir); err != nil {
		if !create {
			return nil, core.Errorf(core.ErrFileNotFound, "environment", "no environment %q (known: %s)", name, strings.Join(m.EnvNames(), ", "))
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, core.Wrap(core.ErrGeneric, "environment", "cannot create "+dir, err)
		}
	}
	return &Env{Name: name, Dir: dir, m: m}, nil
}

// EnvNames lists the environments.
func (m *Manager) EnvNames() []string {
	entries, _ := os.ReadDir(filepath.Join(m.home, "envs"))
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidEnvName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// RemoveEnv deletes an environment and everything installed in it.
func (m *Manager) RemoveEnv(name string) error {
	e, err := m.Env(name, false)
	if err != nil {
		return err
	}
	unlock, err := e.lock()
	if err != nil {
		return err
	}
	defer unlock()
	// The lock file (Home/locks) stays: callers waiting on it find the
	// environment gone once they hold it.
	if err := os.RemoveAll(e.Dir); err != nil {
		return core.Wrap(core.ErrGeneric, "environment", "cannot remove "+e.Dir, err)
	}
	return nil
}

// luarocksAvailable checks the executable once per call site.
func (m *Manager) checkLuarocks() error {
	if _, err := exec.LookPath(m.luarocks); err != nil {
		return core.Errorf(core.ErrLuaNotFound, "packages", "luarocks (%s) is not installed", m.luarocks)
	}
	return nil
}

func quoteLua(s string) string { return fmt.Sprintf("%q", s) }

var (
	rockName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)
	rockVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	rockArch    = `[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*`
)

// ValidName reports whether name can name a package (LuaRocks names:
// letters, digits, '_', '.', '+', '-', not starting with '-' or '.').
func ValidName(name string) bool { return rockName.MatchString(name) }

// ValidVersion reports whether v is a LuaRocks version ("1.0-1",
// "scm-1", "2.1"): letters, digits, '.', '_', '-', not starting with '-'.
func ValidVersion(v string) bool { return rockVersion.MatchString(v) }

func checkName(op, name string) error {
	if !ValidName(name) {
		return core.Errorf(core.ErrInvalid, op, "invalid package name %q (letters, digits, '_', '.', '+', '-')", name)
	}
	return nil
}

// checkLockEntry accepts a lock entry whose rock is a plain file name of
// its package and version: <name>-<version>.<arch>.rock or
// <name>-<version>.rockspec.
func checkLockEntry(p LockEntry) error {
	if err := checkName("lock", p.Name); err != nil {
		return err
	}
	if !ValidVersion(p.Version) {
		return core.Errorf(core.ErrInvalid, "lock", "%s: invalid version %q", p.Name, p.Version)
	}
	prefix := regexp.QuoteMeta(p.Name + "-" + p.Version)
	re := regexp.MustCompile(`^` + prefix + `(\.` + rockArch + `\.rock|\.rockspec)$`)
	if !validFileName(p.Rock) || !re.MatchString(p.Rock) {
		return core.Errorf(core.ErrInvalid, "lock", "%s %s: invalid rock file name %q (expected %s-%s.<arch>.rock)", p.Name, p.Version, p.Rock, p.Name, p.Version)
	}
	return nil
}

// ResolveLockRepo finds the configured repository a lock entry names (by
// URL, compared without credentials, or by name). A lock file cannot make
// the manager read from anywhere else.
func (m *Manager) ResolveLockRepo(lockRepo string) (Repo, error) {
	want := RedactURL(lockRepo)
	if norm, err := NormalizeRepoURL(lockRepo); err == nil {
		want = RedactURL(norm)
	}
	for _, r := range m.Repos() {
		if r.display() == want || r.display() == RedactURL(lockRepo) || r.Name == lockRepo {
			return r, nil
		}
	}
	return Repo{}, core.Errorf(core.ErrInvalid, "lock", "the lock file names repository %s, which is not configured (add it first)", RedactURL(lockRepo))
}

// warnPlainHTTP logs a warning for each plain http:// repository.
func (m *Manager) warnPlainHTTP() {
	for _, r := range m.Repos() {
		warnIfPlainHTTP(r.URL)
	}
}

// warnIfPlainHTTP logs a warning when url is a plain http:// repository.
func warnIfPlainHTTP(url string) {
	if strings.HasPrefix(url, "http://") {
		core.Logf(core.LevelWarn, "repository %s uses plain http: anyone on the network path can change the rocks installed from it (and the code they run); prefer https", RedactURL(url))
	}
}
