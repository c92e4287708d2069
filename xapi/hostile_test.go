package xapi

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"libbioxen/core"
	"libbioxen/xapi/sim"
)

// Tests against hostile or broken servers: each answers every request with
// a fixed document.

const hostilePassword = "S3cretPassw0rd-hostile"

func hostileServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, body)
	}
}

func hostileClient(t *testing.T, url string, mod ...func(*Options)) *Client {
	t.Helper()
	o := Options{URL: url, Username: "root", Password: hostilePassword, CallTimeout: 30 * time.Second}
	for _, m := range mod {
		m(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rpcResult wraps a <value> in a methodResponse.
func rpcResult(value string) string {
	return `<?xml version="1.0"?><methodResponse><params><param>` + value + `</param></params></methodResponse>`
}

func failureResult(desc ...string) string {
	var b strings.Builder
	for _, d := range desc {
		b.WriteString("<value>" + d + "</value>")
	}
	return rpcResult(`<value><struct><member><name>Status</name><value>Failure</value></member>` +
		`<member><name>ErrorDescription</name><value><array><data>` + b.String() + `</data></array></value></member></struct></value>`)
}

// checkHostileError checks that err is a *core.Error that shows neither
// the password nor more than maxLen bytes, in any format.
func checkHostileError(t *testing.T, err error, password string, maxLen int) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var ce *core.Error
	if !errors.As(err, &ce) {
		t.Errorf("%T is not a *core.Error: %.300v", err, err)
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", FailureOf(err))} {
		if strings.Contains(s, password) {
			t.Errorf("the password leaked: %.300s", s)
		}
	}
	if n := len(err.Error()); n > maxLen {
		t.Errorf("error of %d bytes: %.300s", n, err)
	}
}

func TestFaultStringScrubbed(t *testing.T) {
	t.Parallel()
	s := hostileServer(t, answer(`<?xml version="1.0"?><methodResponse><fault><value><struct>`+
		`<member><name>faultCode</name><value><int>1</int></value></member>`+
		`<member><name>faultString</name><value><string>bad params: root, `+hostilePassword+`</string></value></member>`+
		`</struct></value></fault></methodResponse>`))
	err := hostileClient(t, s.URL).Login(ctxT(t, 10*time.Second))
	checkHostileError(t, err, hostilePassword, 300)
	var f *Fault
	if !errors.As(err, &f) || f.Code != 1 || f.String != "bad params: root, ***" || core.CodeOf(err) != core.ErrEngine {
		t.Fatalf("fault: %v", err)
	}
}

func TestFailureCodeScrubbed(t *testing.T) {
	t.Parallel()
	s := hostileServer(t, answer(failureResult(hostilePassword+"_ERROR", "x")))
	err := hostileClient(t, s.URL).Login(ctxT(t, 10*time.Second))
	checkHostileError(t, err, hostilePassword, 300)
	if f := FailureOf(err); f == nil || f.Code != "***_ERROR" {
		t.Fatalf("failure: %#v", f)
	}
}

// Decoding errors quote a short, scrubbed prefix of what the server sent.
func TestMalformedResponseScrubbedAndBounded(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("9", 1<<20)
	for _, body := range []string{
		rpcResult(`<value><int>` + hostilePassword + `</int></value>`),
		rpcResult(`<value><int>` + big + hostilePassword + `</int></value>`),
		rpcResult(`<value><int>` + hostilePassword + big + `</int></value>`),
		`<?xml version="1.0"?><methodResponse>` + hostilePassword + `</methodResponse>`,
		rpcResult(`<value><dateTime.iso8601>` + hostilePassword + `</dateTime.iso8601></value>`),
		rpcResult(`<value><` + hostilePassword + `/></value>`),
		rpcResult(`<value><struct><member><name>Status</name><value>` + hostilePassword + big + `</value></member></struct></value>`),
		failureResult("INTERNAL_ERROR", big),
	} {
		s := hostileServer(t, answer(body))
		err := hostileClient(t, s.URL).Login(ctxT(t, 20*time.Second))
		checkHostileError(t, err, hostilePassword, 600)
		if FailureOf(err) == nil && !strings.Contains(err.Error(), "not an XAPI result") && !errors.Is(err, ErrMalformed) {
			t.Errorf("not a malformed-response error: %.300v", err)
		}
	}
}

// A password shorter than 4 bytes is not replaced where it occurs (that
// would mangle the text and show where its characters are): a parameter
// that contains it is replaced whole.
func TestShortPasswordScrubbed(t *testing.T) {
	t.Parallel()
	s := hostileServer(t, answer(failureResult("SESSION_AUTHENTICATION_FAILED", "root", `bad password "pw1" for root`, "pw1")))
	c := hostileClient(t, s.URL, func(o *Options) { o.Password = "pw1" })
	err := c.Login(ctxT(t, 10*time.Second))
	checkHostileError(t, err, "pw1", 300)
	if f := FailureOf(err); f == nil || fmt.Sprint(f.Params) != "[root *** ***]" {
		t.Fatalf("failure: %#v", f)
	}
	// A longer password is replaced where it occurs.
	s = hostileServer(t, answer(failureResult("SESSION_AUTHENTICATION_FAILED", "root", `bad password "pw12" for root`)))
	c = hostileClient(t, s.URL, func(o *Options) { o.Password = "pw12" })
	err = c.Login(ctxT(t, 10*time.Second))
	checkHostileError(t, err, "pw12", 300)
	if f := FailureOf(err); f == nil || fmt.Sprint(f.Params) != `[root bad password "***" for root]` {
		t.Fatalf("failure: %#v", f)
	}
}

// HOST_IS_SLAVE must not move a client from https to http, where the
// login would carry the password in clear text.
func TestHostIsSlaveNoDowngrade(t *testing.T) {
	t.Parallel()
	var plainHits atomic.Int64
	plain := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, rpcResult(`<value><struct><member><name>Status</name><value>Success</value></member>`+
			`<member><name>Value</name><value>OpaqueRef:abc</value></member></struct></value>`))
	})
	member := httptest.NewTLSServer(answer(failureResult("HOST_IS_SLAVE", plain.URL)))
	t.Cleanup(member.Close)
	c := hostileClient(t, member.URL, func(o *Options) { o.Fingerprint = fingerprint(member.Certificate().Raw) })
	err := c.Login(ctxT(t, 10*time.Second))
	checkHostileError(t, err, hostilePassword, 600)
	if !errors.Is(err, ErrSchemeChange) || !IsFailure(err, "HOST_IS_SLAVE") {
		t.Fatalf("login: %v", err)
	}
	if n := plainHits.Load(); n != 0 {
		t.Fatalf("the client followed HOST_IS_SLAVE from https to http (%d requests)", n)
	}
	if c.URL() != member.URL+"/" {
		t.Fatalf("client URL %s", c.URL())
	}
}

