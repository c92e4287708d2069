package core

import (
	"context"
	"time"
)

// Limits bound what one call may consume. Zero fields take the defaults
// below; they are per call unless said otherwise.
type Limits struct {
	// MaxSourceBytes refuses code (or a script file) larger than this with
	// ErrTooLarge before anything runs. Default 16 MiB.
	MaxSourceBytes int
	// MaxOutputBytes caps what one call keeps of stdout and of stderr
	// (each). Past the cap bytes are dropped and counted, and the stream
	// ends with TruncationMarker. Default 8 MiB.
	MaxOutputBytes int
	// MaxValueDepth is the deepest table nesting converted into returned
	// values; deeper tables become an opaque "<depth limit>" marker.
	// Default 64.
	MaxValueDepth int
	// MaxValueBytes caps the encoded size of the returned values; past it the
	// remaining values are replaced by an opaque "<size limit>" marker.
	// Default 16 MiB.
	MaxValueBytes int
	// MaxMemoryBytes bounds the memory of the VM (not just one call). The
	// embedded engine accounts the Lua values its state holds (see
	// docs/sandbox.md, "Memory"); the process engine sets the interpreter's
	// address-space limit (RLIMIT_AS). Past it the call ends with ErrNoMem
	// and the VM's Lua state is reset. Default 1 GiB; negative: no limit.
	MaxMemoryBytes int64
	// MaxCPUTime bounds the CPU time one call may use, distinct from its
	// wall-clock timeout: a call waiting on I/O or on a busy machine does
	// not use it up, and pcall, error handlers, coroutines and metamethods
	// cannot escape it. Past it the call ends with ErrCPULimit. 0: no limit.
	MaxCPUTime time.Duration
}

// Default limits.
const (
	DefaultMaxSourceBytes = 16 << 20
	DefaultMaxOutputBytes = 8 << 20
	DefaultMaxValueDepth  = 64
	DefaultMaxValueBytes  = 16 << 20
	DefaultMaxMemoryBytes = 1 << 30
)

// WithDefaults returns l with zero fields replaced by the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxSourceBytes <= 0 {
		l.MaxSourceBytes = DefaultMaxSourceBytes
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if l.MaxValueDepth <= 0 {
		l.MaxValueDepth = DefaultMaxValueDepth
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = DefaultMaxValueBytes
	}
	if l.MaxMemoryBytes == 0 {
		l.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	return l
}

// Options open a VM.
type Options struct {
	// Engine names the engine: "embedded" (gopher-lua in process, the
	// default) or "process" (a real Lua interpreter as a child process).
	Engine string
	// Interpreter is the executable the process engine runs ("lua5.4",
	// "luajit", a path ...). Default "lua".
	Interpreter string
	// Persistent keeps globals across calls. When false every call starts
	// from a clean Lua environment.
	Persistent bool
	// Limits bound each call.
	Limits Limits
	// Name labels the VM in log lines.
	Name string
	// PackagePath and PackageCPath are put in front of the interpreter's
	// package.path and package.cpath (";"-separated templates), so `require`
	// finds a package environment's modules. Empty: the defaults only.
	PackagePath  string
	PackageCPath string
	// Trusted turns the sandbox off: the engine's whole standard library
	// (os.execute, io.popen, file access anywhere, debug ...) is available.
	// The default (false) is the sandbox of docs/sandbox.md.
	Trusted bool
	// AllowedPaths are directories sandboxed code may read and write
	// (io.open, dofile, loadfile); the package environment's directories are
	// always readable, and writable only when listed here.
	AllowedPaths []string
	// ModuleRoots are directories sandboxed `require` may load Lua modules
	// from (anywhere below them, e.g. every package environment), in
	// addition to the directories of PackagePath and AllowedPaths.
	ModuleRoots []string
	// EngineConfig is engine-specific configuration as a JSON object (the
	// "xcpng" engine's XAPI and SSH settings).
	EngineConfig []byte
}

// Request is one chunk for an engine to run.
type Request struct {
	// Code is the Lua source text. An engine reads it during Exec only:
	// it may be the caller's memory (the C ABI passes a view of the C
	// buffer), so work that outlives the call copies it.
	Code []byte
	// ChunkName is Lua's chunk name: "=input" for strings, "@path" for files.
	ChunkName string
	// Fresh runs the chunk in a clean environment; set from !Persistent.
	Fresh bool
	// PrintResults prints the chunk's returned values to stdout the way the
	// Lua 5.4 REPL does (tostring of each, tab separated, one line).
	PrintResults bool
	// REPL runs Code like one input of the standalone interpreter's
	// interactive mode: "=expr" means "return expr"; Code is first tried as
	// "return <Code>" (printing the values); if Code is an incomplete chunk
	// (its syntax error is at <eof>) nothing runs and Result.Incomplete is
	// set, so the caller can wait for more input.
	REPL bool
	// Output, when set, receives the chunk's output as it is produced, in
	// order, in addition to the Result's captures. It is called on the
	// goroutine running the chunk and must not block for long; p is only
	// valid during the call (an engine may reuse its memory).
	Output func(stream Stream, p []byte)
}

// Stream names an output stream.
type Stream int

// The output streams.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

// Interrupter is implemented by engines that can stop the running chunk from
// another goroutine while keeping the Lua state. The chunk ends with a Lua
// error ("interrupted"); if it does not stop within a grace period the engine
// may give its state up. Interrupt may come just before the engine's Exec
// is ready for it; Exec then checks InterruptRequested on its context.
type Interrupter interface {
	Interrupt()
}

// Result is what one call produced. A Lua error (syntax or runtime) is a
// Result with Success false, not a Go error.
type Result struct {
	Stdout     []byte
	Stderr     []byte
	ReturnCode int  // 0 on success, 1 on a Lua error, n after os.exit(n)
	Success    bool // ReturnCode == 0
	// Values holds the returned values as a JSON array in the encoding
	// documented in docs/values.md (see ValueEncoder).
	Values []byte
	// ErrorMessage is the Lua error message without traceback when
	// Success is false because of a Lua error ("" otherwise).
	ErrorMessage string
	// Truncated reports that stdout or stderr hit MaxOutputBytes.
	Truncated bool
	// Incomplete reports, for a REPL request, that Code is not a complete
	// chunk yet; nothing ran.
	Incomplete bool
}

// Engine runs chunks. An Engine is used by one goroutine at a time (VM holds
// a lock); Exec must honour ctx's deadline and return an *Error with
// ErrTimeout when it passes, leaving the engine usable for the next call.
type Engine interface {
	Exec(ctx context.Context, req *Request) (*Result, error)
	// Close releases everything; calling it twice is harmless.
	Close() error
}

// Factory opens an engine with the given (defaulted) options.
type Factory func(opts Options) (Engine, error)

var factories = map[string]Factory{}

// Register makes an engine available under name. Engines call it from init.
func Register(name string, f Factory) { factories[name] = f }

// Engines lists the registered engine names.
func Engines() []string {
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	return names
}

// TimeoutGrace is how long past a deadline an engine may take to stop a
// chunk before it gives the engine up (kills the process, drops the state).
const TimeoutGrace = 20 * time.Millisecond

// TruncationMarker ends an output stream that hit MaxOutputBytes; %d is the
// number of bytes dropped.
const TruncationMarker = "\n[bioxen: output truncated, %d bytes dropped]\n"
