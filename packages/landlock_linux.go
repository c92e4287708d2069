//go:build linux

package packages

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
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
// those, the system's directories (programs, libraries, /etc) and the
// local repositories — not the user's home, nor /tmp. Without Landlock (an
// older kernel, or one built without it) it runs unconfined, and a debug
// line says so.

const (
	sysLandlockCreateRuleset = 444
	sysLandlockAddRule       = 445
	sysLandlockRestrictSelf  = 446

	landlockCreateRulesetVersion = 1
	landlockRulePathBeneath      = 1
	prSetNoNewPrivs              = 38
)

// Landlock's filesystem access rights (include/uapi/linux/landlock.h).
const (
	llExecute    = 1 << 0
	llWriteFile  = 1 << 1
	llReadFile   = 1 << 2
	llReadDir    = 1 << 3
	llRemoveDir  = 1 << 4
	llRemoveFile = 1 << 5
	llMakeChar   = 1 << 6
	llMakeDir    = 1 << 7
	llMakeReg    = 1 << 8
	llMakeSock   = 1 << 9
	llMakeFifo   = 1 << 10
	llMakeBlock  = 1 << 11
	llMakeSym    = 1 << 12
	llRefer      = 1 << 13 // ABI 2
	llTruncate   = 1 << 14 // ABI 3
	llIoctlDev   = 1 << 15 // ABI 5

	llRead = llExecute | llReadFile | llReadDir
	// The rights a rule on a file (not a directory) may carry.
	llFileRights = llExecute | llWriteFile | llReadFile | llTruncate | llIoctlDev
)

// landlockABI is the kernel's Landlock ABI version (0: none).
var landlockABI = sync.OnceValue(func() int {
	r, _, e := syscall.Syscall(sysLandlockCreateRuleset, 0, 0, landlockCreateRulesetVersion)
	if e != 0 {
		return 0
	}
	return int(r)
})

// handledRights are the access rights the kernel's ABI knows; a ruleset
// handles all of them, so anything not granted is denied.
func handledRights(abi int) uint64 {
	h := uint64(llExecute | llWriteFile | llReadFile | llReadDir | llRemoveDir | llRemoveFile | llMakeChar |
		llMakeDir | llMakeReg | llMakeSock | llMakeFifo | llMakeBlock | llMakeSym)
	if abi >= 2 {
		h |= llRefer
	}
	if abi >= 3 {
		h |= llTruncate
	}
	if abi >= 5 {
		h |= llIoctlDev
	}
	return h
}

// systemReadDirs are read by luarocks, the interpreter, unzip, wget,
// curl and the compiler: programs, libraries, configuration (certificates,
// resolv.conf), devices and process information.
var systemReadDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/run", "/proc", "/sys", "/dev", "/opt"}

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
	attr := handled // struct landlock_ruleset_attr { __u64 handled_access_fs; } (its first field)
	fd, _, e := syscall.Syscall(sysLandlockCreateRuleset, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return true, fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	defer syscall.Close(int(fd))
	add := func(path string, rights uint64) error {
		f, err := os.OpenFile(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil // a directory the system does not have
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && !st.IsDir() {
			rights &= llFileRights
		}
		// struct landlock_path_beneath_attr { __u64 allowed_access; __s32 parent_fd; } __attribute__((packed))
		var buf [12]byte
		*(*uint64)(unsafe.Pointer(&buf[0])) = rights & handled
		*(*int32)(unsafe.Pointer(&buf[8])) = int32(f.Fd())
		if _, _, e := syscall.Syscall6(sysLandlockAddRule, fd, landlockRulePathBeneath, uintptr(unsafe.Pointer(&buf[0])), 0, 0, 0); e != 0 {
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
	if err := add(os.DevNull, llReadFile|llWriteFile|llTruncate); err != nil {
		return true, err
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); e != 0 {
		return true, fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", e)
	}
	if _, _, e := syscall.Syscall(sysLandlockRestrictSelf, fd, 0, 0); e != 0 {
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
		if !confineLuarocks {
			// (tests of the other defences only)
		} else if ok, err := c.confineThread(); err != nil {
			done <- core.Wrap(core.ErrGeneric, "luarocks", "cannot confine luarocks", err)
			return
		} else if !ok {
			landlockMissing.Do(func() {
				core.Logf(core.LevelDebug, "packages: Landlock is not available: luarocks runs unconfined")
			})
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
