package main

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"libbioxen/core"
)

// Defect 4: size_t lengths were converted with C.int: 2^32+8 ran the first
// 8 bytes, 2^31 gave "internal error: gobytes: length out of range" with a
// Go stack trace, SIZE_MAX to bioxen_vm_exec a panic. Each length is now
// checked against the limit first (nothing past the real 8 bytes is read).
func TestLengthsAreNotTruncated(t *testing.T) {
	h, s := openTestSession(t)
	const code = "return 7"
	calls := map[string]func(n uint64) int{
		"bioxen_vm_exec":                  func(n uint64) int { return testExecN(h, code, n) },
		"bioxen_vm_exec_async":            func(n uint64) int { return testExecAsyncN(h, code, n) },
		"bioxen_session_execute":          func(n uint64) int { return testSessionExecuteN(s, code, n) },
		"bioxen_session_execute_async":    func(n uint64) int { return testSessionExecuteAsyncN(s, code, n) },
		"bioxen_session_send":             func(n uint64) int { return testSessionSendN(s, code, n) },
		"bioxen_packages":                 func(n uint64) int { return testPackagesN(`{"op":"envs"}`, n) },
		"bioxen_vm_exec (limit + 1)":      func(n uint64) int { return testExecN(h, code, 16<<20+1) },
		"bioxen_session_send (limit + 1)": func(n uint64) int { return testSessionSendN(s, code, 16<<20+1) },
	}
	for name, call := range calls {
		for _, n := range []uint64{1<<32 + 8, 1 << 31, 1<<31 - 1, 1<<63 + 8, math.MaxUint64} {
			st := call(n)
			msg := testErrmsg()
			if st != 8 {
				t.Errorf("%s, length %d: status %d (%s), want BIOXEN_E_TOOLARGE", name, n, st, msg)
			}
			if strings.Contains(msg, "goroutine") || strings.Contains(msg, "internal error") {
				t.Errorf("%s, length %d: message with a stack trace: %.200s", name, n, msg)
			}
		}
	}
	// The real length still works.
	if r, st := testExec(h, code, 0, 0); st != 0 || r.values != "[7]" {
		t.Errorf("exec: %d %+v", st, r)
	}
}

// Defect 7: millis multiplied by 1e6 in int64: 1<<62 ms became 0 (no wait)
// and exec timeouts of 2^64/1000 ms became a sub-millisecond deadline.
func TestMillisSaturates(t *testing.T) {
	for ms, want := range map[int64]time.Duration{
		-1: 0, 0: 0, 1: time.Millisecond, 1500: 1500 * time.Millisecond,
		maxMillis - 1: time.Duration(maxMillis-1) * time.Millisecond,
		maxMillis:     forever, 1 << 62: forever, math.MaxInt64: forever, 18446744073710: forever,
	} {
		if got := testMillis(ms); got != want || got < 0 {
			t.Errorf("millis(%d) = %v, want %v", ms, got, want)
		}
	}
	// For a call, a timeout past the clock's range is no limit.
	for ms, want := range map[int64]time.Duration{0: 0, -5: 0, 250: 250 * time.Millisecond, 1 << 62: 0, math.MaxInt64: 0} {
		if got := testExecTimeout(ms); got != want {
			t.Errorf("exec timeout %d ms = %v, want %v", ms, got, want)
		}
	}
	h, _ := testOpen("", "", false)
	defer testClose(h)
	if r, st := testExec(h, "local x = 0 for i = 1, 1e5 do x = x + i end return x", 18446744073710, 0); st != 0 || r.values != "[5000050000]" {
		t.Errorf("exec with a huge timeout: %d %s", st, testErrmsg())
	}
}

// bioxen_session_wait with a huge timeout waits (it returned at once).
func TestSessionWaitHugeTimeout(t *testing.T) {
	h, _ := testOpen("", "", true)
	defer testClose(h)
	s, _ := testSessionOpen(h)
	if st := testSessionSend(s, "local t = os.clock() while os.clock() - t < 0.2 do end"); st != 0 {
		t.Fatalf("send: %d", st)
	}
	if idle, st := testSessionWaitMS(s, 1<<62); st != 0 || idle != 1 {
		t.Errorf("wait(1<<62 ms): idle %d status %d", idle, st)
	}
	if idle, st := testSessionWaitMS(s, -1); st != 0 || idle != 1 {
		t.Errorf("wait(-1) on an idle session: idle %d status %d", idle, st)
	}
}