// A response nested a million levels deep used to crash the process
// (fatal stack overflow); so did such a request to the simulator.
func TestDeeplyNestedDocuments(t *testing.T) {
	t.Parallel()
	deep := func(w io.Writer, prefix string) {
		_, _ = io.WriteString(w, prefix)
		open := strings.Repeat(`<value><array><data>`, 10000)
		for range 100 {
			if _, err := io.WriteString(w, open); err != nil {
				return
			}
		}
	}
	s := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		deep(w, `<?xml version="1.0"?><methodResponse><params><param>`)
	})
	err := hostileClient(t, s.URL).Login(ctxT(t, 60*time.Second))
	checkHostileError(t, err, hostilePassword, 300)
	if !errors.Is(err, ErrResponseLimit) || !errors.Is(err, ErrMalformed) || core.CodeOf(err) != core.ErrEngine {
		t.Fatalf("login: %v", err)
	}

	sm := startSim(t, sim.Options{NoSSH: true})
	pr, pw := io.Pipe()
	go func() {
		deep(pw, `<?xml version="1.0"?><methodCall><methodName>VM.get_all</methodName><params><param>`)
		_ = pw.Close()
	}()
	resp, err := http.Post(sm.URL(), "text/xml", pr)
	_ = pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("deep request: HTTP %d", resp.StatusCode)
	}
}

