package xapi

import (
	"testing"
	"time"

	"libbioxen/xapi/sim"
)

// TestSimulatorSemantics covers the rest of the simulated XAPI subset and
// the simulator-only sim.* methods.
func TestSimulatorSemantics(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	must := func(v any, err error) any {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	expect := func(err error, code string) {
		t.Helper()
		if !IsFailure(err, code) {
			t.Fatalf("got %v, want %s", err, code)
		}
	}
	sess := c.Session()
	if sess == "" {
		must(nil, c.Login(ctx))
		sess = c.Session()
	}
	host := AsString(must(c.Call(ctx, "session.get_this_host", sess)))
	if addr := AsString(must(c.Call(ctx, "host.get_address", host))); addr != "127.0.0.1" {
		t.Fatalf("host address %q", addr)
	}
	if AsString(must(c.Call(ctx, "session.get_uuid", sess))) == "" {
		t.Fatal("no session uuid")
	}
	id1 := AsString(must(c.Call(ctx, "event.get_current_id")))

	// Provision onto a named network; VM.copy to an explicit SR.
	vm, err := c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "copy-src",
		Network: "Pool-wide network associated with eth0", Description: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if AsString(must(c.Call(ctx, "event.get_current_id"))) == id1 {
		t.Fatal("event id did not move")
	}
	srRef, _, err := c.DefaultSR(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp := AsString(must(c.Call(ctx, "VM.copy", vm.Ref, "copy-dst", srRef)))
	if st := s.Stats(); st.VMs != 2 || st.VDIs != 2 || st.VIFs != 3 {
		t.Fatalf("after copy: %+v", st)
	}
	expect(func() error { _, err := c.Call(ctx, "VM.set_memory_limits", cp, "1", "0", "1", "1"); return err }(), "MEMORY_CONSTRAINT_VIOLATION")
	must(c.Call(ctx, "VM.set_memory_limits", cp, 1<<30, 4<<30, 2<<30, 4<<30))
	if n, _ := AsInt(must(c.Call(ctx, "VM.get_memory_dynamic_min", cp))); n != 2<<30 {
		t.Fatalf("dynamic_min %d", n)
	}
	vifs := AsStrings(must(c.Call(ctx, "VM.get_VIFs", cp)))
	_, err = c.Call(ctx, "VIF.create", vifRecord(cp, AsString(must(c.Call(ctx, "VIF.get_network", vifs[0]))), "0", ""))
	expect(err, "DEVICE_ALREADY_EXISTS")
	must(c.Call(ctx, "VIF.destroy", vifs[0]))
	vbds := AsStrings(must(c.Call(ctx, "VM.get_VBDs", cp)))
	vdi := AsString(must(c.Call(ctx, "VBD.get_VDI", vbds[0])))
	must(c.Call(ctx, "VBD.destroy", vbds[0]))
	must(c.Call(ctx, "VDI.destroy", vdi))
	must(c.Call(ctx, "VM.destroy", cp))

	// VM.shutdown falls back to hard; VDI in use while running.
	must(nil, vm.Start(ctx))
	vbds = AsStrings(must(c.Call(ctx, "VM.get_VBDs", vm.Ref)))
	vdi = AsString(must(c.Call(ctx, "VBD.get_VDI", vbds[0])))
	_, err = c.Call(ctx, "VDI.destroy", vdi)
	expect(err, "VDI_IN_USE")
	_, err = c.Call(ctx, "VM.destroy", vm.Ref)
	expect(err, "VM_BAD_POWER_STATE")
	_, err = c.Call(ctx, "VM.start", vm.Ref, false, false)
	expect(err, "VM_BAD_POWER_STATE")
	must(c.Call(ctx, "VM.shutdown", vm.Ref))
	if ps, _ := vm.PowerState(ctx); ps != "Halted" {
		t.Fatalf("power %s", ps)
	}
	must(nil, c.VM(vm.Ref).Destroy(ctx))

	// Default templates cannot be destroyed (xapi_vm_lifecycle.ml
	// check_template).
	deb, err := c.FindTemplate(ctx, "Debian Bookworm 12")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, "VM.destroy", deb)
	expect(err, "VM_IS_TEMPLATE")

	// sim.* methods over the wire.
	must(c.CallNoSession(ctx, "sim.set_fault", map[string]any{"kind": "fail", "method": "VM_get_all", "error": []string{"NO_HOSTS_AVAILABLE"}}))
	if fs := must(c.CallNoSession(ctx, "sim.list_faults")); len(fs.([]any)) != 1 || len(s.Faults()) != 1 {
		t.Fatalf("faults %v", fs)
	}
	_, err = c.Call(ctx, "VM.get_all")
	expect(err, "NO_HOSTS_AVAILABLE")
	must(c.CallNoSession(ctx, "sim.clear_faults"))
	must(c.Call(ctx, "VM.get_all"))
	_, err = c.CallNoSession(ctx, "sim.set_fault", map[string]any{"kind": "bogus"})
	expect(err, "INVALID_VALUE")
	st := AsStringMap(must(c.CallNoSession(ctx, "sim.stats")))
	if st["vms"] != "0" || st["vdis"] != "0" || st["sessions"] != "1" {
		t.Fatalf("sim.stats %v", st)
	}
	if n := AsString(must(c.CallNoSession(ctx, "sim.expire_sessions"))); n != "1" {
		t.Fatalf("expired %s", n)
	}
	// Pool-member mode: the client follows HOST_IS_SLAVE to the (dead) master.
	must(c.CallNoSession(ctx, "sim.set_pool_member", "127.0.0.9:1"))
	if err := c.Login(ctx); err == nil || FailureOf(err) != nil || c.URL() != "http://127.0.0.9:1/" {
		t.Fatalf("login on a member: %v (url %s)", err, c.URL())
	}
	checkNoGuests(t, s)
}