// Defect 8: os.exit(2^32) gave return_code 0 with success 0.
func TestExitCodeInCInt(t *testing.T) {
	h, _ := testOpen("", "", false)
	defer testClose(h)
	for code, want := range map[string]int{"os.exit(2^32)": math.MaxInt32, "os.exit(-2^40)": math.MinInt32, "os.exit(3)": 3, "os.exit(0)": 0} {
		r, st := testExec(h, code, 0, 0)
		if st != 0 {
			t.Fatalf("%s: %d %s", code, st, testErrmsg())
		}
		if r.rc != want || r.success != boolToInt(want == 0) {
			t.Errorf("%s: return_code %d success %d, want %d", code, r.rc, r.success, want)
		}
	}
}

// Defect 9: a session opened while its VM was being closed outlived it.
func TestSessionOpenRacingVMClose(t *testing.T) {
	base := testLive()
	h, _ := testOpen("", "", true)
	closed := make(chan int, 1)
	sessionOpenHook = func() {
		// The session exists, not yet registered: the VM closes now.
		closed <- testClose(h)
	}
	defer func() { sessionOpenHook = nil }()
	s, st := testSessionOpen(h)
	if st != 12 || s != 0 {
		t.Errorf("open during close: status %d handle %d (%s), want BIOXEN_E_CLOSED", st, s, testErrmsg())
	}
	if st := <-closed; st != 0 {
		t.Errorf("close: %d", st)
	}
	sessionOpenHook = nil
	if n := testLive(); n != base {
		t.Errorf("%d handles left", n-base)
	}

	// And undirected, many times: no session outlives its VM.
	for i := 0; i < 200; i++ {
		h, _ := testOpen("", "", true)
		var wg sync.WaitGroup
		var s uint64
		var st int
		wg.Add(1)
		go func() { defer wg.Done(); s, st = testSessionOpen(h) }()
		testClose(h)
		wg.Wait()
		if st == 0 {
			if st := testSessionClose(s); st != 3 {
				t.Fatalf("round %d: session %d outlived its closed VM (close: %d)", i, s, st)
			}
		} else if st != 3 && st != 12 {
			t.Fatalf("round %d: open status %d %s", i, st, testErrmsg())
		}
	}
	if n := testLive(); n != base {
		t.Errorf("%d handles left", n-base)
	}
}

