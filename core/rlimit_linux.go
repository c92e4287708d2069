//go:build linux

package core

import "golang.org/x/sys/unix"

// Prlimit sets resource limit res (unix.RLIMIT_AS ...) of process pid,
// soft and hard, with prlimit(2): for the interpreters and the luarocks
// runs the library starts.
func Prlimit(pid, res int, limit uint64) error {
	return unix.Prlimit(pid, res, &unix.Rlimit{Cur: limit, Max: limit}, nil)
}