// 250 MB of `<value/>` drove the heap to 1.5 GB (16 bytes of []any per 8
// bytes on the wire, doubled by append and by the GC's headroom); the
// decoder now stops after wire.DefaultMaxValues values. Not parallel, so
// that other tests do not add to the heap it measures.
func TestManyValuesMemoryBounded(t *testing.T) {
	s := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `<?xml version="1.0"?><methodResponse><params><param><value><array><data>`)
		chunk := strings.Repeat("<value/>", 1<<17) // 1 MiB
		for range 250 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		_, _ = io.WriteString(w, `</data></array></value></param></params></methodResponse>`)
	})
	var err error
	rise := heapPeak(func() {
		_, err = hostileClient(t, s.URL, func(o *Options) { o.CallTimeout = 5 * time.Minute }).CallNoSession(context.Background(), "x")
	})
	t.Logf("heap in use rose by %d MiB: %v", rise>>20, err)
	// Generous: the cap on a response is 256 MiB; unbounded, this took 1.5 GiB.
	if rise > 768<<20 {
		t.Errorf("heap in use rose by %d MiB", rise>>20)
	}
	if !errors.Is(err, ErrResponseLimit) {
		t.Errorf("got %v, want a response-limit error", err)
	}
}

// heapPeak runs f and returns how far the heap in use rose above where
// it was before, at its highest (sampled every 10 ms).
func heapPeak(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	peak.Store(base)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak.Store(max(peak.Load(), ms.HeapInuse))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	return peak.Load() - base
}

// encoding/xml reads a whole start tag and builds ~50 bytes of heap per
// attribute (`a=""` is 4 bytes on the wire), and keeps namespace
// declarations until their element closes: 30 MiB of attributes in
// <methodResponse> drove the heap up by 750 MiB, 30 MiB of xmlns:
// declarations by 345 MiB (100 MiB: 2.3 GiB, after 22 s of CPU), far
// beyond the 2.5 times the response's size that its text may cost. The
// decoder now refuses a tag over wire.MaxMarkup (4 KiB) bytes. Not
// parallel, so that other tests do not add to the heap it measures.
func TestAttributesMemoryBounded(t *testing.T) {
	const mib = 30
	var xmlns strings.Builder
	for i := 0; xmlns.Len() < 1<<20; i++ {
		fmt.Fprintf(&xmlns, `xmlns:n%d="u" `, i)
	}
	for name, chunk := range map[string]string{
		"attributes": strings.Repeat(`a="" `, (1<<20)/5),
		"namespaces": xmlns.String(),
	} {
		s := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, `<?xml version="1.0"?><methodResponse `)
			for range mib {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
			_, _ = io.WriteString(w, `><params><param><value>x</value></param></params></methodResponse>`)
		})
		var err error
		start := time.Now()
		peak := heapPeak(func() {
			_, err = hostileClient(t, s.URL, func(o *Options) { o.CallTimeout = 2 * time.Minute }).CallNoSession(context.Background(), "x")
		})
		t.Logf("%d MiB of %s: heap in use up by %d MiB at most, in %v: %v", mib, name, peak>>20, time.Since(start), err)
		checkHostileError(t, err, hostilePassword, 300)
		if !errors.Is(err, ErrResponseLimit) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want a response-limit error", name, err)
		}
		if peak > mib<<20 { // unbounded: 11 to 25 times the response
			t.Errorf("%s: heap in use up by %d MiB for a %d MiB response", name, peak>>20, mib)
		}
	}
}

