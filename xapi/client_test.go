package xapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kolo/xmlrpc"

	"libbioxen/core"
	"libbioxen/xapi/internal/wire"
	"libbioxen/xapi/sim"
)

func TestLoginLogout(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	if err := c.Login(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Session(), "OpaqueRef:") {
		t.Fatalf("session %q", c.Session())
	}
	if n := s.Stats().Sessions; n != 1 {
		t.Fatalf("sessions = %d", n)
	}
	if err := c.Logout(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Sessions; n != 0 {
		t.Fatalf("sessions after logout = %d", n)
	}
	if err := c.Logout(context.Background()); err != nil {
		t.Fatalf("second logout: %v", err)
	}
}

func TestLoginWrongPassword(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true, Password: "right-password"})
	const pw = "hunter2-wrong-password"
	c := clientFor(t, s, func(o *Options) { o.Password = pw })
	err := c.Login(ctxT(t, 10*time.Second))
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if core.CodeOf(err) != core.ErrAuth {
		t.Errorf("code %v, want ErrAuth", core.CodeOf(err))
	}
	f := FailureOf(err)
	if f == nil || f.Code != "SESSION_AUTHENTICATION_FAILED" || len(f.Params) != 2 || f.Params[0] != "root" {
		t.Fatalf("failure %#v", f)
	}
	var ce *core.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%T is not a *core.Error", err)
	}
	opts := Options{URL: "https://h", Username: "root", Password: pw}
	for _, s := range []string{err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err),
		fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c),
		fmt.Sprintf("%v %+v %#v %s", opts, opts, opts, opts), fmt.Sprintf("%v %#v %q %x %d", opts.Password, opts.Password, opts.Password, opts.Password, opts.Password)} {
		if strings.Contains(s, pw) || strings.Contains(s, "hunter2") {
			t.Errorf("password leaked: %s", s)
		}
	}
	t.Logf("error: %v", err)
	// Calls fail the same way, without retry loops.
	if _, err := c.Call(ctxT(t, 10*time.Second), "VM.get_all"); !IsFailure(err, "SESSION_AUTHENTICATION_FAILED") {
		t.Fatalf("call: %v", err)
	}
}

func TestPasswordScrubbedFromFailureParams(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	pw := s.Config().XCPPassword
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultFail, Method: "VM.get_all", Error: []string{"INTERNAL_ERROR", "bad password " + pw}}); err != nil {
		t.Fatal(err)
	}
	c := clientFor(t, s)
	_, err := c.Call(ctxT(t, 10*time.Second), "VM.get_all")
	if err == nil || strings.Contains(err.Error(), pw) {
		t.Fatalf("password not scrubbed: %v", err)
	}
}

func TestSessionInvalidRelogin(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 20*time.Second)
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	old := c.Session()
	if n := s.ExpireSessions(); n != 1 {
		t.Fatalf("expired %d sessions", n)
	}
	v, err := c.Call(ctx, "VM.get_all")
	if err != nil {
		t.Fatalf("call after expiry: %v", err)
	}
	if len(AsStrings(v)) == 0 || c.Session() == old || c.Session() == "" {
		t.Fatalf("no re-login: %v %q", v, c.Session())
	}
	// Only one retry: a session rejected twice in a row is an error.
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultFail, Method: "VM.get_all", Error: []string{"SESSION_INVALID", "OpaqueRef:x"}, Count: 2}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "VM.get_all")
	if !IsFailure(err, "SESSION_INVALID") {
		t.Fatalf("want SESSION_INVALID after one retry, got %v", err)
	}
	if _, err := c.Call(ctx, "VM.get_all"); err != nil {
		t.Fatal(err)
	}
	// Concurrent callers share one re-login.
	s.ExpireSessions()
	errs := make(chan error, 8)
	for range 8 {
		go func() { _, err := c.Call(ctx, "pool.get_all"); errs <- err }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().Sessions; n != 1 {
		t.Errorf("%d sessions after concurrent re-login, want 1", n)
	}
}

