//go:build linux

package luaproc

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"libbioxen/core"
)

// The Linux calls the engine needs beyond package syscall.

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn  = 0x1
	pollOut = 0x4
)

// ppoll waits for events on fds until timeout (nil: no limit).
func ppoll(fds []pollFd, timeout *syscall.Timespec) (int, error) {
	var p unsafe.Pointer
	if len(fds) > 0 {
		p = unsafe.Pointer(&fds[0])
	}
	r, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(p), uintptr(len(fds)), uintptr(unsafe.Pointer(timeout)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// sysPidfdOpen is pidfd_open(2), the same number on every Linux
// architecture (Linux 5.3+).
const sysPidfdOpen = 434

// pidfdOpen returns a close-on-exec descriptor that becomes readable when
// process pid exits.
func pidfdOpen(pid int) (int, error) {
	r, _, e := syscall.RawSyscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// prlimitSoft sets only the soft limit of resource res of process pid (an
// unprivileged process may move it anywhere up to the hard limit, which it
// could only lower).
func prlimitSoft(pid, res int, limit uint64) error {
	var old syscall.Rlimit
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(res), 0, uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		return e
	}
	lim := syscall.Rlimit{Cur: min(limit, old.Max), Max: old.Max}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(res), uintptr(unsafe.Pointer(&lim)), 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// processCPU is the CPU time process pid has used (user + system, its
// threads, not its children), read from its CPU-time clock.
func processCPU(pid int) (time.Duration, error) {
	clock := int32(^pid)<<3 | 2 // MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
	var ts syscall.Timespec
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, e
	}
	return time.Duration(ts.Nano()), nil
}

// sigintCaught reports whether process pid has a handler for SIGINT
// (bit 1 of SigCgt in /proc/pid/status); ok is false when it cannot tell.
func sigintCaught(pid int) (caught, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if hex, found := strings.CutPrefix(line, "SigCgt:"); found {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				return false, false
			}
			return mask&(1<<(syscall.SIGINT-1)) != 0, true
		}
	}
	return false, false
}

// threadCPU is the CPU time the calling OS thread has used (the caller
// keeps its goroutine on the thread: runtime.LockOSThread).
func threadCPU() time.Duration {
	const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID
	var ts syscall.Timespec
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// fdSlack is added to the highest descriptor number found open, for
// descriptors that another thread of the host opens while a start lists
// them.
const fdSlack = 64

// fdMoves is how many descriptors Go's fork moves above the child's file
// list before it execs (its error pipe and files whose number is below
// their slot): they must fit under the descriptor limit.
const fdMoves = 8

// highestFD is the highest descriptor number the child of a start must
// close: the highest open in this process (from /proc/self/fd) plus
// fdSlack, or 1024 when the list cannot be read; in any case below the
// soft RLIMIT_NOFILE less fdMoves. Go's fork moves its error pipe to the
// first number after the list, which fails (EBADF, "cannot run lua
// interpreter") at or past the limit: a host with a descriptor near its
// limit, or running under valgrind (whose own descriptors lie above the
// limit it shows), could start no interpreter.
func highestFD() int {
	high := 1024
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		high = 0
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil && n > high {
				high = n
			}
		}
		high += fdSlack
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(high)+fdMoves+1 {
		high = max(int(lim.Cur)-fdMoves-1, 0)
	}
	return high
}

// startProcess starts processes from one OS thread that lives as long as
// this process. Pdeathsig kills a child when the thread that forked it
// exits, not the process: forked from a caller's thread (a C or Python
// thread that ends later), interpreters would die early; forked from no
// thread in particular, an interpreter looping in a chunk would outlive a
// host that died without closing its VMs.
func startProcess(path string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	spawnOnce.Do(func() { go spawner() })
	job := spawnJob{path: path, argv: argv, attr: attr, done: make(chan spawnResult, 1)}
	spawnJobs <- job
	r := <-job.done
	return r.p, r.err
}

type spawnJob struct {
	path string
	argv []string
	attr *os.ProcAttr
	done chan spawnResult
}

type spawnResult struct {
	p   *os.Process
	err error
}

var (
	spawnOnce sync.Once
	spawnJobs = make(chan spawnJob)
)

func spawner() {
	runtime.LockOSThread() // never unlocked: the thread lives as long as the process
	for job := range spawnJobs {
		p, err := os.StartProcess(job.path, job.argv, job.attr)
		job.done <- spawnResult{p, err}
	}
}