// event.from answering at once with nothing new made WaitIP spin at
// thousands of calls a second.
func TestWaitIPDoesNotSpin(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	s := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls.Add(1)
		val := `<value>x</value>`
		switch {
		case strings.Contains(string(b), "VM.get_guest_metrics"):
			val = `<value>OpaqueRef:NULL</value>`
		case strings.Contains(string(b), "VM.get_power_state"):
			val = `<value>Running</value>`
		case strings.Contains(string(b), "event.from"):
			val = `<value><struct><member><name>events</name><value><array><data></data></array></value></member>` +
				`<member><name>token</name><value>t</value></member></struct></value>`
		}
		_, _ = io.WriteString(w, rpcResult(`<value><struct><member><name>Status</name><value>Success</value></member>`+
			`<member><name>Value</name>`+val+`</member></struct></value>`))
	})
	c := hostileClient(t, s.URL)
	c.session = "OpaqueRef:s"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.VM("OpaqueRef:vm").WaitIP(ctx)
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("WaitIP: %v", err)
	}
	// Paced, about 20 calls; spinning, thousands.
	if n := calls.Load(); n > 100 {
		t.Errorf("%d XAPI calls in 3 s", n)
	}
}

// scripted answers each XAPI method with the <value> given (a ref when the
// method is not listed).
func scripted(values map[string]string) http.HandlerFunc {
	method := regexp.MustCompile(`<methodName>([^<]*)</methodName>`)
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v, ok := "", false
		if m := method.FindSubmatch(body); m != nil {
			v, ok = values[string(m[1])]
		}
		if !ok {
			v = `<value>OpaqueRef:x</value>`
		}
		_, _ = io.WriteString(w, rpcResult(`<value><struct><member><name>Status</name><value>Success</value></member>`+
			`<member><name>Value</name>`+v+`</member></struct></value>`))
	}
}

// Strings a server sends as results (a power state, refs, UUIDs) are
// redacted and clipped where errors and logs show them.
func TestServerResultsInErrorsAndLogsAreScrubbed(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	core.SetLogger(func(_ int, msg string) { mu.Lock(); lines = append(lines, msg); mu.Unlock() }, core.LevelDebug)
	defer core.SetLogger(nil, 0)

	s := hostileServer(t, scripted(map[string]string{
		"session.login_with_password": `<value>OpaqueRef:s</value>`,
		"VM.get_guest_metrics":        `<value>OpaqueRef:NULL</value>`,
		"VM.get_power_state":          `<value>Paused-` + hostilePassword + strings.Repeat("A", 1<<20) + `</value>`,
	}))
	_, err := hostileClient(t, s.URL).VM("OpaqueRef:vm").WaitIP(ctxT(t, 10*time.Second))
	checkHostileError(t, err, hostilePassword, 600)

	s = hostileServer(t, scripted(map[string]string{
		"session.login_with_password": `<value>OpaqueRef:s</value>`,
		"VM.get_by_name_label":        `<value><array><data><value>OpaqueRef:t</value></data></array></value>`,
		"VM.get_record":               `<value><struct><member><name>is_a_template</name><value><boolean>1</boolean></value></member></struct></value>`,
		"Async.VM.clone":              `<value>OpaqueRef:task</value>`,
		"task.get_status":             `<value>success</value>`,
		"task.get_result":             `<value>&lt;value&gt;OpaqueRef:` + hostilePassword + `&lt;/value&gt;</value>`,
		"VM.get_uuid":                 `<value>uuid-` + hostilePassword + `</value>`,
		"VM.get_other_config":         `<value><struct></struct></value>`,
		"VM.get_VIFs":                 `<value><array><data><value>OpaqueRef:vif</value></data></array></value>`,
		"VM.get_VBDs":                 `<value><array><data></data></array></value>`,
	}))
	if _, err := hostileClient(t, s.URL).Provision(ctxT(t, 10*time.Second), ProvisionSpec{Template: "t", Name: "n"}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	provisioned := false
	for _, l := range lines {
		provisioned = provisioned || strings.Contains(l, "provisioned VM n")
		if strings.Contains(l, hostilePassword) {
			t.Errorf("the password is in a log line: %.300s", l)
		}
	}
	if !provisioned {
		t.Errorf("no provisioning line was logged: %q", lines)
	}
}

// A reply that is not HTTP at all: net/http's error quotes it; the error
// shows it redacted and clipped.
func TestGarbageHTTPReplyIsScrubbed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = nc.Read(make([]byte, 4096))
				_, _ = io.WriteString(nc, "XAPI/1.0 "+hostilePassword+strings.Repeat("g", 1<<20)+"\r\n\r\n")
			}()
		}
	}()
	err = hostileClient(t, "http://"+ln.Addr().String()).Login(ctxT(t, 10*time.Second))
	if core.CodeOf(err) != core.ErrConnection {
		t.Errorf("got %v, want ErrConnection", core.CodeOf(err))
	}
	checkHostileError(t, err, hostilePassword, 1200)
}

