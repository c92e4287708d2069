// Package packages manages Lua packages for libbioxen VMs: catalogs of
// package metadata and profiles (JSON files, not hard-coded tables),
// LuaRocks repositories (file:// directories and http(s) servers), isolated
// environments (one LuaRocks tree each), installs through the real
// `luarocks`, and lock files that pin every rock's version and sha256.
package packages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"libbioxen/core"
)

// Package is one catalog entry.
type Package struct {
	Name         string   `json:"name"`
	Versions     []string `json:"versions,omitempty"`
	Summary      string   `json:"summary,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	Dependencies []string `json:"dependencies,omitempty"`
	LuaVersions  []string `json:"lua_versions,omitempty"`
	Engines      []string `json:"engines,omitempty"`
	PureLua      *bool    `json:"pure_lua,omitempty"`
	Homepage     string   `json:"homepage,omitempty"`
	Category     string   `json:"category,omitempty"`
	Priority     int      `json:"priority,omitempty"`
}

// IsPureLua reports whether the package has no C code (unknown counts as
// pure).
func (p *Package) IsPureLua() bool { return p.PureLua == nil || *p.PureLua }

// Profile is a named set of packages.
type Profile struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Category    string   `json:"category,omitempty"`
	Packages    []string `json:"packages"`
}

// Catalog holds packages and profiles loaded from catalog files.
type Catalog struct {
	Packages map[string]*Package
	Profiles map[string]*Profile
	Sources  []string // the files it was loaded from
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{Packages: map[string]*Package{}, Profiles: map[string]*Profile{}}
}

// LoadCatalog reads catalog files. A file may hold packages, profiles or
// both, as {"packages": [...], "profiles": [...]} (profiles may also be an
// object keyed by name) or a bare list of packages. Later files override
// earlier entries of the same name. A syntax error names the file, line and
// column.
func LoadCatalog(paths ...string) (*Catalog, error) {
	c := NewCatalog()
	for _, p := range paths {
		if err := c.AddFile(p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// AddFile merges one catalog file, or the catalog at an http(s) URL.
func (c *Catalog) AddFile(path string) error {
	var data []byte
	var err error
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		if data, err = fetchURL(path); err != nil {
			return core.Wrap(core.ErrFileNotFound, "catalog", "cannot read catalog "+path, err)
		}
	} else if data, err = core.ReadRegularFile("catalog", path, maxCatalogBytes); err != nil {
		return err
	}
	if err := c.AddJSON(path, data); err != nil {
		return err
	}
	c.Sources = append(c.Sources, path)
	return nil
}

// AddJSON merges catalog data; name labels errors.
func (c *Catalog) AddJSON(name string, data []byte) error {
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return core.Errorf(core.ErrInvalid, "catalog", "%s", describeJSONError(name, data, err))
	}
	var doc struct {
		Packages json.RawMessage `json:"packages"`
		Profiles json.RawMessage `json:"profiles"`
	}
	if _, isList := raw.([]any); isList {
		doc.Packages = data
	} else if err := json.Unmarshal(data, &doc); err != nil {
		return core.Errorf(core.ErrInvalid, "catalog", "%s: %v", name, err)
	}
	pkgs, err := decodeNamed[Package](doc.Packages, name, "package", func(p *Package) *string { return &p.Name })
	if err != nil {
		return err
	}
	for _, p := range pkgs {
		c.Packages[p.Name] = p
	}
	profs, err := decodeNamed[Profile](doc.Profiles, name, "profile", func(p *Profile) *string { return &p.Name })
	if err != nil {
		return err
	}
	for _, p := range profs {
		c.Profiles[p.Name] = p
	}
	return nil
}

// decodeNamed reads a list of entries, or an object of entries keyed by
// name (the key fills an empty name field); every entry needs a name.
func decodeNamed[T any](raw json.RawMessage, file, what string, name func(*T) *string) ([]*T, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var list []*T
	if err := json.Unmarshal(raw, &list); err != nil {
		var byName map[string]*T
		if err2 := json.Unmarshal(raw, &byName); err2 != nil {
			return nil, core.Errorf(core.ErrInvalid, "catalog", "%s: %ss: %v", file, what, err)
		}
		for n, e := range byName {
			if e != nil && *name(e) == "" {
				*name(e) = n
			}
			list = append(list, e)
		}
	}
	for i, e := range list {
		if e == nil || *name(e) == "" {
			return nil, core.Errorf(core.ErrInvalid, "catalog", "%s: %s #%d has no name", file, what, i+1)
		}
	}
	return list, nil
}

// maxPriority bounds what a catalog's priority adds to a search score (a
// hostile one of 2^63-1 overflowed it).
const maxPriority = 1 << 20

// maxCatalogBytes bounds a catalog file (the shipped ones are a few KB).
const maxCatalogBytes = 64 << 20

func fetchURL(u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := repoClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCatalogBytes+1))
	if err == nil && len(data) > maxCatalogBytes {
		err = fmt.Errorf("larger than %d bytes", maxCatalogBytes)
	}
	return data, err
}

// describeJSONError turns a JSON error into "file:line:col: message".
func describeJSONError(name string, data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	if errors.As(err, &se) {
		off = se.Offset
	} else if errors.As(err, &te) {
		off = te.Offset
	}
	if off < 0 {
		return fmt.Sprintf("%s: %v", name, err)
	}
	line, col := 1, 1
	for i := int64(0); i < off-1 && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("%s:%d:%d: %v", name, line, col, err)
}

// Match is a search result.
type Match struct {
	Name    string   `json:"name"`
	Summary string   `json:"summary,omitempty"`
	Score   int      `json:"score"`
	Source  string   `json:"source"` // "catalog" or a repository name
	Version string   `json:"version,omitempty"`
	Tags    []string `json:"tags,omitempty"`
}

// score ranks how well a package matches a lower-cased query: 100 exact
// name, 80 name prefix, 60 name contains, 40 tag, 20 summary; 0 no match.
func score(q, name, summary string, tags []string) int {
	n := strings.ToLower(name)
	switch {
	case n == q:
		return 100
	case strings.HasPrefix(n, q):
		return 80
	case strings.Contains(n, q):
		return 60
	}
	for _, t := range tags {
		if strings.EqualFold(t, q) {
			return 40
		}
	}
	for _, t := range tags {
		if strings.Contains(strings.ToLower(t), q) {
			return 30
		}
	}
	if strings.Contains(strings.ToLower(summary), q) {
		return 20
	}
	return 0
}

// Search ranks catalog packages against query (names, tags, summaries),
// best first, then by name.
func (c *Catalog) Search(query string) []Match {
	q := strings.ToLower(strings.TrimSpace(query))
	var out []Match
	for _, p := range c.Packages {
		s := 50
		if q != "" {
			s = score(q, p.Name, p.Summary, p.Tags)
		}
		if s > 0 {
			v := ""
			if len(p.Versions) > 0 {
				v = p.Versions[0]
			}
			out = append(out, Match{Name: p.Name, Summary: p.Summary, Score: s + max(min(p.Priority, maxPriority), -maxPriority), Source: "catalog", Version: v, Tags: p.Tags})
		}
	}
	sortMatches(out)
	return out
}

func sortMatches(m []Match) {
	sort.SliceStable(m, func(i, j int) bool {
		if m[i].Score != m[j].Score {
			return m[i].Score > m[j].Score
		}
		return m[i].Name < m[j].Name
	})
}

// CloseMatches returns up to n names closest to name (edit distance), for
// "unknown package" errors.
func CloseMatches(name string, candidates []string, n int) []string {
	type cand struct {
		s string
		d int
	}
	var cs []cand
	lname := strings.ToLower(name)
	for _, c := range candidates {
		d := editDistance(lname, strings.ToLower(c))
		if d <= max(2, len(name)/2) || strings.Contains(strings.ToLower(c), lname) {
			cs = append(cs, cand{c, d})
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].s < cs[j].s
	})
	var out []string
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].s)
	}
	return out
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
