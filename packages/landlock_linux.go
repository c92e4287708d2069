//go:build linux

package packages

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"libbioxen/core"
)

// luarocks unpacks archives and deploys files as a repository's rocks
// and rockspecs say, and does not guard its paths: a rock_manifest key of
// "../../x", a "../" entry in a source tarball, a symbolic link in a rock
// wrote files outside the environment, or copied any file the user can
// read into it (where sandboxed code may read it). So luarocks runs
// confined with Landlock (Linux 5.13+, unprivileged): it may write only
// its environment's tree and its own temporary directory, and read only
// those, the system's directories (programs, libraries, /etc; not /proc)
// and the local repositories — not the user's home, nor /tmp. Without
// Landlock (an older kernel, or one built without it) it runs unconfined,
// and a warning says so once.

// Rights beyond golang.org/x/sys/unix's names: what reading needs, and
// what a rule on a file (not a directory) may carry.
const (
	llRead       = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llFileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// landlockABI is the kernel's Landlock ABI version (0: none).
var landlockABI = sync.OnceValue(func() int {
	r, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0
	}
	return int(r)
})

// handledRights are the filesystem rights the kernel's ABI knows (up to
// ABI 5); a ruleset handles all of them, so anything not granted is
// denied.
func handledRights(abi int) uint64 {
	h := uint64(unix.LANDLOCK_ACCESS_FS_REFER - 1) // ABI 1: the rights below REFER
	if abi >= 2 {
		h |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		h |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		h |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return h
}

// systemReadDirs are read by luarocks, the interpreter, unzip, wget,
// curl and the compiler: programs, libraries, configuration (certificates,
// resolv.conf and where systemd and resolvconf put it), and the random
// devices. Not /proc: the host's /proc/<pid>/environ and cmdline are
// readable there (Landlock's ptrace scoping does not cover them), and
// their secrets would be copied into the tree; nor the rest of /dev
// (/dev/shm) and /run (/run/user), or /sys.
var systemReadDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
	"/run/systemd/resolve", "/run/resolvconf", "/dev/urandom", "/dev/random", "/dev/zero"}

// luarocksConfinement lists what a luarocks run may touch: write (and
// read) the dirs in rw, read the dirs in ro.
type luarocksConfinement struct {
	rw, ro []string
}

// confineThread confines the calling OS thread, and the processes it
// starts from now on, to c. The thread must be locked (LockOSThread) and
// never unlocked: Landlock cannot be lifted, so the thread must end with
// its goroutine. It reports whether Landlock is available.
func (c luarocksConfinement) confineThread() (bool, error) {
	abi := landlockABI()
	if abi < 1 {
		return false, nil
	}
	handled := handledRights(abi)
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	// Only the first field: a kernel of ABI 1-3 knows no other.
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr.Handled_access_fs), 0)
	if e != 0 {
		return true, fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	defer unix.Close(int(fd))
	add := func(path string, rights uint64) error {
		f, err := os.OpenFile(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil // a directory the system does not have
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && !st.IsDir() {
			rights &= llFileRights
		}
		rule := unix.LandlockPathBeneathAttr{Allowed_access: rights & handled, Parent_fd: int32(f.Fd())}
		if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_ADD_RULE, fd, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule))); e != 0 {
			return fmt.Errorf("landlock_add_rule %s: %w", path, e)
		}
		return nil
	}
	for _, d := range c.ro {
		if err := add(d, llRead); err != nil {
			return true, err
		}
	}
	for _, d := range c.rw {
		if err := add(d, handled); err != nil {
			return true, err
		}
	}
	if err := add(os.DevNull, unix.LANDLOCK_ACCESS_FS_READ_FILE|unix.LANDLOCK_ACCESS_FS_WRITE_FILE|unix.LANDLOCK_ACCESS_FS_TRUNCATE); err != nil {
		return true, err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return true, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); e != 0 {
		return true, fmt.Errorf("landlock_restrict_self: %w", e)
	}
	return true, nil
}

// confinement is what the luarocks run of e with private directory dir
// may touch: the tree and dir, read and written; the system's directories,
// the luarocks installation, the local repositories and the directories of
// the files named in pos (the rocks InstallLock fetched), read.
func (e *Env) confinement(dir string, repos []Repo, pos []string) luarocksConfinement {
	c := luarocksConfinement{rw: []string{e.Tree(), dir}}
	c.ro = append(c.ro, systemReadDirs...)
	if p, err := filepath.EvalSymlinks(e.m.luarocks); err == nil {
		// luarocks installed elsewhere (~/.luarocks, /usr/local): its prefix.
		c.ro = append(c.ro, filepath.Dir(filepath.Dir(p)))
	}
	for _, r := range repos {
		if d := r.localDir(); d != "" {
			c.ro = append(c.ro, d)
		}
	}
	for _, p := range pos {
		if filepath.IsAbs(p) {
			c.ro = append(c.ro, filepath.Dir(p))
		}
	}
	return c
}

// runConfined runs cmd confined to c on a thread of its own (see
// confineThread), with the resource limits of limitLuarocks.
func runConfined(cmd *exec.Cmd, c luarocksConfinement) error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: a confined thread must end with this goroutine.
		// (It also keeps Pdeathsig, which follows the starting thread.)
		runtime.LockOSThread()
		if confineLuarocks {
			ok, err := c.confineThread()
			if err != nil {
				done <- core.Wrap(core.ErrGeneric, "luarocks", "cannot confine luarocks", err)
				return
			}
			if !ok {
				landlockMissing.Do(func() {
					core.Logf(core.LevelWarn, "packages: Landlock is not available: luarocks runs unconfined (install only from repositories you trust)")
				})
			}
		}
		err := cmd.Start()
		if err == nil {
			limitLuarocks(cmd.Process.Pid)
			err = cmd.Wait()
		}
		done <- err
	}()
	return <-done
}

var landlockMissing sync.Once

// confineLuarocks is false only in tests of the defences that hold
// without the confinement (no compiler, accepted build types).
var confineLuarocks = true
