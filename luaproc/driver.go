package luaproc

import (
	_ "embed"
	"strconv"
	"strings"
)

// The driver source (close to 64 KiB) and the policy frame after it often
// do not fit in the pipe together, and the start ends at the driver's
// hello, sent before the driver reads the policy: Engine.Exec keeps the
// bytes not yet written. (Dropping them once hung ~4% of starts after a
// 1 KiB longer driver; TestPolicyBiggerThanThePipe and
// tests/python/test_packages.py::test_many_luajit_starts_stay_in_sync.)
//
//go:embed driver.lua
var driverSource []byte

// DriverChunkName is the chunk name the driver runs under; its frames show
// in Lua tracebacks as "[bioxen driver]:<line>".
const DriverChunkName = "=[bioxen driver]"

// DriverSource returns the Lua source of the driver (a copy).
func DriverSource() []byte { return append([]byte(nil), driverSource...) }

// RearmStubs is how many times the driver can re-arm the SIGINT handler of
// a Lua 5.x interpreter (lua.c installs it for each -e chunk, and a SIGINT
// spends it): the interpreter gets that many "-e bioxen_resume()"
// arguments after the bootstrap, one per re-arm. LuaJIT re-arms through
// its FFI and needs none. Past the last one, Interrupt does nothing on that
// interpreter.
const RearmStubs = 1024

// rearmStub is the -e chunk that calls back into the driver; the driver
// knows this text.
const rearmStub = "bioxen_resume()"

// Bootstrap returns the short Lua program given to the interpreter with
// -e. It opens inPath, reads one frame "B <len>\n<driver source>" from it,
// and runs the driver, which keeps reading frames from inPath and writes
// its frames to outPath. The host sends BootstrapFrame first.
func Bootstrap(inPath, outPath string) string {
	return `local f=assert(io.open(` + luaQuote(inPath) + `,"rb"))` +
		`local h=f:read("*l")` +
		`local n=tonumber(h and string.match(h,"^B (%d+)$"))` +
		`if not n then error("bioxen: bad bootstrap frame") end ` +
		`local fn=assert((loadstring or load)(f:read(n),` + luaQuote(DriverChunkName) + `))` +
		`fn(f,` + luaQuote(outPath) + `,` + strconv.Itoa(RearmStubs) + `)`
}

// Args returns the interpreter's arguments (without argv[0]): the
// bootstrap, then RearmStubs re-arm stubs.
func Args(inPath, outPath string) []string {
	args := make([]string, 0, 2+2*RearmStubs)
	args = append(args, "-e", Bootstrap(inPath, outPath))
	for i := 0; i < RearmStubs; i++ {
		args = append(args, "-e", rearmStub)
	}
	return args
}

// BootstrapFrame is the frame carrying the driver source, the first bytes
// the host sends.
func BootstrapFrame() []byte { return AppendFrame(nil, 'B', nil, driverSource) }

// luaQuote quotes s as a Lua string literal that every Lua version reads
// the same way (decimal escapes for anything but plain printable ASCII).
func luaQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('\\')
		b.WriteByte('0' + c/100)
		b.WriteByte('0' + c/10%10)
		b.WriteByte('0' + c%10)
	}
	b.WriteByte('"')
	return b.String()
}
