package core

import (
	"fmt"
	"sync/atomic"
)

// Log levels, the numbers of Python's logging module.
const (
	LevelDebug = 10
	LevelInfo  = 20
	LevelWarn  = 30
	LevelError = 40
)

type logSink struct {
	fn  func(level int, msg string)
	min int
}

var sink atomic.Pointer[logSink]

// SetLogger routes libbioxen's log lines to fn (nil: drop them). Lines
// below min are not formatted at all. The core never writes to stdout or
// stderr itself.
func SetLogger(fn func(level int, msg string), min int) {
	if fn == nil {
		sink.Store(nil)
		return
	}
	sink.Store(&logSink{fn: fn, min: min})
}

// LogEnabled reports whether a line at level would be delivered.
func LogEnabled(level int) bool {
	s := sink.Load()
	return s != nil && level >= s.min
}

// Logf formats and delivers a log line when its level is enabled.
func Logf(level int, format string, args ...any) {
	s := sink.Load()
	if s == nil || level < s.min {
		return
	}
	s.fn(level, fmt.Sprintf(format, args...))
}
