package xapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
	"libbioxen/xapi/sim"
)

// These tests pin the simulator (and the client) to behaviour read in
// xen-api's sources; each names the file it follows.

// customTemplate clones the simulator's Lua template into a new template
// whose other_config is oc.
func customTemplate(t *testing.T, ctx context.Context, c *Client, s *sim.Server, name string, oc map[string]string) string {
	t.Helper()
	tmpl, err := c.FindTemplate(ctx, s.Config().TemplateName)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.callString(ctx, "VM.clone", tmpl, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "VM.set_other_config", ref, oc); err != nil {
		t.Fatal(err)
	}
	return ref
}

// VIF.create's record needs every constructor field without a default
// (xen-api gen_server.ml from_ctor_record, server_helpers.ml my_assoc):
// a missing MAC is INTERNAL_ERROR, not a VIF with a generated MAC.
func TestSimVIFCreateNeedsEveryField(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	vm, err := c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "vif"})
	if err != nil {
		t.Fatal(err)
	}
	net, err := c.PoolNetwork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full := vifRecord(vm.Ref, net, "1", "")
	for _, missing := range []string{"MAC", "MTU", "other_config", "qos_algorithm_type", "qos_algorithm_params", "VM"} {
		args := map[string]any{}
		for k, v := range full {
			if k != missing {
				args[k] = v
			}
		}
		_, err := c.Call(ctx, "VIF.create", args)
		if !IsFailure(err, "INTERNAL_ERROR") {
			t.Errorf("VIF.create without %s: got %v, want INTERNAL_ERROR", missing, err)
		}
	}
	if _, err := c.Call(ctx, "VIF.create", full); err != nil {
		t.Fatalf("VIF.create with every field: %v", err)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

// VM.provision follows xapi_vm.ml provision and xapi_templates.ml: the
// template flag goes first, a disk's type defaults to system, the VDI is
// named after the device, the VBD carries other_config owner, and a disk
// without a bootable attribute is a parse failure.
func TestSimProvisionLikeXAPI(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	_, srUUID, err := c.DefaultSR(ctx)
	if err != nil {
		t.Fatal(err)
	}

	ref := customTemplate(t, ctx, c, s, "untyped", map[string]string{
		"disks": `<provision><disk device="0" size="1024" sr="` + srUUID + `" bootable="true"/><disk device="1" size="2048" sr="` + srUUID + `" bootable="false" type="user"/></provision>`})
	if _, err := c.Call(ctx, "VM.provision", ref); err != nil {
		t.Fatal(err)
	}
	vbds, err := c.Call(ctx, "VM.get_VBDs", ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(AsStrings(vbds)); n != 2 {
		t.Fatalf("%d VBDs, want 2", n)
	}
	for _, vbd := range AsStrings(vbds) {
		rec, err := c.callRecord(ctx, "VBD.get_record", vbd)
		if err != nil {
			t.Fatal(err)
		}
		dev := AsString(rec["userdevice"])
		if _, ok := AsStringMap(rec["other_config"])["owner"]; !ok {
			t.Errorf("VBD %s: other_config %v has no owner key", dev, rec["other_config"])
		}
		vdi, err := c.callRecord(ctx, "VDI.get_record", AsString(rec["VDI"]))
		if err != nil {
			t.Fatal(err)
		}
		if AsString(vdi["name_label"]) != dev {
			t.Errorf("VDI of device %s is named %q, want the device", dev, AsString(vdi["name_label"]))
		}
		wantType, wantUnplug := "system", false
		if dev == "1" {
			wantType, wantUnplug = "user", true
		}
		if AsString(vdi["type"]) != wantType || AsBool(rec["unpluggable"]) != wantUnplug {
			t.Errorf("device %s: VDI type %q unpluggable %v, want %q %v", dev, AsString(vdi["type"]), AsBool(rec["unpluggable"]), wantType, wantUnplug)
		}
	}
	if err := c.VM(ref).Destroy(ctx); err != nil {
		t.Fatal(err)
	}

	bad := customTemplate(t, ctx, c, s, "no-bootable", map[string]string{
		"disks": `<provision><disk device="0" size="1024" sr="` + srUUID + `"/></provision>`})
	_, err = c.Call(ctx, "VM.provision", bad)
	if !IsFailure(err, "INTERNAL_ERROR") {
		t.Fatalf("provision of a disk without bootable: got %v, want INTERNAL_ERROR", err)
	}
	if tmpl, err := c.Call(ctx, "VM.get_is_a_template", bad); err != nil || AsBool(tmpl) {
		t.Fatalf("after a failed provision is_a_template is %v (%v); XAPI clears it first", tmpl, err)
	}
	if err := c.VM(bad).Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

// Provision does what `xe vm-install` does (cli_operations.ml
// vm_install_real, cli_util.ml rewrite_provisioning_xml): every disk goes
// to the default SR whatever sr the template's XML names, VM.provision is
// called even without disks (it clears is_a_template and handles a
// postinstall key), and an explicit SR means VM.copy to it.
func TestProvisionLikeXeVMInstall(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	srRef, srUUID, err := c.DefaultSR(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A template whose disk names an SR that does not exist.
	customTemplate(t, ctx, c, s, "stale-sr", map[string]string{
		"disks": `<provision><disk device="0" size="1024" sr="00000000-0000-4000-8000-000000000000" bootable="true" type="system"/></provision>`})
	vm, err := c.Provision(ctx, ProvisionSpec{Template: "stale-sr", Name: "a"})
	if err != nil {
		t.Fatalf("provision from a template naming a stale SR: %v", err)
	}
	vbds, _ := c.Call(ctx, "VM.get_VBDs", vm.Ref)
	if len(AsStrings(vbds)) != 1 {
		t.Fatalf("VBDs %v", vbds)
	}
	vdi, _ := c.callString(ctx, "VBD.get_VDI", AsStrings(vbds)[0])
	if sr, _ := c.callString(ctx, "VDI.get_SR", vdi); sr != srRef {
		t.Fatalf("disk on SR %s, want the default %s", sr, srRef)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}

	// A template without disks but with a post-install script.
	customTemplate(t, ctx, c, s, "script-only", map[string]string{"postinstall": "/bin/true"})
	vm, err = c.Provision(ctx, ProvisionSpec{Template: "script-only", Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	oc, _ := c.Call(ctx, "VM.get_other_config", vm.Ref)
	if _, ok := AsStringMap(oc)["postinstall"]; ok {
		t.Fatal("VM.provision was not called: the postinstall key is still there")
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}

	// An explicit SR: VM.copy, not VM.clone; a bad one is UUID_INVALID.
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultFail, Method: "VM.clone", Error: []string{"INTERNAL_ERROR", "clone used"}}); err != nil {
		t.Fatal(err)
	}
	vm, err = c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "c", SR: srUUID})
	if err != nil {
		t.Fatalf("provision onto an explicit SR: %v", err)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "d", SR: "00000000-0000-4000-8000-000000000000"}); !IsFailure(err, "UUID_INVALID") {
		t.Fatalf("unknown SR: got %v, want UUID_INVALID", err)
	}
	s.ClearFaults()
	for _, name := range []string{"stale-sr", "script-only"} {
		refs, _ := c.Call(ctx, "VM.get_by_name_label", name)
		for _, r := range AsStrings(refs) {
			if _, err := c.Call(ctx, "VM.destroy", r); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkNoGuests(t, s)
}

// event.from answers only when there are events or the timeout has
// passed, for the token "" too (xapi_event.ml from), and reports no del
// for an object both created and deleted after the token
// (collect_events).
func TestSimEventFromLikeXAPI(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	start := time.Now()
	res, err := c.Call(ctx, "event.from", []string{"vm/OpaqueRef:00000000-0000-4000-8000-000000000000"}, "", 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("event.from with token \"\" and nothing to report answered after %v, before its timeout", el)
	}
	if evs, _ := AsRecord(res)["events"].([]any); len(evs) != 0 {
		t.Fatalf("events %v", evs)
	}
	token := AsString(AsRecord(res)["token"])

	tmpl, err := c.FindTemplate(ctx, s.Config().TemplateName)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.callString(ctx, "VM.clone", tmpl, "short-lived")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "VM.destroy", ref); err != nil {
		t.Fatal(err)
	}
	res, err = c.Call(ctx, "event.from", []string{"vm"}, token, 0.2)
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := AsRecord(res)["events"].([]any)
	for _, e := range evs {
		if AsString(AsRecord(e)["ref"]) == ref {
			t.Fatalf("event %v for a VM created and destroyed after the token", e)
		}
	}
}

// The simulator checks VM operations in the order of xapi_vm_lifecycle.ml
// check_operation_error (power state first, then the template rules, then
// provision only on templates) and formats VM_SHUTDOWN_TIMEOUT's timeout
// as OCaml's string_of_float (xapi_xenops.ml).
func TestSimLifecycleChecksLikeXAPI(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true, CleanShutdownTimeout: time.Second})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	tmpl, err := c.FindTemplate(ctx, s.Config().TemplateName)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "VM.hard_shutdown", tmpl)
	if f := FailureOf(err); f == nil || f.Code != "VM_BAD_POWER_STATE" || len(f.Params) != 3 || f.Params[1] != "paused, suspended, running" || f.Params[2] != "halted" {
		t.Fatalf("hard_shutdown of a halted template: got %v, want VM_BAD_POWER_STATE [vm, paused, suspended, running, halted]", err)
	}
	_, err = c.Call(ctx, "VM.clean_shutdown", tmpl)
	if !IsFailure(err, "VM_BAD_POWER_STATE") {
		t.Fatalf("clean_shutdown of a halted template: got %v, want VM_BAD_POWER_STATE", err)
	}

	vm, err := c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "VM.provision", vm.Ref)
	if f := FailureOf(err); f == nil || f.Code != "PROVISION_ONLY_ALLOWED_ON_TEMPLATE" || len(f.Params) != 0 {
		t.Fatalf("provision of a VM: got %v, want PROVISION_ONLY_ALLOWED_ON_TEMPLATE []", err)
	}

	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultIgnoreShutdown, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "VM.clean_shutdown", vm.Ref)
	if f := FailureOf(err); f == nil || f.Code != "VM_SHUTDOWN_TIMEOUT" || len(f.Params) != 2 || f.Params[1] != "1." {
		t.Fatalf("clean_shutdown ignored: got %v, want VM_SHUTDOWN_TIMEOUT [vm, \"1.\"]", err)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

// VM.copy copies whole disks (xe vm-install uses it for sr-uuid): like
// VM.clone it is bounded by the caller's deadline, not CallTimeout.
func TestProvisionCopyIsALongCall(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s, func(o *Options) { o.CallTimeout = 200 * time.Millisecond })
	ctx := ctxT(t, 20*time.Second)
	_, srUUID, err := c.DefaultSR(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultDelay, Method: "VM.copy", Delay: 500 * time.Millisecond, Count: 1}); err != nil {
		t.Fatal(err)
	}
	vm, err := c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "slow-copy", SR: srUUID})
	if err != nil {
		t.Fatalf("a VM.copy longer than CallTimeout: %v", err)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

// A login XAPI refuses for authorisation (external auth: the user exists
// but is not allowed) is an authentication error like a bad password.
func TestAuthorizationFailedIsAuth(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true, Faults: []sim.Fault{{Kind: sim.FaultFail, Method: "session.login_with_password",
		Error: []string{"SESSION_AUTHORIZATION_FAILED", "root", "not authorized"}}}})
	c := clientFor(t, s)
	err := c.Login(ctxT(t, 10*time.Second))
	if !IsFailure(err, "SESSION_AUTHORIZATION_FAILED") || core.CodeOf(err) != core.ErrAuth {
		t.Fatalf("got %v (%v), want SESSION_AUTHORIZATION_FAILED as ErrAuth", err, core.CodeOf(err))
	}
}

