package packages

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"libbioxen/core"
)

// Repo is a LuaRocks rocks server: a directory (file://) or an http(s) URL.
type Repo struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// NormalizeRepoURL turns a plain directory path into a file:// URL and
// checks the scheme. File URLs are percent-encoded ("/tmp/a b" gives
// "file:///tmp/a%20b", like Python's Path.as_uri()).
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
		return (&url.URL{Scheme: "file", Path: abs}).String(), nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", core.Errorf(core.ErrInvalid, "repository", "bad URL %s", RedactURL(raw))
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return "", core.Errorf(core.ErrInvalid, "repository", "file URL %s names a host; use file:///path", RedactURL(raw))
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return "", core.Errorf(core.ErrInvalid, "repository", "file URL %s has no absolute path", RedactURL(raw))
		}
		// (Clean leaves no trailing '/' but the root's: trimming that one
		// too made "file:///" "file:", a URL without a path.)
		return (&url.URL{Scheme: "file", Path: filepath.Clean(u.Path)}).String(), nil
	case "http", "https":
		if u.Host == "" {
			return "", core.Errorf(core.ErrInvalid, "repository", "URL %s names no host", RedactURL(raw))
		}
		if u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "#") {
			return raw, nil // a '/' that ends a query or fragment is no path's
		}
		return strings.TrimRight(raw, "/"), nil
	}
	return "", core.Errorf(core.ErrInvalid, "repository", "unsupported scheme %q in %s (file, http, https)", u.Scheme, RedactURL(raw))
}

// RedactURL removes the user information (user name, password, token) of
// a URL, for messages and lock files: "https://u:p@host/x" gives
// "https://***@host/x".
func RedactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw // a plain path: an '@' there is a directory name
	}
	return core.RedactUserinfo(raw, "***")
}

// hasUserinfo reports whether a URL carries credentials.
func hasUserinfo(raw string) bool { return RedactURL(raw) != raw }

// display is the repository's URL without credentials.
func (r Repo) display() string { return RedactURL(r.URL) }

// scrub removes the repository's credentials from a text (a luarocks or
// net/http message).
func (r Repo) scrub(s string) string {
	if !hasUserinfo(r.URL) {
		return s
	}
	s = strings.ReplaceAll(s, r.URL, r.display())
	if u, err := url.Parse(r.URL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			s = strings.ReplaceAll(s, pw, "***")
		}
		if name := u.User.Username(); name != "" {
			s = strings.ReplaceAll(s, name+"@", "***@")
			s = strings.ReplaceAll(s, name+":", "***:")
		}
	}
	return s
}

// localDir returns the directory of a file:// repository (decoded), or "".
func (r Repo) localDir() string {
	if !strings.HasPrefix(r.URL, "file://") {
		return ""
	}
	if u, err := url.Parse(r.URL); err == nil && u.Path != "" {
		return u.Path
	}
	return strings.TrimPrefix(r.URL, "file://")
}

// RepoPackage is what a repository's manifest says of one package.
type RepoPackage struct {
	Name     string
	Versions []string // newest first
	Repo     string
}

// maxRockBytes bounds a rock (or any other file) read from a repository.
var maxRockBytes int64 = 256 << 20

// validFileName accepts a plain file name of a repository (no directory).
func validFileName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00") && filepath.Base(name) == name
}

