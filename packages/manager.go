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
	"sort"
	"strings"
	"sync"

	"libbioxen/core"
)

// Config opens a Manager.
type Config struct {
	// Home holds the environments (Home/envs/<name>) and the repository
	// list (Home/repos.json).
	Home string
	// Luarocks is the luarocks executable; default "luarocks".
	Luarocks string
	// DefaultRepos are used when Home has no repos.json yet.
	DefaultRepos []Repo
	// Catalogs are catalog files to load.
	Catalogs []string
}

// Manager is the package manager of one home directory. It is safe for
// concurrent use; installs into one environment are serialised by a file
// lock, so separate processes are serialised too.
type Manager struct {
	home     string
	luarocks string
	catalog  *Catalog

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
	if err := os.MkdirAll(filepath.Join(cfg.Home, "envs"), 0o755); err != nil {
		return nil, core.Wrap(core.ErrGeneric, "packages", "cannot create "+cfg.Home, err)
	}
	m := &Manager{home: cfg.Home, luarocks: cfg.Luarocks}
	if m.luarocks == "" {
		m.luarocks = "luarocks"
	}
	cat, err := LoadCatalog(cfg.Catalogs...)
	if err != nil {
		return nil, err
	}
	m.catalog = cat
	data, err := os.ReadFile(m.reposFile())
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &m.repos); err != nil {
			return nil, core.Errorf(core.ErrInvalid, "packages", "%s", describeJSONError(m.reposFile(), data, err))
		}
	case errors.Is(err, os.ErrNotExist):
		m.repos = append([]Repo(nil), cfg.DefaultRepos...)
	default:
		return nil, core.Wrap(core.ErrGeneric, "packages", "cannot read "+m.reposFile(), err)
	}
	return m, nil
}

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

func (m *Manager) saveRepos() error {
	data, _ := json.MarshalIndent(m.repos, "", "  ")
	tmp := m.reposFile() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return core.Wrap(core.ErrGeneric, "packages", "cannot write "+tmp, err)
	}
	return os.Rename(tmp, m.reposFile())
}

// AddRepo adds (or moves) a repository at position index (0 = highest
// priority; <0 or past the end = last).
func (m *Manager) AddRepo(name, rawURL string, index int) error {
	u, err := NormalizeRepoURL(rawURL)
	if err != nil {
		return err
	}
	if name == "" {
		name = u
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := m.repos[:0]
	for _, r := range m.repos {
		if r.Name != name && r.URL != u {
			kept = append(kept, r)
		}
	}
	m.repos = kept
	r := Repo{Name: name, URL: u}
	if index < 0 || index >= len(m.repos) {
		m.repos = append(m.repos, r)
	} else {
		m.repos = append(m.repos[:index], append([]Repo{r}, m.repos[index:]...)...)
	}
	return m.saveRepos()
}

// RemoveRepo removes a repository by name or URL.
func (m *Manager) RemoveRepo(nameOrURL string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range m.repos {
		if r.Name == nameOrURL || r.URL == nameOrURL {
			m.repos = append(m.repos[:i], m.repos[i+1:]...)
			return m.saveRepos()
		}
	}
	return core.Errorf(core.ErrInvalid, "packages", "no repository %q", nameOrURL)
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

// knownNames lists every package name of the catalog and the manifests.
func (m *Manager) knownNames(ctx context.Context) []string {
	set := map[string]bool{}
	for n := range m.catalog.Packages {
		set[n] = true
	}
	for _, r := range m.Repos() {
		if man, err := r.Manifest(ctx); err == nil {
			for n := range man {
				set[n] = true
			}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Env returns the environment name, creating its directory when create is
// set.
func (m *Manager) Env(name string, create bool) (*Env, error) {
	if !ValidEnvName(name) {
		return nil, core.Errorf(core.ErrInvalid, "environment", "invalid environment name %q (letters, digits, '_', '.', '-')", name)
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
	return os.RemoveAll(e.Dir)
}

// luarocksAvailable checks the executable once per call site.
func (m *Manager) checkLuarocks() error {
	if _, err := exec.LookPath(m.luarocks); err != nil {
		return core.Errorf(core.ErrLuaNotFound, "packages", "luarocks (%s) is not installed", m.luarocks)
	}
	return nil
}

func quoteLua(s string) string { return fmt.Sprintf("%q", s) }