// VM.destroy leaves a suspended VM's suspend image (xapi_vm_helpers.ml
// destroy); VM.hard_shutdown removes it (xapi_vm.ml hard_shutdown). So
// Destroy of a suspended VM must shut it down first.
func TestDestroySuspendedVMLeavesNoSuspendImage(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	vm, err := c.Launch(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "susp"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "VM.suspend", vm.Ref); err != nil {
		t.Fatal(err)
	}
	if ps, _ := vm.PowerState(ctx); ps != "Suspended" {
		t.Fatalf("power state %s after VM.suspend", ps)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

// VIF.create generates a MAC for "" only from the VM's other_config
// mac_seed (xapi_vif_helpers.ml create), which VM.clone sets
// (xapi_vm_clone.ml copy_vm_record); without it, or for a malformed MAC,
// it fails with MAC_INVALID.
func TestSimVIFMACLikeXAPI(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	tmpl, err := c.FindTemplate(ctx, "Debian Bookworm 12")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Call(ctx, "VM.get_other_config", tmpl); AsStringMap(v)["default_template"] != "true" {
		t.Fatalf("the default template's other_config %v lacks default_template=true", v)
	}
	ref, err := c.callString(ctx, "VM.clone", tmpl, "seeded")
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Call(ctx, "VM.get_other_config", ref)
	if err != nil {
		t.Fatal(err)
	}
	oc := AsStringMap(v)
	if oc["mac_seed"] == "" || oc["base_template_name"] != "Debian Bookworm 12" || oc["default_template"] != "" {
		t.Fatalf("clone's other_config %v: want a mac_seed and base_template_name, no default_template", oc)
	}
	net, err := c.PoolNetwork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vif := func(dev, mac string) error {
		_, err := c.Call(ctx, "VIF.create", vifRecord(ref, net, dev, mac))
		return err
	}
	if err := vif("0", ""); err != nil {
		t.Fatalf("MAC \"\" with a mac_seed: %v", err)
	}
	if err := vif("1", "02:00:zz:00:00:01"); !IsFailure(err, "MAC_INVALID") {
		t.Fatalf("a malformed MAC: got %v, want MAC_INVALID", err)
	}
	if _, err := c.Call(ctx, "VM.remove_from_other_config", ref, "mac_seed"); err != nil {
		t.Fatal(err)
	}
	if err := vif("2", ""); !IsFailure(err, "MAC_INVALID") {
		t.Fatalf("MAC \"\" without a mac_seed: got %v, want MAC_INVALID", err)
	}
	if err := c.VM(ref).Destroy(ctx); err != nil {
		t.Fatal(err)
	}
}

// A pool member checks the session before refusing the call: an unknown
// session is SESSION_INVALID, a known one HOST_IS_SLAVE (session_check.ml).
func TestSimPoolMemberChecksSessionFirst(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 10*time.Second)
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	sess := c.Session()
	if err := s.SetPoolMember("127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CallNoSession(ctx, "VM.get_all", "OpaqueRef:00000000-0000-4000-8000-000000000000"); !IsFailure(err, "SESSION_INVALID") {
		t.Fatalf("unknown session on a pool member: got %v, want SESSION_INVALID", err)
	}
	if _, err := c.CallNoSession(ctx, "VM.get_all", sess); !IsFailure(err, "HOST_IS_SLAVE") {
		t.Fatalf("known session on a pool member: got %v, want HOST_IS_SLAVE", err)
	}
}

// XAPI keeps a halted VM's guest metrics, stale, until VM.start deletes
// them (xapi_vm.ml start: delete_guest_metrics); VM.clone copies them
// (xapi_vm_helpers.ml copy_guest_metrics). WaitIP must not take such a
// stale address for a running guest's.
func TestStaleGuestMetricsLikeXAPI(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	vm, err := c.Launch(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "stale"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "VM.hard_shutdown", vm.Ref); err != nil {
		t.Fatal(err)
	}
	gm, err := c.callString(ctx, "VM.get_guest_metrics", vm.Ref)
	if err != nil || IsNullRef(gm) {
		t.Fatalf("guest metrics of a halted VM: %q %v; XAPI keeps them", gm, err)
	}
	if ip, err := vm.WaitIP(ctx); err == nil {
		t.Fatalf("WaitIP on a halted VM returned the stale address %s", ip)
	}
	clone, err := c.callString(ctx, "VM.clone", vm.Ref, "stale-clone")
	if err != nil {
		t.Fatal(err)
	}
	if cgm, _ := c.callString(ctx, "VM.get_guest_metrics", clone); IsNullRef(cgm) || cgm == gm {
		t.Fatalf("clone's guest metrics %q: want a copy of %q", cgm, gm)
	}
	if err := c.VM(clone).Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if now, _ := c.callString(ctx, "VM.get_guest_metrics", vm.Ref); now == gm {
		t.Fatal("VM.start kept the stale guest metrics")
	}
	if _, err := c.Call(ctx, "VM_guest_metrics.get_networks", gm); !IsFailure(err, "HANDLE_INVALID") {
		t.Fatalf("stale guest metrics after start: %v, want HANDLE_INVALID", err)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

// MESSAGE_PARAMETER_COUNT_MISMATCH counts as gen_server.ml does: the
// expected count leaves out parameters with defaults, the received count
// the session (so -1 without one), and the call is named without Async.
func TestSimParameterCountLikeXAPI(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 10*time.Second)
	want := func(err error, params ...string) {
		t.Helper()
		f := FailureOf(err)
		if f == nil || f.Code != "MESSAGE_PARAMETER_COUNT_MISMATCH" || strings.Join(f.Params, ",") != strings.Join(params, ",") {
			t.Fatalf("got %v, want MESSAGE_PARAMETER_COUNT_MISMATCH %v", err, params)
		}
	}
	_, err := c.CallNoSession(ctx, "session.login_with_password", "root")
	want(err, "session.login_with_password", "2", "1")
	_, err = c.CallNoSession(ctx, "VM.get_all")
	want(err, "VM.get_all", "0", "-1")
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "Async.VM.clone", "OpaqueRef:NULL")
	want(err, "VM.clone", "2", "1")
}

// XAPI finishes a call whose client went away: a synchronous VM.clone
// cut off by the caller's deadline still makes its VM. The simulator
// does the same with a delayed call.
func TestSyncCloneCutOffStillMakesItsVM(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	tmpl, err := c.FindTemplate(ctxT(t, 10*time.Second), s.Config().TemplateName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultDelay, Method: "VM.clone", Delay: 400 * time.Millisecond, Count: 1}); err != nil {
		t.Fatal(err)
	}
	// (A clone of a template is a template until VM.provision.)
	before := s.Stats().Templates
	if _, err := c.Call(ctxT(t, 100*time.Millisecond), "VM.clone", tmpl, "late"); core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
	s.WaitLateCalls()
	if got := s.Stats().Templates; got != before+1 {
		t.Errorf("%d templates after the cut-off clone, want %d", got, before+1)
	}
}

