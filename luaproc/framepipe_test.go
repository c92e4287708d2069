//go:build linux

package luaproc

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

// TestFramePipeClosedByARunningInterpreter: an interpreter that closes
// its frame pipe and runs on (here LuaJIT through its FFI: plain Lua
// cannot close a descriptor) ends the call with ErrEngine at once, is
// killed and reaped, and the next call gets a new one. The error said it
// "died during the call (killed by signal killed)": the SIGKILL was the
// engine's own.
func TestFramePipeClosedByARunningInterpreter(t *testing.T) {
	if _, err := exec.LookPath("luajit"); err != nil {
		t.Skip("luajit not on PATH")
	}
	e := openEngine(t, "luajit", core.Limits{})
	pid := e.Pid()
	start := time.Now()
	_, err := execCode(e, `local ffi = require("ffi") ffi.cdef("int close(int);")
		for fd = 4, 63 do ffi.C.close(fd) end -- fd 4 and the driver's own handle on it
		while true do end`, execOpts{timeout: 20 * time.Second})
	ce := wantCode(t, err, core.ErrEngine)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the call ended after %v", d)
	}
	if !strings.Contains(ce.Msg, "closed its frame pipe") || strings.Contains(ce.Msg, "died") {
		t.Errorf("message %q", ce.Msg)
	}
	checkReaped(t, pid)
	if r := mustExec(t, e, "return 1 + 1", execOpts{}); string(r.Values) != "[2]" {
		t.Errorf("after: %s", r.Values)
	}
	// A real death still says so.
	pid = e.Pid()
	_, err = execCode(e, `local ffi = require("ffi") ffi.cdef("int kill(int, int); int getpid(void);")
		ffi.C.kill(ffi.C.getpid(), 11) while true do end`, execOpts{})
	ce = wantCode(t, err, core.ErrEngine)
	if !strings.Contains(ce.Msg, "died during the call (killed by signal segmentation fault)") {
		t.Errorf("message %q", ce.Msg)
	}
	checkReaped(t, pid)
}