// A server that accepts and never answers fails a login within
// CallTimeout even when the caller's deadline is minutes away (a whole
// provisioning's); a long operation (event.from) is bounded by the
// caller's deadline alone.
func TestCallTimeoutBoundsShortCallsWithinLongDeadlines(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	s := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "<methodName>event.from</methodName>") {
			time.Sleep(600 * time.Millisecond) // a long call answered after CallTimeout: the fault itself
			_, _ = io.WriteString(w, rpcResult(`<value><struct><member><name>Status</name><value>Success</value></member>`+
				`<member><name>Value</name><value>ok</value></member></struct></value>`))
			return
		}
		if strings.Contains(string(body), "login_with_password") && r.URL.Query().Get("stall") == "" {
			select { // never answers (until the test ends)
			case <-stall:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, rpcResult(`<value><struct><member><name>Status</name><value>Success</value></member>`+
			`<member><name>Value</name><value>OpaqueRef:s</value></member></struct></value>`))
	})
	short := func(o *Options) { o.CallTimeout = 300 * time.Millisecond }
	start := time.Now()
	err := hostileClient(t, s.URL, short).Login(ctxT(t, 5*time.Minute))
	if core.CodeOf(err) != core.ErrTimeout || time.Since(start) > 5*time.Second {
		t.Fatalf("login to a silent server: %v after %v, want ErrTimeout after about 300ms", err, time.Since(start))
	}
	c := hostileClient(t, s.URL+"/?stall=no", short)
	if v, err := c.CallNoSession(ctxT(t, time.Minute), "event.from"); err != nil || AsString(v) != "ok" {
		t.Fatalf("a long call answered after CallTimeout: %v %v", v, err)
	}
}

// The client does not ask for gzip (the response limit counts what is
// read: a 199 KiB gzip body became a 200 MiB answer), and refuses a
// session reference far longer than XAPI's 46 bytes (it goes with every
// later call). Found by review (red team).
func TestNoGzipAndBoundedSessionRef(t *testing.T) {
	var accept atomic.Value
	accept.Store("unset")
	long := "OpaqueRef:" + strings.Repeat("x", 2000)
	s := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		accept.Store(r.Header.Get("Accept-Encoding"))
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, rpcResult(`<value><struct><member><name>Status</name><value>Success</value></member>`+
			`<member><name>Value</name><value>`+long+`</value></member></struct></value>`))
	})
	c := hostileClient(t, s.URL, func(o *Options) { o.AllowLoopbackIP = true })
	err := c.Login(context.Background())
	checkHostileError(t, err, hostilePassword, 400)
	if !strings.Contains(err.Error(), "session reference of 2010 bytes") {
		t.Errorf("error %v", err)
	}
	if got := accept.Load().(string); got != "" {
		t.Errorf("the client sent Accept-Encoding %q", got)
	}
}