// Provision clones as a task: when its deadline cuts the clone off, it
// waits for the task (within CleanupTimeout) and removes the VM the task
// made, so nothing is left behind; the task is destroyed too.
//
// An Async.VM.clone (or copy) whose answer comes after the caller's
// deadline (reply-delay: a slow network) has made its task all the same:
// the client gave up on the answer, never saw the task's ref, and the
// clone's VM was left. The client waits a little past the deadline for
// the answer, then for the task, and removes the VM.
func TestProvisionCutOffLeavesNoVM(t *testing.T) {
	t.Parallel()
	for _, fault := range []string{sim.FaultDelay, sim.FaultReplyDelay} {
		for _, copyTo := range []bool{false, true} {
			s := startSim(t, sim.Options{NoSSH: true})
			c := clientFor(t, s)
			spec := ProvisionSpec{Template: s.Config().TemplateName, Name: "cut-off"}
			method := "VM.clone"
			if copyTo {
				_, sr, err := c.DefaultSR(ctxT(t, 10*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				spec.SR, method = sr, "VM.copy"
			}
			if _, err := s.SetFault(sim.Fault{Kind: fault, Method: method, Delay: 400 * time.Millisecond, Count: 1}); err != nil {
				t.Fatal(err)
			}
			before := s.Stats()
			_, err := c.Provision(ctxT(t, 100*time.Millisecond), spec)
			if core.CodeOf(err) != core.ErrTimeout {
				t.Fatalf("%s %s: got %v, want a timeout", fault, method, err)
			}
			s.WaitLateCalls()
			if got := s.Stats(); got.VMs != before.VMs || got.Templates != before.Templates || got.VDIs != before.VDIs || got.Tasks != 0 {
				t.Errorf("%s %s: left %+v (before: %+v)", fault, method, got, before)
			}
		}
	}
}

// A call on a graceContext (an Async.* call's) whose answer,
// SESSION_INVALID, comes after the caller's context ended is not sent
// again: the client logged in again and re-sent it within the grace,
// starting a clone nobody waited for but the cleanup.
func TestCallNotResentPastTheDeadline(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	if _, err := c.Call(ctxT(t, 10*time.Second), "VM.get_all"); err != nil {
		t.Fatal(err)
	}
	parent, cancel := context.WithCancel(context.Background())
	gctx, stop := graceContext(parent, time.Minute)
	defer stop()
	cancel()
	s.ExpireSessions()
	if _, err := c.Call(gctx, "VM.get_all"); !IsFailure(err, "SESSION_INVALID") {
		t.Fatalf("got %v, want SESSION_INVALID, not sent again", err)
	}
	if n := s.Stats().Sessions; n != 0 {
		t.Errorf("logged in again: %d sessions", n)
	}
	// Within the caller's time, the client logs in again as before.
	if _, err := c.Call(ctxT(t, 10*time.Second), "VM.get_all"); err != nil {
		t.Fatal(err)
	}
}

// An Async.* answer that does not come holds the caller asyncGrace past
// its deadline at most.
func TestAsyncAnswerWaitIsBounded(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultReplyDelay, Method: "VM.clone", Delay: time.Minute, Count: 1}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := c.Provision(ctxT(t, 100*time.Millisecond), ProvisionSpec{Template: s.Config().TemplateName, Name: "no-answer"})
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
	if took := time.Since(start); took < asyncGrace || took > asyncGrace+5*time.Second {
		t.Errorf("returned after %v, want about the deadline plus %v", took, asyncGrace)
	}
}

// A clone that fails in its task fails Provision as the synchronous call
// did: the XAPI failure, classified.
func TestProvisionCloneTaskFailure(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true, Faults: []sim.Fault{{Kind: sim.FaultFail, Method: "VM.clone",
		Error: []string{"SR_FULL", "OpaqueRef:sr", "1024", "0"}}}})
	c := clientFor(t, s)
	before := s.Stats()
	_, err := c.Provision(ctxT(t, 10*time.Second), ProvisionSpec{Template: s.Config().TemplateName, Name: "full"})
	if !IsFailure(err, "SR_FULL") || core.CodeOf(err) != core.ErrNoMem {
		t.Fatalf("got %v (%v), want SR_FULL as ErrNoMem", err, core.CodeOf(err))
	}
	if got := s.Stats(); got.Tasks != 0 || got.VMs != before.VMs || got.Templates != before.Templates {
		t.Errorf("left %+v (before: %+v)", got, before)
	}
}

