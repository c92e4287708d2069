package core

import (
	"fmt"
	"io"
	"strings"
)

// Options formatting: EngineConfig holds engine secrets (the "xcpng"
// engine's xcp_password and vm_password), so fmt must never print it. Every
// verb prints the fields below with EngineConfig replaced by its size.

// String prints the options like %+v, with EngineConfig redacted. A field
// added to Options must be added here too.
func (o Options) String() string {
	return fmt.Sprintf("core.Options{Engine: %q, Interpreter: %q, Persistent: %t, Limits: %+v, Name: %q, "+
		"PackagePath: %q, PackageCPath: %q, Trusted: %t, AllowedPaths: %q, ModuleRoots: %q, EngineConfig: %s}",
		o.Engine, o.Interpreter, o.Persistent, o.Limits, o.Name, o.PackagePath, o.PackageCPath,
		o.Trusted, o.AllowedPaths, o.ModuleRoots, redactedBytes(o.EngineConfig))
}

// GoString is String.
func (o Options) GoString() string { return o.String() }

// Format implements fmt.Formatter so that no verb reaches EngineConfig:
// %v, %+v, %#v and %s print String, %q the quoted String, any other verb
// %!verb(core.Options=String).
func (o Options) Format(f fmt.State, verb rune) { FormatRedacted(f, verb, "core.Options", o.String()) }

// redactedBytes describes secret bytes without showing them: "" when
// empty, else "[REDACTED n bytes]".
func redactedBytes(b []byte) string {
	if len(b) == 0 {
		return `""`
	}
	return fmt.Sprintf("[REDACTED %d bytes]", len(b))
}

// RedactUserinfo replaces the user information (user name, password,
// token) of a URL or of a "user:password@host" with mark, for messages:
// ("https://u:p@host/x@y", "***") gives "https://***@host/x@y". The
// authority counts, up to its first '/', '?' or '#': an '@' in the path,
// query or fragment stays. But a password holding one of those characters
// ("https://root:pa/ss@host") ends the authority early: when the authority
// has a ':' and no '@' while an '@' follows, everything up to the last '@'
// is the user information (a URL with a port and an '@' in its path shows
// less than it could; none shows a password).
func RedactUserinfo(s, mark string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	end := len(s)
	if i := strings.IndexAny(s[start:], "/?#"); i >= 0 {
		end = start + i
	}
	if i := strings.LastIndexByte(s[start:end], '@'); i >= 0 {
		return s[:start] + mark + s[start+i:]
	}
	if strings.IndexByte(s[start:end], ':') >= 0 {
		if i := strings.LastIndexByte(s[end:], '@'); i >= 0 {
			return s[:start] + mark + s[end+i:]
		}
	}
	return s
}

// FormatRedacted is the fmt.Formatter of a type whose String already hides
// its secrets: %v (any flags) and %s print s, %q prints it quoted, and any
// other verb prints %!verb(typeName=s), so that no verb formats the fields
// themselves.
func FormatRedacted(f fmt.State, verb rune, typeName, s string) {
	switch verb {
	case 'v', 's':
		io.WriteString(f, s)
	case 'q':
		fmt.Fprintf(f, "%q", s)
	default:
		fmt.Fprintf(f, "%%!%c(%s=%s)", verb, typeName, s)
	}
}