// A failure's code and parameters cannot start a new line (or reorder the
// text) in an error message or a log line: a server could forge lines.
func TestFailureTextCannotForgeLines(t *testing.T) {
	t.Parallel()
	forged := "\n2026-01-01 INFO xcpng VM \"a\": destroyed\r\u202e"
	for _, desc := range [][]string{
		{"HANDLE_INVALID", "VM" + forged, "OpaqueRef:1" + forged},
		{"VM_BAD_POWER_STATE", "OpaqueRef:1", "Halted", "Running" + forged},
		{"MESSAGE_METHOD_UNKNOWN", "x" + forged},
		{"VM_IS_TEMPLATE", "OpaqueRef:1", "start" + forged},
		{"SOME_ERROR" + forged, "x"},
	} {
		s := hostileServer(t, answer(failureResult(desc...)))
		err := hostileClient(t, s.URL).Login(ctxT(t, 10*time.Second))
		checkHostileError(t, err, hostilePassword, 2000)
		if msg := err.Error(); strings.ContainsAny(msg, "\n\r\u202e") {
			t.Errorf("%s: %q", desc[0], msg)
		}
	}
}

// A template's disks XML (other_config "disks", a string as long as the
// response allows) is parsed with encoding/xml, which spends ~50 bytes of
// heap on each attribute (`a="" ` is 5 bytes) and each disk. It is bounded
// like the rest of a response: a template's is a few hundred bytes. Not
// parallel, so that other tests do not add to the heap it measures.
func TestDisksXMLMemoryBounded(t *testing.T) {
	const mib = 30
	for name, doc := range map[string]string{
		"attributes": `<provision><disk ` + strings.Repeat(`a="" `, (mib<<20)/5) + `/></provision>`,
		"disks":      `<provision>` + strings.Repeat(`<disk/>`, (mib<<20)/7) + `</provision>`,
	} {
		var err error
		peak := heapPeak(func() {
			_, _, err = rewriteDisks(doc, func() (string, error) { return "sr-uuid", nil })
		})
		t.Logf("%s: heap in use up by %d MiB at most: %.200v", name, peak>>20, err)
		if err == nil || core.CodeOf(err) != core.ErrInvalid {
			t.Errorf("%s: got %.200v, want an ErrInvalid error", name, err)
		}
		if peak > mib<<20 {
			t.Errorf("%s: heap in use up by %d MiB for %d MiB of disks XML", name, peak>>20, mib)
		}
	}
}

// PickIP splits each key of the guest's networks map at '/': a key of
// 30 MiB of slashes made 31 M strings (480 MiB) at once. Not parallel,
// so that other tests do not add to the heap it measures.
func TestPickIPMemoryBounded(t *testing.T) {
	const mib = 30
	networks := map[string]string{"0" + strings.Repeat("/", mib<<20): "10.0.0.9", "1/ip": "10.0.0.1"}
	var ip string
	peak := heapPeak(func() { ip = PickIP(networks, false) })
	if ip != "10.0.0.1" {
		t.Errorf("PickIP: %q", ip)
	}
	if peak > mib<<20 {
		t.Errorf("heap in use up by %d MiB for a %d MiB key", peak>>20, mib)
	}
}

