package sshsession

import (
	"math"
	"strconv"
	"strings"
	"time"

	"libbioxen/core"
)

// ShellQuote returns s as one POSIX shell word: the whole string inside
// single quotes, each single quote in s replaced by the four characters
//
//	'\''
//
// (close the quote, an escaped quote, reopen). Inside single quotes a POSIX
// shell gives no character a special meaning ($, `, \, ", newlines and glob
// characters all stay literal), so the word evaluates to exactly s. A NUL
// byte cannot be passed through a shell (or an exec request) and is
// rejected with an ErrInvalid error.
func ShellQuote(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", core.Errorf(core.ErrInvalid, "ssh", "command contains a NUL byte")
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// RemoteKillWrap wraps cmd so that the remote process tree cannot outlive
// timeout, even when the SSH connection is lost and no signal can reach it:
//
//	exec timeout -s KILL <secs> sh -c '<cmd>'
//
// secs is timeout rounded up to whole seconds (at least 1). The login shell
// execs timeout(1) (GNU coreutils; busybox has a compatible applet), which
// runs cmd under sh -c and, when the time is up, sends SIGKILL to cmd's
// whole process group. cmd is quoted with ShellQuote, so the login shell
// passes it to sh -c byte for byte: quotes, $(...), backticks, newlines and
// glob characters are not interpreted by the login shell. The login shell
// must be POSIX-like (sh, bash, dash, zsh, ksh); csh and fish quote
// differently.
//
// A NUL byte in cmd or a timeout <= 0 is an ErrInvalid error.
func RemoteKillWrap(cmd string, timeout time.Duration) (string, error) {
	if timeout <= 0 {
		return "", core.Errorf(core.ErrInvalid, "ssh", "remote kill timeout must be positive, got %v", timeout)
	}
	q, err := ShellQuote(cmd)
	if err != nil {
		return "", err
	}
	secs := int64(math.Ceil(timeout.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return "exec timeout -s KILL " + strconv.FormatInt(secs, 10) + " sh -c " + q, nil
}