// Defect 3 through the C ABI: bioxen_vm_close while bioxen_vm_exec runs a
// chunk without a timeout returns, and the exec fails with BIOXEN_E_CLOSED.
func TestVMCloseWhileExecRuns(t *testing.T) {
	h, _ := testOpen("", "", false)
	s, _ := testOpen("", "", true) // a second VM to see that the first runs
	defer testClose(s)
	done := make(chan int, 1)
	go func() {
		_, st := testExec(h, "while true do end", 0, 0)
		done <- st
	}()
	// The exec holds the VM: wait until a timed call times out waiting.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, st := testExec(h, "return 1", 50, 0)
		if st == 4 && strings.Contains(testErrmsg(), "waited for the VM") || time.Now().After(deadline) {
			break
		}
	}
	closed := make(chan int, 1)
	go func() { closed <- testClose(h) }()
	select {
	case st := <-closed:
		if st != 0 {
			t.Errorf("close: %d %s", st, testErrmsg())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("bioxen_vm_close did not return")
	}
	select {
	case st := <-done:
		if st != 12 {
			t.Errorf("the running exec: status %d, want BIOXEN_E_CLOSED", st)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the running exec did not end")
	}
}

// Defect 1 through the C ABI: devices and FIFOs are BIOXEN_E_INVALID at once.
func TestExecFileNonRegular(t *testing.T) {
	h, _ := testOpen("", "", false)
	defer testClose(h)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", fifo} {
		done := make(chan int, 1)
		go func() { done <- testExecFile(h, p, 1000) }()
		select {
		case st := <-done:
			if st != 2 {
				t.Errorf("%s: status %d (%s), want BIOXEN_E_INVALID", p, st, testErrmsg())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: exec_file did not return", p)
		}
	}
	script := filepath.Join(t.TempDir(), "s.lua")
	if err := os.WriteFile(script, []byte("return 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := testExecFile(h, script, 1000); st != 0 {
		t.Errorf("regular file: %d %s", st, testErrmsg())
	}
}

// bioxen_remote's "timeout" of 1e19 seconds (or anything past a
// time.Duration) overflowed to a negative duration: the call failed at once
// with BIOXEN_E_TIMEOUT "deadline exceeded". It now has no deadline.
func TestRemoteHugeTimeout(t *testing.T) {
	for _, secs := range []float64{1e19, 9.3e9, math.MaxFloat64, 9.2e9, 1} {
		ctx, cancel := (&remoteRequest{TimeoutSeconds: secs}).ctx()
		if err := ctx.Err(); err != nil {
			t.Errorf("timeout %g s: context already ended: %v", secs, err)
		}
		if dl, ok := ctx.Deadline(); ok && !dl.After(time.Now()) {
			t.Errorf("timeout %g s: deadline %v is not in the future", secs, dl)
		}
		cancel()
	}
}

// bioxen_session_execute_async refuses empty code or a NUL byte at once,
// as bioxen_vm_exec_async does (header: "otherwise a status as
// bioxen_vm_exec, and done is not called"); it returned BIOXEN_OK and
// reported BIOXEN_E_INVALID through done.
func TestSessionExecuteAsyncRefusesBadCode(t *testing.T) {
	h, s := openTestSession(t)
	for _, code := range []string{"", "  \n", "return 1\x00"} {
		if st := testSessionExecuteAsyncN(s, code, uint64(len(code))); st != 2 {
			t.Errorf("%q: status %d, want BIOXEN_E_INVALID", code, st)
		}
		if st := testExecAsyncN(h, code, uint64(len(code))); st != 2 {
			t.Errorf("vm_exec_async %q: status %d, want BIOXEN_E_INVALID", code, st)
		}
	}
}

// An XAPI call logs out within its own deadline: the logout had a context
// of its own and took up to 60 s more than a timeout of 1 s when the
// server stalled it (found by review, red team).
func TestRemoteLogoutKeepsTheDeadline(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "session.logout") {
			select { // stalled until the client gives up
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		_, _ = io.WriteString(w, `<?xml version="1.0"?><methodResponse><params><param><value><struct>`+
			`<member><name>Status</name><value>Success</value></member>`+
			`<member><name>Value</name><value>OpaqueRef:1234</value></member></struct></value></param></params></methodResponse>`)
	}))
	defer srv.Close()
	defer close(stop)
	start := time.Now()
	_, err := runRemote(&remoteRequest{Op: "xapi_login", URL: srv.URL, Username: "root", Password: "pw",
		AllowLoopbackIP: true, TimeoutSeconds: 1})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a call with a timeout of 1 s took %v (%v)", took, err)
	}
}

// Found by review (red team) of the C ABI: bioxen_vm_options of size
// SIZE_MAX was accepted (and a newer layout's unknown fields silently
// dropped); bioxen_set_interrupt_fd(-5) removed the setting; session_wait
// on a closed handle left *idle_out as it was; bioxen_remote with a
// misspelt op logged in first.
func TestCABIArgumentChecks(t *testing.T) {
	known := testOptionsSize()
	for _, c := range []struct {
		size  uintptr
		extra byte
		ok    bool
	}{{known, 0, true}, {known + 16, 0, true}, {known + 16, 1, false}, {maxOptionsSize + 8, 0, false},
		// Older layouts, and sizes that end inside a field or between
		// two fields of one version (found by review: cpu_limit_ms and
		// max_memory_bytes were silently dropped for known-4).
		{optionsLayouts[0], 0, true}, {optionsLayouts[4], 0, true},
		{known - 4, 0, false}, {known - 8, 0, false}, {optionsLayouts[0] + 8, 0, false}, {optionsLayouts[0] + 1, 0, false},
		// size not set: under the oldest layout, as bioxen.h says (it was
		// read as this version's layout, past an older caller's struct).
		{0, 0, false}} {
		h, st := testOpenSized(c.size, c.extra)
		if (st == 0) != c.ok || (st != 0 && st != 2) {
			t.Errorf("options size %d (extra %d): status %d %s", c.size, c.extra, st, testErrmsg())
		}
		if h != 0 {
			testClose(h)
		}
	}
	for _, fd := range []int{-5, math.MinInt32} {
		if st := testSetInterruptFd(fd); st != 2 {
			t.Errorf("set_interrupt_fd(%d): status %d", fd, st)
		}
	}
	h, _ := testOpen("", "", true)
	defer testClose(h)
	s, _ := testSessionOpen(h)
	testSessionClose(s)
	if idle, st := testSessionWaitIdle(s); idle != 0 || st == 0 {
		t.Errorf("wait on a closed session: idle %d status %d", idle, st)
	}
	var logins atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { logins.Add(1) }))
	defer srv.Close()
	_, err := runRemote(&remoteRequest{Op: "xapi_vm", URL: srv.URL, Username: "root", Password: "pw", AllowLoopbackIP: true, TimeoutSeconds: 5})
	if core.CodeOf(err) != core.ErrInvalid || logins.Load() != 0 {
		t.Errorf("misspelt op: %v, %d requests", err, logins.Load())
	}
}

