//go:build linux

package core

import (
	"syscall"
	"unsafe"
)

// Prlimit sets resource limit res (syscall.RLIMIT_AS ...) of process pid,
// soft and hard, with prlimit(2): for the interpreters and the luarocks
// runs the library starts. A limit above the process's hard limit (which
// it inherited from this host: a job under "ulimit -v") is lowered to
// it: an unprivileged host cannot raise it (EPERM: no interpreter could
// start), and a privileged one must not loosen its own limit for a child.
func Prlimit(pid, res int, limit uint64) error {
	var old syscall.Rlimit
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(res), 0, uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		return e
	}
	limit = min(limit, old.Max)
	lim := syscall.Rlimit{Cur: limit, Max: limit}
	_, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(res), uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