func TestHostIsSlaveRedirect(t *testing.T) {
	t.Parallel()
	master := startSim(t, sim.Options{NoSSH: true, Password: "pw-of-the-pool"})
	member := startSim(t, sim.Options{NoSSH: true, Password: "pw-of-the-pool", PoolMember: master.URL()})
	c := clientFor(t, member)
	ctx := ctxT(t, 20*time.Second)
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	if c.URL() != master.URL()+"/" {
		t.Fatalf("client uses %s, want the master %s", c.URL(), master.URL())
	}
	if master.Stats().Sessions != 1 || member.Stats().Sessions != 0 {
		t.Fatalf("sessions: master %d member %d", master.Stats().Sessions, member.Stats().Sessions)
	}
	// The master is demoted mid-session: calls follow the new master.
	newMaster := startSim(t, sim.Options{NoSSH: true, Password: "pw-of-the-pool"})
	if err := master.SetPoolMember(newMaster.URL()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "VM.get_all"); err != nil {
		t.Fatal(err)
	}
	if c.URL() != newMaster.URL()+"/" {
		t.Fatalf("client uses %s, want %s", c.URL(), newMaster.URL())
	}
	// A loop of members gives up with HOST_IS_SLAVE.
	a := startSim(t, sim.Options{NoSSH: true})
	b := startSim(t, sim.Options{NoSSH: true, PoolMember: a.URL()})
	if err := a.SetPoolMember(b.URL()); err != nil {
		t.Fatal(err)
	}
	c2 := clientFor(t, a)
	if err := c2.Login(ctx); !IsFailure(err, "HOST_IS_SLAVE") {
		t.Fatalf("redirect loop: %v", err)
	}
}

func TestMasterURL(t *testing.T) {
	from, _ := url.Parse("https://10.0.0.5/")
	fromPort, _ := url.Parse("http://127.0.0.1:8080/")
	for _, tc := range []struct {
		from *url.URL
		addr string
		want string
	}{
		{from, "10.0.0.6", "https://10.0.0.6/"},
		{from, "fe80::1", "https://[fe80::1]/"},
		{from, "master.example", "https://master.example/"},
		{fromPort, "127.0.0.2", "http://127.0.0.2:8080/"},
		{fromPort, "127.0.0.1:9090", "http://127.0.0.1:9090/"},
		{fromPort, "http://m:8081", "http://m:8081/"},
		{from, "https://m:443/x?q#f", "https://m:443/x"},
	} {
		u, err := masterURL(tc.from, tc.addr)
		if err != nil || u.String() != tc.want {
			t.Errorf("masterURL(%s, %q) = %v, %v; want %s", tc.from, tc.addr, u, err, tc.want)
		}
	}
	for _, addr := range []string{"bad host/x", "***", "***.example", "h:0", "h:x", "https://u:p@m/", "https://***/"} {
		if u, err := masterURL(from, addr); err == nil {
			t.Errorf("bad address %q accepted: %s", addr, u)
		}
	}
	// The scheme never changes: https to http would send the password in
	// clear text.
	for _, tc := range []struct {
		from *url.URL
		addr string
	}{{from, "http://10.0.0.6"}, {from, "HTTP://10.0.0.6:443/"}, {fromPort, "https://m:443"}} {
		if u, err := masterURL(tc.from, tc.addr); !errors.Is(err, ErrSchemeChange) {
			t.Errorf("masterURL(%s, %q) = %v, %v; want ErrSchemeChange", tc.from, tc.addr, u, err)
		}
	}
}

func TestDeadlineOnEveryCall(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s, func(o *Options) { o.CallTimeout = 300 * time.Millisecond })
	if err := c.Login(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultDelay, Method: "VM.get_all", Delay: 2 * time.Second, Count: 1}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Call(context.Background(), "VM.get_all")
	if core.CodeOf(err) != core.ErrTimeout || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("got %v after %s, want a timeout after ~300ms", err, time.Since(start))
	}
}