// taskServer is a scripted XAPI whose Async calls return the task
// "OpaqueRef:task-<method>" and whose task.get_status answers status[task]
// ("pending" when not listed); hang lists methods that never answer
// (until the client goes away). Other methods answer values[method], or a
// ref.
func taskServer(t *testing.T, values, status map[string]string, hang ...string) *httptest.Server {
	t.Helper()
	method := regexp.MustCompile(`<methodName>([^<]*)</methodName>`)
	return hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := ""
		if x := method.FindSubmatch(body); x != nil {
			m = string(x[1])
		}
		for _, h := range hang {
			if m == h {
				<-r.Context().Done()
				return
			}
		}
		v, ok := values[m]
		switch {
		case ok:
		case strings.HasPrefix(m, "Async."):
			v = `<value>OpaqueRef:task-` + strings.TrimPrefix(m, "Async.") + `</value>`
		case m == "task.get_status":
			v = `<value>pending</value>`
			for task, st := range status {
				if strings.Contains(string(body), task+"<") {
					v = `<value>` + st + `</value>`
				}
			}
		default:
			v = `<value>OpaqueRef:x</value>`
		}
		_, _ = io.WriteString(w, rpcResult(`<value><struct><member><name>Status</name><value>Success</value></member>`+
			`<member><name>Value</name>`+v+`</member></struct></value>`))
	})
}

// A task's result that does not decode is quoted redacted before it is
// clipped: clipping first let the start of the password through.
func TestTaskResultDecodingErrorScrubbed(t *testing.T) {
	t.Parallel()
	doc := `<value><` + strings.Repeat("a", 56) + hostilePassword + `/></value>`
	s := taskServer(t, map[string]string{
		"session.login_with_password": `<value>OpaqueRef:s</value>`,
		"task.get_result":             `<value>` + html.EscapeString(doc) + `</value>`,
	}, map[string]string{"OpaqueRef:task-VM.start": "success"})
	err := hostileClient(t, s.URL).VM("OpaqueRef:vm").Start(ctxT(t, 10*time.Second))
	checkHostileError(t, err, hostilePassword, 600)
	if strings.Contains(err.Error(), hostilePassword[:6]) {
		t.Errorf("the start of the password leaked: %v", err)
	}
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("got %v, want ErrMalformed", err)
	}
}

// A task that never ends, on a server whose task.destroy never answers:
// the client gives up by its deadline plus CleanupTimeout, not later.
func TestTaskNeverEndingBoundedByCleanupTimeout(t *testing.T) {
	t.Parallel()
	s := taskServer(t, map[string]string{"session.login_with_password": `<value>OpaqueRef:s</value>`}, nil, "task.destroy")
	c := hostileClient(t, s.URL, func(o *Options) { o.CleanupTimeout = time.Second; o.CallTimeout = 10 * time.Second })
	start := time.Now()
	err := c.VM("OpaqueRef:vm").Start(ctxT(t, 200*time.Millisecond))
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 1700*time.Millisecond {
		t.Errorf("Start returned after %v; the deadline (200ms) plus CleanupTimeout (1s) is 1.2s", d)
	}
}

// Launch whose VM.start task never ends, on a server where the VM's
// removal then hangs: the start's wait and the removal share
// CleanupTimeout, counted from the deadline.
func TestLaunchCutOffBoundedByCleanupTimeout(t *testing.T) {
	t.Parallel()
	s := taskServer(t, map[string]string{
		"session.login_with_password": `<value>OpaqueRef:s</value>`,
		"VM.get_by_name_label":        `<value><array><data><value>OpaqueRef:t</value></data></array></value>`,
		"VM.get_record":               `<value><struct><member><name>is_a_template</name><value><boolean>1</boolean></value></member></struct></value>`,
		"task.get_result":             `<value>&lt;value&gt;OpaqueRef:vm&lt;/value&gt;</value>`,
		"VM.get_other_config":         `<value><struct></struct></value>`,
		"VM.get_VIFs":                 `<value><array><data><value>OpaqueRef:vif</value></data></array></value>`,
	}, map[string]string{"OpaqueRef:task-VM.clone": "success", "OpaqueRef:task-VM.provision": "success"},
		"VM.get_power_state")
	c := hostileClient(t, s.URL, func(o *Options) { o.CleanupTimeout = time.Second; o.CallTimeout = 10 * time.Second })
	start := time.Now()
	_, err := c.Launch(ctxT(t, 500*time.Millisecond), ProvisionSpec{Template: "t", Name: "n"})
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Launch returned after %v; the deadline (500ms) plus CleanupTimeout (1s) is 1.5s", d)
	}
}