// fetch reads a file of the repository (the manifest, a rock), at most
// limit bytes. A local file must be a regular file (no FIFO or device).
func (r Repo) fetch(ctx context.Context, name string, limit int64) ([]byte, error) {
	if !validFileName(name) {
		return nil, core.Errorf(core.ErrInvalid, "repository", "invalid file name %q", name)
	}
	if err := ctx.Err(); err != nil {
		return nil, core.Errorf(core.ErrTimeout, "repository", "reading %s from %s: %v", name, r.display(), err)
	}
	if dir := r.localDir(); dir != "" {
		// A regular file only: a FIFO or a device is refused at once.
		return core.ReadRegularFile("repository", filepath.Join(dir, name), limit)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/"+name, nil)
	if err != nil {
		return nil, core.Errorf(core.ErrInvalid, "repository", "bad URL %s", r.display())
	}
	resp, err := repoClient.Do(req)
	if err != nil {
		code, what := core.ErrEngine, "is unreachable"
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) {
			code, what = core.ErrHostKey, "has a TLS certificate that is not trusted"
		}
		return nil, core.Errorf(code, "repository", "repository %s %s: %s", r.display(), what, r.scrub(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, core.Errorf(core.ErrFileNotFound, "repository", "repository %s: %s: HTTP %d", r.display(), name, resp.StatusCode)
	}
	return readLimited(resp.Body, limit, name, r)
}

// repoClient fetches from repositories: TLS verified (Go's default), and
// never redirected from https to http.
var repoClient = &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("refused a redirect from https to " + req.URL.Scheme)
	}
	return nil
}}

func readLimited(rd io.Reader, limit int64, name string, r Repo) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(rd, limit+1))
	if err != nil {
		return nil, core.Errorf(core.ErrEngine, "repository", "reading %s from %s: %s", name, r.display(), r.scrub(err.Error()))
	}
	if int64(len(data)) > limit {
		return nil, core.Errorf(core.ErrInvalid, "repository", "%s in repository %s is larger than %d bytes", name, r.display(), limit)
	}
	return data, nil
}

// Manifest lists the packages of the repository, read from its LuaRocks
// manifest. The manifest is parsed as data (table constructors only, never
// run), bounded in size, nesting depth and number of versions, under a
// deadline.
func (r Repo) Manifest(ctx context.Context) (map[string]*RepoPackage, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	data, err := r.fetch(ctx, "manifest", maxManifestBytes)
	if err != nil {
		return nil, err
	}
	globals, err := parseManifest(ctx, string(data))
	if err != nil {
		code := core.ErrInvalid
		if ctx.Err() != nil {
			code = core.ErrTimeout
		}
		return nil, core.Errorf(code, "repository", "bad manifest in %s: %v", r.display(), err)
	}
	repo, ok := globals["repository"].(*mtable)
	if !ok {
		return nil, core.Errorf(core.ErrInvalid, "repository", "manifest of %s has no repository table", r.display())
	}
	out := map[string]*RepoPackage{}
	total := 0
	for i, k := range repo.keys {
		name, ok := k.(string)
		versions, ok2 := repo.vals[i].(*mtable)
		if !ok || !ok2 {
			continue
		}
		total += len(versions.keys)
		if total > maxManifestVersions {
			return nil, core.Errorf(core.ErrInvalid, "repository", "manifest of %s lists more than %d versions", r.display(), maxManifestVersions)
		}
		rp := &RepoPackage{Name: name, Repo: r.Name}
		var keys []versionKey
		for _, ver := range versions.keys {
			if s, ok := ver.(string); ok {
				rp.Versions = append(rp.Versions, s)
				keys = append(keys, parseVersion(s))
			}
		}
		sort.Sort(&byVersion{rp.Versions, keys})
		out[name] = rp
	}
	return out, nil
}

// byVersion sorts versions newest first, each parsed once.
type byVersion struct {
	v    []string
	keys []versionKey
}

func (b *byVersion) Len() int           { return len(b.v) }
func (b *byVersion) Less(i, j int) bool { return compareVersionKeys(b.keys[i], b.keys[j]) > 0 }
func (b *byVersion) Swap(i, j int) {
	b.v[i], b.v[j] = b.v[j], b.v[i]
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
}

// CompareVersions compares LuaRocks versions ("1.2.3-1"): numeric parts
// numerically, the revision last. It returns -1, 0 or 1.
func CompareVersions(a, b string) int { return compareVersionKeys(parseVersion(a), parseVersion(b)) }

// Fetch reads one file (a rock, the manifest) from the repository.
func (r Repo) Fetch(ctx context.Context, name string) ([]byte, error) {
	return r.fetch(ctx, name, maxRockBytes)
}