func TestWireErrorShapes(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	expect := func(err error, code string, params ...string) {
		t.Helper()
		f := FailureOf(err)
		if f == nil || f.Code != code || (params != nil && fmt.Sprint(f.Params) != fmt.Sprint(params)) {
			t.Fatalf("got %v, want %s %q", err, code, params)
		}
	}
	_, err := c.Call(ctx, "VM.no_such_method")
	expect(err, "MESSAGE_METHOD_UNKNOWN", "VM.no_such_method")
	if core.CodeOf(err) != core.ErrUnsupported {
		t.Errorf("code %v", core.CodeOf(err))
	}
	_, err = c.Call(ctx, "VM.start", "OpaqueRef:x")
	expect(err, "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "3", "1")
	_, err = c.Call(ctx, "VM.get_record", "OpaqueRef:nope")
	expect(err, "HANDLE_INVALID", "VM", "OpaqueRef:nope")
	if core.CodeOf(err) != core.ErrBadHandle {
		t.Errorf("code %v", core.CodeOf(err))
	}
	_, err = c.Call(ctx, "VM.get_by_uuid", "00000000-0000-0000-0000-000000000000")
	expect(err, "UUID_INVALID", "VM", "00000000-0000-0000-0000-000000000000")
	_, err = c.Call(ctx, "VM_guest_metrics.get_networks", NullRef)
	expect(err, "HANDLE_INVALID", "VM_guest_metrics", NullRef)
	_, err = c.CallNoSession(ctx, "VM.get_all", "OpaqueRef:forged")
	expect(err, "SESSION_INVALID", "OpaqueRef:forged")

	// Class_method aliases.
	for _, m := range []string{"VM_get_all", "VM_guest_metrics_get_all", "pool_get_all"} {
		if _, err := c.Call(ctx, m); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	v, err := c.Call(ctx, "event_from", []string{"pool"}, "", 0.0)
	if err != nil || AsString(AsRecord(v)["token"]) == "" {
		t.Fatalf("event_from: %v %v", v, err)
	}

	// A clone inherits is_a_template until provisioned.
	tmpl, err := c.FindTemplate(ctx, s.Config().TemplateName)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := c.callString(ctx, "VM.clone", tmpl, "raw-clone")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := c.callRecord(ctx, "VM.get_record", vm)
	if err != nil {
		t.Fatal(err)
	}
	if !AsBool(rec["is_a_template"]) || AsBool(rec["is_default_template"]) {
		t.Fatalf("clone flags: template=%v default=%v", rec["is_a_template"], rec["is_default_template"])
	}
	// 64-bit ints travel as strings.
	if _, ok := rec["memory_static_max"].(string); !ok {
		t.Fatalf("memory_static_max is %T, want a string", rec["memory_static_max"])
	}
	if n, err := AsInt(rec["memory_static_max"]); err != nil || n != 2<<30 {
		t.Fatalf("memory_static_max %v %v", n, err)
	}
	_, err = c.Call(ctx, "VM.start", vm, false, false)
	expect(err, "VM_IS_TEMPLATE", vm, "start")
	// Provisioning with sr="" fails like XAPI.
	_, err = c.Call(ctx, "VM.provision", vm)
	expect(err, "UUID_INVALID", "sr", "")
	_, err = c.Call(ctx, "VM.add_to_other_config", vm, "disks", "x")
	expect(err, "MAP_DUPLICATE_KEY")
	if _, err := c.Call(ctx, "VM.set_is_a_template", vm, false); err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "VM.clean_shutdown", vm)
	expect(err, "VM_BAD_POWER_STATE", vm, "running", "halted")
	_, err = c.Call(ctx, "VM.hard_shutdown", vm)
	expect(err, "VM_BAD_POWER_STATE", vm, "paused, suspended, running", "halted")
	_, err = c.Call(ctx, "VM.start", vm, "maybe", false)
	expect(err, "FIELD_TYPE_ERROR", "start_paused")
	// Async form: a task whose result is an XML-RPC fragment.
	task, err := c.callString(ctx, "Async.VM.destroy", vm)
	if err != nil || !strings.HasPrefix(task, "OpaqueRef:") {
		t.Fatalf("Async.VM.destroy: %v %v", task, err)
	}
	waitFor(t, 5*time.Second, "the task", func() bool {
		st, _ := c.callString(ctx, "task.get_status", task)
		return st == "success"
	})
	if res, _ := c.callString(ctx, "task.get_result", task); res != "<value></value>" {
		t.Errorf("task result %q", res)
	}
	if _, err := c.Call(ctx, "task.destroy", task); err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "VM.get_record", vm)
	expect(err, "HANDLE_INVALID", "VM", vm)
	// system.listMethods is not wrapped in an envelope.
	body, _ := wire.Encoder{}.EncodeCall("system.listMethods", nil)
	resp, err := http.Post(s.URL(), "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	lm, err := wire.DecodeResponse(resp.Body)
	resp.Body.Close()
	if err != nil || len(AsStrings(lm)) < 100 {
		t.Fatalf("system.listMethods: %v", err)
	}
	// A malformed request gets an HTTP 500 page.
	resp, err = http.Post(s.URL(), "text/xml", strings.NewReader("<methodCall><oops"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("malformed request: HTTP %d", resp.StatusCode)
	}
	checkNoGuests(t, s)
}

// Requests encoded by github.com/kolo/xmlrpc (typed <string>, <int>,
// <boolean>) are understood by the simulator.
func TestKoloEncodedRequests(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	cfg := s.Config()
	post := func(method string, args ...any) any {
		t.Helper()
		body, err := xmlrpc.EncodeMethodCall(method, args...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(s.URL(), "text/xml", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		v, err := wire.DecodeResponse(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	res := AsRecord(post("session.login_with_password", cfg.XCPUsername, cfg.XCPPassword, "1.0", "kolo"))
	if res["Status"] != "Success" {
		t.Fatalf("login: %v", res)
	}
	sess := AsString(res["Value"])
	res = AsRecord(post("event.from", sess, []string{"vm"}, "", 1))
	if res["Status"] != "Success" {
		t.Fatalf("event.from with an <int> timeout: %v", res)
	}
	res = AsRecord(post("VM.set_VCPUs_max", sess, "OpaqueRef:nope", 4))
	if fmt.Sprint(res["ErrorDescription"]) != "[HANDLE_INVALID VM OpaqueRef:nope]" {
		t.Fatalf("%v", res)
	}
}

func TestEventFromTokens(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 20*time.Second)
	v, err := c.Call(ctx, "event.from", []string{"vm"}, "", 1.0)
	if err != nil {
		t.Fatal(err)
	}
	r := AsRecord(v)
	evs, _ := r["events"].([]any)
	if len(evs) < 3 {
		t.Fatalf("from the start: %d events", len(evs))
	}
	if op := AsString(AsRecord(evs[0])["operation"]); op != "add" {
		t.Fatalf("operation %q", op)
	}
	token := AsString(r["token"])
	// Nothing changes: the call blocks for its timeout, then returns no events.
	start := time.Now()
	v, err = c.Call(ctx, "event.from", []string{"vm"}, token, 0.3)
	if err != nil || len(AsRecord(v)["events"].([]any)) != 0 || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("idle event.from: %v %v after %s", v, err, time.Since(start))
	}
	// A change after the token is reported as "mod" with a snapshot.
	// (Waking a blocked caller is exercised by every WaitIP.)
	tmpl, _ := c.FindTemplate(ctx, s.Config().TemplateName)
	if _, err := c.Call(ctx, "VM.add_to_other_config", tmpl, "touched", "yes"); err != nil {
		t.Fatal(err)
	}
	v, err = c.Call(ctx, "event.from", []string{"vm/" + tmpl}, token, 10.0)
	if err != nil {
		t.Fatal(err)
	}
	evs = AsRecord(v)["events"].([]any)
	if len(evs) != 1 || AsString(AsRecord(evs[0])["operation"]) != "mod" || AsString(AsRecord(evs[0])["class"]) != "vm" {
		t.Fatalf("events %v", evs)
	}
	snap := AsRecord(AsRecord(evs[0])["snapshot"])
	if AsStringMap(snap["other_config"])["touched"] != "yes" {
		t.Fatalf("snapshot %v", snap)
	}
	if _, err := c.Call(ctx, "event.from", []string{"vm"}, "garbage", 1.0); !IsFailure(err, "EVENT_FROM_TOKEN_PARSE_FAILURE") {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := c.Call(ctx, "VM.remove_from_other_config", tmpl, "touched"); err != nil {
		t.Fatal(err)
	}
}

func TestPickIP(t *testing.T) {
	for _, tc := range []struct {
		nets     map[string]string
		loopback bool
		want     string
	}{
		{map[string]string{}, false, ""},
		{map[string]string{"0/ip": "", "0/ipv4/0": ""}, false, ""},
		{map[string]string{"0/ip": "10.0.0.2", "0/ipv4/0": "10.0.0.2"}, false, "10.0.0.2"},
		{map[string]string{"3/ip": "192.168.1.7", "3/ipv6/0": "fe80::1"}, false, "192.168.1.7"},
		{map[string]string{"0/ip": "127.0.0.1", "1/ipv4/0": "10.1.1.1"}, false, "10.1.1.1"},
		{map[string]string{"0/ip": "127.0.0.1"}, false, ""},
		{map[string]string{"0/ip": "127.0.0.1"}, true, "127.0.0.1"},
		{map[string]string{"2/ipv4/1": "10.0.0.9", "2/ipv4/0": "10.0.0.8", "1/ip": "garbage"}, false, "10.0.0.8"},
		{map[string]string{"0/ipv6/0": "fe80::2", "0/ipv6/1": "2001:db8::5"}, false, "2001:db8::5"},
		{map[string]string{"eth0/ip": "10.9.9.9", "0/ip": "0.0.0.0"}, false, ""},
	} {
		if got := PickIP(tc.nets, tc.loopback); got != tc.want {
			t.Errorf("PickIP(%v, %v) = %q, want %q", tc.nets, tc.loopback, got, tc.want)
		}
	}
}

func TestRewriteDisks(t *testing.T) {
	calls := 0
	sr := func() (string, error) { calls++; return "sr-uuid", nil }
	out, changed, err := rewriteDisks(`<provision><disk device="0" size="10" sr="" bootable="true" type="system"/><disk device="1" size="5" sr="keep"/></provision>`, sr)
	if err != nil || !changed || calls != 1 {
		t.Fatalf("%v %v %d", err, changed, calls)
	}
	// Every disk goes to the SR, as xe's rewrite_provisioning_xml does.
	if strings.Count(out, `sr="sr-uuid"`) != 2 || strings.Contains(out, `sr="keep"`) || !strings.Contains(out, `bootable="true"`) {
		t.Fatalf("rewritten: %s", out)
	}
	if out, changed, _ := rewriteDisks(`<provision><disk device="0"/></provision>`, sr); !changed || !strings.Contains(out, `sr="sr-uuid"`) {
		t.Fatalf("a disk without sr: %v %s", changed, out)
	}
	if _, changed, _ := rewriteDisks(`<provision><disk device="0" sr="sr-uuid"/></provision>`, sr); changed {
		t.Fatal("changed an XML already on the SR")
	}
	calls = 0
	if _, changed, _ := rewriteDisks(`<provision></provision>`, sr); changed || calls != 0 {
		t.Fatalf("no disks: changed %v, %d SR lookups", changed, calls)
	}
	if _, _, err := rewriteDisks(`<provision><disk`, sr); core.CodeOf(err) != core.ErrInvalid {
		t.Fatalf("bad XML: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{},
		{URL: "ftp://x", Username: "u"},
		{URL: "https://u:secretpw@x", Username: "u"},
		{URL: "https://secretpw@x", Username: "u"}, // a token without a password
		{URL: "https://x"},
		{URL: "https://x", Username: "u", Insecure: true, Fingerprint: strings.Repeat("a", 64)},
		{URL: "https://x", Username: "u", Fingerprint: "abcd"},
		{URL: "https://x", Username: "u", CAFile: "/nonexistent.pem"},
	} {
		_, err := New(o)
		if err == nil {
			t.Errorf("New(%v) accepted", o)
			continue
		}
		if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("password in %v", err)
		}
	}
	c, err := New(Options{URL: "xcp.example:8443", Username: "u", Fingerprint: "SHA256 Fingerprint=" + strings.Repeat("AB:", 31) + "AB"})
	if err != nil || c.URL() != "https://xcp.example:8443/" {
		t.Fatalf("%v %v", c, err)
	}
}
