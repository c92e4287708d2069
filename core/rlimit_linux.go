//go:build linux

package core

import (
	"syscall"
	"unsafe"
)

// Prlimit sets resource limit res (syscall.RLIMIT_AS ...) of process pid,
// soft and hard, with prlimit(2): for the interpreters and the luarocks
// runs the library starts.
func Prlimit(pid, res int, limit uint64) error {
	lim := syscall.Rlimit{Cur: limit, Max: limit}
	_, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(res), uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