// Opens held for the driver (K frames, docs/protocol.md). A sandboxed
// driver without the FFI (Lua 5.1-5.4) cannot open a file without
// following symbolic links: the host takes hold of it instead, and the
// driver opens it through /proc/<host pid>/fd/<n>, which leads to that
// very file whatever its name has become.

// How the driver will open a file it asks the host to hold: the bits of
// the K frame's second field.
const (
	holdCreate = 1 // the mode creates a missing file ("w", "a")
	holdUpdate = 2 // "+": read and write
	holdExcl   = 4 // "x" (glibc): the file must not exist
)

// heldFile is a descriptor held for the driver. With restore set, mode is
// the mode a file made for it is to have once the driver has opened it
// (see holdFile).
type heldFile struct {
	fd      int
	restore bool
	mode    uint32
}

// release gives a file made for the driver its mode and closes fd.
func (h heldFile) release() {
	if h.restore {
		unix.Fchmod(h.fd, h.mode)
	}
	unix.Close(h.fd)
}

// holdFile takes hold of file p (absolute, its links resolved by the
// driver's L frame and checked against the allowed directories) following
// no symbolic link in any component (openat2, RESOLVE_NO_SYMLINKS): an
// O_PATH descriptor, or, when p does not exist and how creates it, a new
// regular file (O_CREAT|O_EXCL, mode 0666 less the umask; one made
// meanwhile by another process is taken hold of instead). The descriptor
// is close-on-exec, so no other child inherits it.
//
// The driver's open through /proc checks the file's mode, which fopen
// does not for a file it creates: under a umask that takes the owner's
// read or write bit away (0277), the new file could not be opened for
// writing. Such a file gets them until it is released.
func holdFile(p string, how int64) (heldFile, error) {
	fd, made, err := holdPath(p, how)
	if err != nil || !made {
		return heldFile{fd: fd}, err
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		if m := st.Mode & 0o7777; m&0o600 != 0o600 && unix.Fchmod(fd, m|0o600) == nil {
			return heldFile{fd: fd, restore: true, mode: m}, nil
		}
	}
	return heldFile{fd: fd}, nil
}

// holdPath is holdFile's descriptor; made says whether it made the file.
func holdPath(p string, how int64) (fd int, made bool, err error) {
	if !filepath.IsAbs(p) || strings.IndexByte(p, 0) >= 0 || len(p) > 4096 {
		return -1, false, unix.EINVAL
	}
	open := func(flags int) (int, error) {
		oh := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_NO_SYMLINKS}
		if flags&unix.O_CREAT != 0 {
			oh.Mode = 0o666
		}
		for {
			fd, err := unix.Openat2(unix.AT_FDCWD, p, &oh)
			if err != unix.EINTR {
				return fd, err
			}
		}
	}
	write := unix.O_WRONLY
	if how&holdUpdate != 0 {
		write = unix.O_RDWR
	}
	err = unix.EEXIST
	for range 100 {
		if fd, err = open(unix.O_PATH); err == nil {
			if how&holdExcl != 0 {
				unix.Close(fd)
				return -1, false, unix.EEXIST
			}
			return fd, false, nil
		}
		if err != unix.ENOENT || how&holdCreate == 0 {
			return -1, false, err
		}
		if fd, err = open(write | unix.O_CREAT | unix.O_EXCL); err == nil {
			return fd, true, nil
		}
		if err != unix.EEXIST || how&holdExcl != 0 {
			return -1, false, err
		}
	}
	return -1, false, err
}

// canHold reports whether a driver can open what holdFile holds: openat2
// works here (Linux 5.6+, no seccomp filter refusing it), and this process
// is dumpable, so that its children may open /proc/<pid>/fd/<n> (a
// process that changed its credentials is not).
func canHold() bool {
	if !openat2Works() {
		return false
	}
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return err == nil && d == 1
}

var openat2Works = sync.OnceValue(func() bool {
	h, err := holdFile("/", 0)
	if err != nil {
		return false
	}
	h.release()
	_, err = os.Stat("/proc/" + strconv.Itoa(os.Getpid()) + "/fd")
	return err == nil
})

// heldAnswer is the host's answer to K frame seq: "K <seq> <pid> <fd>", or
// "K <seq> - <errno> <hex of the C library's message>".
func heldAnswer(seq int64, pid, fd int, err error) []byte {
	if err == nil {
		return fmt.Appendf(nil, "K %d %d %d\n", seq, pid, fd)
	}
	errno, ok := err.(unix.Errno)
	if !ok {
		errno = unix.EIO
	}
	return fmt.Appendf(nil, "K %d - %d %s\n", seq, int(errno), hex.EncodeToString([]byte(core.StrError(errno))))
}
