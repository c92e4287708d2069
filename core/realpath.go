package core

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxLinks bounds the symbolic links RealPath follows (Linux's MAXSYMLINKS).
const maxLinks = 40

// RealPath resolves the symbolic links of the absolute path p for a
// sandbox's directory check, like realpath(3) for a path that exists. For
// one that does not (a file about to be created) it resolves the
// directory, and when the last element is itself a dangling link it
// follows that link: opening it for writing would create the link's
// target, so the target is what must lie in an allowed directory.
//
// It returns p unchanged when p's directory does not exist (opening fails
// anyway), and "" when the path cannot be resolved (too many links, an
// unreadable directory): the caller refuses.
func RealPath(p string) string {
	for range maxLinks {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		dir, base := filepath.Split(p)
		rd, err := filepath.EvalSymlinks(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return p
			}
			return ""
		}
		full := filepath.Join(rd, base)
		target, err := os.Readlink(full)
		if err != nil {
			return full // not a link: a file that does not exist yet
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(rd, target)
		}
		p = filepath.Clean(target)
	}
	return ""
}

// PathUnder reports whether absolute path p is one of dirs or lies below
// one. The root directory holds every absolute path.
func PathUnder(p string, dirs []string) bool {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, string(filepath.Separator))+string(filepath.Separator)) {
			return true
		}
	}
	return false
}