// A task.get_status that fails once while the clone runs fails Provision,
// but the clone's task is still known: the client waits for it and
// removes its VM, as for a cut-off clone. It used to destroy the pending
// task and leave the VM.
func TestProvisionTaskPollFailureLeavesNoVM(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	spec := ProvisionSpec{Template: s.Config().TemplateName, Name: "poll-failed"}
	if _, err := c.FindTemplate(ctxT(t, 10*time.Second), spec.Template); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	for _, f := range []sim.Fault{
		{Kind: sim.FaultDelay, Method: "VM.clone", Delay: 300 * time.Millisecond, Count: 1},
		{Kind: sim.FaultFail, Method: "task.get_status", Error: []string{"INTERNAL_ERROR", "flaky"}, Count: 1},
	} {
		if _, err := s.SetFault(f); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Provision(ctxT(t, 10*time.Second), spec)
	if !IsFailure(err, "INTERNAL_ERROR") {
		t.Fatalf("got %v, want the poll's failure", err)
	}
	if got := s.Stats(); got.VMs != before.VMs || got.Templates != before.Templates || got.VDIs != before.VDIs || got.Tasks != 0 {
		t.Errorf("left %+v (before: %+v)", got, before)
	}
}

// The simulator-only sim.* methods are exempt from faults: a delay or reply-delay
// fault on "*" delayed their answers too (sim.clear_faults could not
// clear it at once), and a counted one was used up by them.
func TestDelayFaultsLeaveSimMethods(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{sim.FaultReplyDelay, sim.FaultDelay} {
		s := startSim(t, sim.Options{NoSSH: true})
		c := clientFor(t, s)
		if _, err := s.SetFault(sim.Fault{Kind: kind, Method: "*", Delay: 3 * time.Second, Count: 1}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := c.CallNoSession(ctxT(t, 10*time.Second), "sim.stats"); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: sim.stats answered after %v", kind, took)
		}
		if fs := s.Faults(); len(fs) != 1 {
			t.Errorf("%s: the fault was used up by sim.stats: %+v", kind, fs)
		}
		if _, err := c.CallNoSession(ctxT(t, 10*time.Second), "sim.clear_faults"); err != nil {
			t.Fatal(err)
		}
	}
}
