package packages

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"libbioxen/core"
)

// Repo is a LuaRocks rocks server: a directory (file://) or an http(s) URL.
type Repo struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// NormalizeRepoURL turns a plain directory path into a file:// URL and
// checks the scheme.
func NormalizeRepoURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", core.Errorf(core.ErrInvalid, "repository", "empty repository URL")
	}
	if !strings.Contains(raw, "://") {
		abs, err := filepath.Abs(raw)
		if err != nil {
			return "", core.Wrap(core.ErrInvalid, "repository", "bad path "+raw, err)
		}
		return "file://" + abs, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", core.Wrap(core.ErrInvalid, "repository", "bad URL "+raw, err)
	}
	switch u.Scheme {
	case "file", "http", "https":
		return strings.TrimRight(raw, "/"), nil
	}
	return "", core.Errorf(core.ErrInvalid, "repository", "unsupported scheme %q in %s (file, http, https)", u.Scheme, raw)
}

// localDir returns the directory of a file:// repository, or "".
func (r Repo) localDir() string {
	if strings.HasPrefix(r.URL, "file://") {
		return strings.TrimPrefix(r.URL, "file://")
	}
	return ""
}

// RepoPackage is what a repository's manifest says of one package.
type RepoPackage struct {
	Name     string
	Versions []string // newest first
	Repo     string
}

// fetch reads a file of the repository (the manifest, a rock).
func (r Repo) fetch(ctx context.Context, name string) ([]byte, error) {
	if dir := r.localDir(); dir != "" {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, core.Wrap(core.ErrFileNotFound, "repository", fmt.Sprintf("repository %s has no %s", r.URL, name), err)
		}
		return data, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/"+name, nil)
	if err != nil {
		return nil, core.Wrap(core.ErrInvalid, "repository", "bad URL", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, core.Wrap(core.ErrEngine, "repository", "repository "+r.URL+" is unreachable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, core.Errorf(core.ErrFileNotFound, "repository", "repository %s: %s: HTTP %d", r.URL, name, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, core.Wrap(core.ErrEngine, "repository", "reading "+name+" from "+r.URL, err)
	}
	return data, nil
}

// Manifest lists the packages of the repository, read from its LuaRocks
// manifest (a Lua file, evaluated in an empty gopher-lua state with no
// libraries and a deadline).
func (r Repo) Manifest(ctx context.Context) (map[string]*RepoPackage, error) {
	data, err := r.fetch(ctx, "manifest")
	if err != nil {
		return nil, err
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	L.SetContext(ctx)
	if err := L.DoString(string(data)); err != nil {
		return nil, core.Wrap(core.ErrInvalid, "repository", "bad manifest in "+r.URL, err)
	}
	repo, ok := L.GetGlobal("repository").(*lua.LTable)
	if !ok {
		return nil, core.Errorf(core.ErrInvalid, "repository", "manifest of %s has no repository table", r.URL)
	}
	out := map[string]*RepoPackage{}
	repo.ForEach(func(k, v lua.LValue) {
		name, ok := k.(lua.LString)
		versions, ok2 := v.(*lua.LTable)
		if !ok || !ok2 {
			return
		}
		rp := &RepoPackage{Name: string(name), Repo: r.Name}
		versions.ForEach(func(ver, _ lua.LValue) {
			if s, ok := ver.(lua.LString); ok {
				rp.Versions = append(rp.Versions, string(s))
			}
		})
		sort.Slice(rp.Versions, func(i, j int) bool { return CompareVersions(rp.Versions[i], rp.Versions[j]) > 0 })
		out[rp.Name] = rp
	})
	return out, nil
}

// CompareVersions compares LuaRocks versions ("1.2.3-1"): numeric parts
// numerically, the revision last. It returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	split := func(v string) []string {
		return strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '-' })
	}
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		var nx, ny int
		_, ex := fmt.Sscanf(x, "%d", &nx)
		_, ey := fmt.Sscanf(y, "%d", &ny)
		switch {
		case ex == nil && ey == nil && nx != ny:
			if nx < ny {
				return -1
			}
			return 1
		case (ex != nil || ey != nil) && x != y:
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Fetch reads one file (a rock, the manifest) from the repository.
func (r Repo) Fetch(ctx context.Context, name string) ([]byte, error) { return r.fetch(ctx, name) }