// A task reference far longer than XAPI's 46 bytes is refused: it would
// be sent again with every poll.
func TestBoundedTaskAndResultRefs(t *testing.T) {
	t.Parallel()
	long := "OpaqueRef:" + strings.Repeat("x", 2000)
	s := taskServer(t, map[string]string{
		"session.login_with_password": `<value>OpaqueRef:s</value>`,
		"Async.VM.start":              `<value>` + long + `</value>`,
	}, nil)
	short := func(o *Options) { o.CleanupTimeout = time.Second }
	err := hostileClient(t, s.URL, short).VM("OpaqueRef:vm").Start(ctxT(t, 3*time.Second))
	checkHostileError(t, err, hostilePassword, 400)
	if core.CodeOf(err) != core.ErrEngine || !strings.Contains(err.Error(), "2010 bytes") {
		t.Errorf("got %v, want the long task reference refused", err)
	}

	// The clone's result is the VM's ref, used in every later call.
	s = taskServer(t, map[string]string{
		"session.login_with_password": `<value>OpaqueRef:s</value>`,
		"VM.get_by_name_label":        `<value><array><data><value>OpaqueRef:t</value></data></array></value>`,
		"VM.get_record":               `<value><struct><member><name>is_a_template</name><value><boolean>1</boolean></value></member></struct></value>`,
		"task.get_result":             `<value>&lt;value&gt;` + long + `&lt;/value&gt;</value>`,
	}, map[string]string{"OpaqueRef:task-VM.clone": "success"})
	_, err = hostileClient(t, s.URL, short).Provision(ctxT(t, 3*time.Second), ProvisionSpec{Template: "t", Name: "n"})
	checkHostileError(t, err, hostilePassword, 400)
	if core.CodeOf(err) != core.ErrEngine || !strings.Contains(err.Error(), "2010 bytes") {
		t.Errorf("got %v, want the long VM reference refused", err)
	}
}

// A task wait cut off by the caller's cancellation is classified as the
// synchronous call's was (ErrGeneric, context.Canceled), not as a
// timeout.
func TestTaskWaitCancelledIsNotATimeout(t *testing.T) {
	t.Parallel()
	s := taskServer(t, map[string]string{"session.login_with_password": `<value>OpaqueRef:s</value>`}, nil)
	c := hostileClient(t, s.URL, func(o *Options) { o.CleanupTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err := c.VM("OpaqueRef:vm").Start(ctx)
	if core.CodeOf(err) != core.ErrGeneric || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v (%v), want a cancellation", err, core.CodeOf(err))
	}
}

// A task's error_info is read as a failed call's ErrorDescription: an
// empty code is INTERNAL_ERROR in both.
func TestTaskFailureLikeSyncFailure(t *testing.T) {
	t.Parallel()
	s := hostileServer(t, answer(failureResult("", "x")))
	c := hostileClient(t, s.URL)
	c.session = "OpaqueRef:s"
	_, syncErr := c.Call(ctxT(t, 10*time.Second), "VM.start", "OpaqueRef:vm", false, false)
	s = taskServer(t, map[string]string{
		"session.login_with_password": `<value>OpaqueRef:s</value>`,
		"task.get_error_info":         `<value><array><data><value></value><value>x</value></data></array></value>`,
	}, map[string]string{"OpaqueRef:task-VM.start": "failure"})
	err := hostileClient(t, s.URL).VM("OpaqueRef:vm").Start(ctxT(t, 10*time.Second))
	f, sf := FailureOf(err), FailureOf(syncErr)
	if f == nil || sf == nil || f.Code != sf.Code || f.Code != "INTERNAL_ERROR" || core.CodeOf(err) != core.CodeOf(syncErr) || err.Error() != syncErr.Error() {
		t.Errorf("task failure %v (%#v), synchronous %v (%#v)", err, f, syncErr, sf)
	}
}