// Async calls on a VM, or on a session, run in the order they were made:
// each was queued from a goroutine of its own, so 50 of them ran as the
// scheduler chose ("23 49 24 25 ... 10 0 1"; found by review, red team).
func TestAsyncCallsRunInOrder(t *testing.T) {
	h, st := testOpen("", "", true)
	if st != 0 {
		t.Fatalf("open: %d %s", st, testErrmsg())
	}
	defer testClose(h)
	s, _ := testSessionOpen(h)
	defer testSessionClose(s)
	testExec(h, "vm_order, session_order = {}, {}", 0, 0)
	var want []string
	for i := 0; i < 50; i++ {
		want = append(want, fmt.Sprint(i))
		code := fmt.Sprintf("vm_order[#vm_order + 1] = %d", i)
		if st := testExecAsyncN(h, code, uint64(len(code))); st != 0 {
			t.Fatalf("exec_async: %d", st)
		}
		code = fmt.Sprintf("session_order[#session_order + 1] = %d", i)
		if st := testSessionExecuteAsyncN(s, code, uint64(len(code))); st != 0 {
			t.Fatalf("session_execute_async: %d", st)
		}
	}
	// Each check is a call of its own (the async calls run between them).
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, _ := testExec(h, "return table.concat(vm_order, ' '), table.concat(session_order, ' ')", 0, 0)
		got := fmt.Sprintf(`[%q,%q]`, strings.Join(want, " "), strings.Join(want, " "))
		if r != nil && r.values == got {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("order after 20 s: %v", r)
		}
	}
}

// bioxen_session_execute with a NULL code returned BIOXEN_E_INVALID but
// left *result_out as it was, where bioxen_vm_exec (whose rules it has)
// sets it to NULL on every failure: a caller freeing it freed garbage.
func TestSessionExecuteNullCodeClearsResult(t *testing.T) {
	_, s := openTestSession(t)
	if cleared, st := testSessionExecuteNull(s); st != 2 || !cleared {
		t.Errorf("session_execute(NULL code): status %d, *result_out cleared %v", st, cleared)
	}
}

// bioxen_packages, bioxen_remote and bioxen_vm_install_package with a NULL
// request returned BIOXEN_E_INVALID but left *response_out and
// *response_len as they were (every other failure clears them).
func TestJSONCallsNullRequestClearOut(t *testing.T) {
	h, st := testOpen("", "", false)
	if st != 0 {
		t.Fatalf("open: %d %s", st, testErrmsg())
	}
	defer testClose(h)
	cleared, status := testJSONNullRequest(h)
	for i, name := range []string{"bioxen_packages", "bioxen_remote", "bioxen_vm_install_package"} {
		if status[i] != 2 || !cleared[i] {
			t.Errorf("%s(NULL request): status %d, out-parameters cleared %v", name, status[i], cleared[i])
		}
	}
}

// An internal panic in an async call reaches its done callback as
// BIOXEN_E_GENERIC with the panic's message, built where it was recovered
// (it was read back from the OS thread's error slot by a second cgo call,
// which the goroutine may make from another thread: then "" or another
// call's message; found by review, not reproducible on demand).
func TestDeliverReportsAPanic(t *testing.T) {
	status, msg := testDeliverPanic("boom-7781")
	if status != int(core.ErrGeneric) || !strings.Contains(msg, "internal error: boom-7781") {
		t.Fatalf("status %d, message %q", status, msg)
	}
}

// openTestSession opens a persistent embedded VM and a session on it, both
// closed when the test ends.
func openTestSession(t *testing.T) (vm, session uint64) {
	t.Helper()
	h, st := testOpen("", "", true)
	if st != 0 {
		t.Fatalf("open: %d %s", st, testErrmsg())
	}
	t.Cleanup(func() { testClose(h) })
	s, st := testSessionOpen(h)
	if st != 0 {
		t.Fatalf("session: %d %s", st, testErrmsg())
	}
	t.Cleanup(func() { testSessionClose(s) })
	return h, s
}
