// Package core is libbioxen's execution contract: the options a VM is opened
// with, the request an engine runs, the result it gives back, the typed errors
// every layer (capi, Python) maps one to one, and the VM type that puts an
// engine behind a lock. Engines register themselves with Register when
// their package is imported: "embedded" (libbioxen/embedded, gopher-lua in
// the process), "process" (libbioxen/luaproc, a local interpreter) and
// "xcpng" (libbioxen/xcpng, the same driver over SSH in an XCP-ng VM).
// The package's examples show the calls a Go program makes.
package core

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// Code classifies an Error. The numeric values are part of the C ABI
// (BIOXEN_* in include/bioxen.h) and never change; new codes may be added.
type Code int

const (
	OK              Code = 0  // success
	ErrGeneric      Code = 1  // an error that fits no other code
	ErrInvalid      Code = 2  // a bad argument: empty code, NUL byte, bad option
	ErrBadHandle    Code = 3  // unknown or already closed handle
	ErrTimeout      Code = 4  // the call ran past its deadline
	ErrLuaNotFound  Code = 5  // the requested Lua interpreter is not installed
	ErrFileNotFound Code = 6  // a script file does not exist or cannot be read
	ErrEngine       Code = 7  // the engine failed: interpreter crashed, protocol broken
	ErrTooLarge     Code = 8  // source code over the VM's source-size limit
	ErrUnsupported  Code = 9  // a feature that is not available (yet) for this VM
	ErrNoMem        Code = 10 // a memory limit was hit
	ErrRange        Code = 11 // a caller-provided buffer is too small
	ErrClosed       Code = 12 // the VM was closed
	ErrAuth         Code = 13 // authentication was refused (XAPI login, SSH)
	ErrConnection   Code = 14 // a remote host could not be reached or the connection broke
	ErrHostKey      Code = 15 // an SSH host key is unknown or changed, or a TLS certificate is not trusted
	ErrCPULimit     Code = 16 // the call used up its CPU-time budget (Limits.MaxCPUTime)
)

var codeNames = map[Code]string{
	OK: "ok", ErrGeneric: "error", ErrInvalid: "invalid argument",
	ErrBadHandle: "bad handle", ErrTimeout: "timeout", ErrLuaNotFound: "lua not found",
	ErrFileNotFound: "file not found", ErrEngine: "engine failure", ErrTooLarge: "too large",
	ErrUnsupported: "unsupported", ErrNoMem: "out of memory", ErrRange: "buffer too small",
	ErrClosed: "closed", ErrAuth: "authentication failed", ErrConnection: "connection failed",
	ErrHostKey: "host key or certificate not trusted", ErrCPULimit: "cpu limit",
}

// String returns a short static description of the code.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", int(c))
}

// Error is the one error type libbioxen returns. Op names the operation
// ("exec", "open", ...), Msg says what went wrong for a person, Err is the
// wrapped cause (may be nil).
type Error struct {
	Code Code
	Op   string
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, op, format string, args ...any) *Error {
	return &Error{Code: code, Op: op, Msg: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error around a cause.
func Wrap(code Code, op, msg string, err error) *Error {
	return &Error{Code: code, Op: op, Msg: msg, Err: err}
}

// CodeOf returns the Code of err: OK for nil, the code of the first *Error
// in its chain, ErrGeneric otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ErrGeneric
}

// StrError is C's strerror text for errno ("No such file or directory"),
// as Lua's io functions report it: Go's text with its first letter
// capitalized, which is glibc's for the common errors.
func StrError(errno syscall.Errno) string {
	s := errno.Error()
	if s != "" {
		s = strings.ToUpper(s[:1]) + s[1:]
	}
	return s
}
