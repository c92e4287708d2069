package xapi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"libbioxen/core"
	"libbioxen/xapi/sim"
)

func needSSHD(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("/usr/sbin/sshd"); err != nil {
		t.Skip("openssh-server is not installed")
	}
}

func sshArgs(cfg sim.Config, port int, cmd ...string) []string {
	return append([]string{"-F", "/dev/null", "-i", cfg.VMKeyFile,
		"-o", "UserKnownHostsFile=" + cfg.VMKnownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "ConnectTimeout=10", "-p", strconv.Itoa(port), cfg.VMUsername + "@127.0.0.1"}, cmd...)
}

// TestLaunchSSH is the end-to-end path: provision, start, IP, a real ssh
// session running lua5.4 on the guest, shutdown, destroy.
func TestLaunchSSH(t *testing.T) {
	needSSHD(t)
	t.Parallel()
	s := startSim(t, sim.Options{})
	cfg := s.Config()
	c := clientFor(t, s)
	ctx := ctxT(t, 60*time.Second)
	start := time.Now()
	vm, err := c.Launch(ctx, ProvisionSpec{Template: cfg.TemplateName, Name: "lua-guest-1",
		OtherConfig: map[string]string{"bioxen-vm-id": "lua-guest-1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("launch took %s: %s at %s:%d", time.Since(start), vm.UUID, vm.IP, vm.SSHPort)
	if vm.IP != "127.0.0.1" || vm.SSHPort <= 0 || vm.SSHPort == 22 {
		t.Fatalf("address %s:%d", vm.IP, vm.SSHPort)
	}
	st := s.Stats()
	if st.VMs != 1 || st.RunningVMs != 1 || st.VDIs != 1 || st.VIFs != 2 || st.SSHD != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The VIF went on the management network, not the host-internal one.
	vifs, _ := c.Call(ctx, "VM.get_VIFs", vm.Ref)
	nw, _ := c.callString(ctx, "VIF.get_network", AsStrings(vifs)[0])
	if bridge, _ := c.callString(ctx, "network.get_bridge", nw); bridge != "xenbr0" {
		t.Fatalf("VIF on bridge %q", bridge)
	}
	oc, _ := c.Call(ctx, "VM.get_other_config", vm.Ref)
	if m := AsStringMap(oc); m["bioxen-vm-id"] != "lua-guest-1" || m["disks"] != "" {
		t.Fatalf("other_config %v", m)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(vm.IP, strconv.Itoa(vm.SSHPort)), 5*time.Second); err != nil {
		t.Fatal(err)
	} else {
		conn.Close()
	}

	// OpenSSH client, key auth, strict host key checking against the
	// simulator's known_hosts.
	out, err := exec.CommandContext(ctx, "ssh", sshArgs(cfg, vm.SSHPort, "lua5.4", "-v")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Lua 5.4") {
		t.Fatalf("ssh lua5.4 -v: %v: %s", err, out)
	}
	out, err = exec.CommandContext(ctx, "ssh", sshArgs(cfg, vm.SSHPort, "luarocks", "config", "lua_version")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "5.4" {
		t.Errorf("luarocks for the guest user: %v: %q", err, out)
	}

	// Password auth (x/crypto/ssh), host key from the same known_hosts.
	if cfg.VMPassword != "" {
		hk, err := knownhosts.New(cfg.VMKnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := ssh.Dial("tcp", net.JoinHostPort(vm.IP, strconv.Itoa(vm.SSHPort)), &ssh.ClientConfig{
			User: cfg.VMUsername, Auth: []ssh.AuthMethod{ssh.Password(cfg.VMPassword)},
			HostKeyCallback: hk, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("password login: %v", err)
		}
		sess, _ := cl.NewSession()
		var buf bytes.Buffer
		sess.Stdout = &buf
		if err := sess.Run(`lua5.4 -e 'print(6*7)'`); err != nil || strings.TrimSpace(buf.String()) != "42" {
			t.Fatalf("lua over ssh: %v %q", err, buf.String())
		}
		sess.Close()
		cl.Close()
	}

	if err := vm.Shutdown(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if ps, _ := vm.PowerState(ctx); ps != "Halted" {
		t.Fatalf("power state %s", ps)
	}
	// The guest metrics stay, stale, until the next start (as in XAPI).
	if st := s.Stats(); st.SSHD != 0 || st.GuestMetrics != 1 {
		t.Fatalf("after shutdown: %+v", st)
	}
	for _, pid := range st.SSHDPids {
		if processAlive(pid) {
			t.Fatalf("sshd %d alive after shutdown", pid)
		}
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
	list, err := c.ListVMs(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListVMs: %v %v", list, err)
	}
}

func TestUnknownTemplate(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	_, err := c.Provision(ctxT(t, 10*time.Second), ProvisionSpec{Template: "no-such-template", Name: "x"})
	if !errors.Is(err, ErrTemplateNotFound) || core.CodeOf(err) != core.ErrInvalid {
		t.Fatalf("got %v", err)
	}
	// A snapshot is not a template, even with the right flags and name.
	_, err = c.FindTemplate(ctxT(t, 10*time.Second), s.Config().TemplateName)
	if err != nil {
		t.Fatalf("the template and its same-named snapshot: %v", err)
	}
	checkNoGuests(t, s)
}

func TestIPNeverAppears(t *testing.T) {
	needSSHD(t)
	t.Parallel()
	s := startSim(t, sim.Options{Faults: []sim.Fault{{Kind: sim.FaultNoIP}}})
	c := clientFor(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Launch(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "silent"})
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("got %v, want a timeout", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("Launch took %s past its 1.5s deadline", d)
	}
	t.Logf("error after %s: %v", time.Since(start), err)
	checkNoGuests(t, s)
}

func TestCleanShutdownTimeoutThenHard(t *testing.T) {
	needSSHD(t)
	t.Parallel()
	s := startSim(t, sim.Options{Faults: []sim.Fault{{Kind: sim.FaultIgnoreShutdown}}})
	c := clientFor(t, s)
	ctx := ctxT(t, 60*time.Second)
	vm, err := c.Launch(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "stubborn"})
	if err != nil {
		t.Fatal(err)
	}
	// The raw call times out like XAPI's would (on the client side here).
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.Call(short, "VM.clean_shutdown", vm.Ref)
	cancel()
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("clean_shutdown on a stubborn guest: %v", err)
	}
	start := time.Now()
	if err := vm.Shutdown(ctx, 400*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Shutdown took %s", d)
	}
	if ps, _ := vm.PowerState(ctx); ps != "Halted" {
		t.Fatalf("power state %s", ps)
	}
	if s.Stats().SSHD != 0 {
		t.Fatal("sshd still running")
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

func TestDestroyRemovesVDIs(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 20*time.Second)
	vm, err := c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "disky"})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.VMs != 1 || st.VDIs != 1 || st.VBDs != 1 || st.VIFs != 2 {
		t.Fatalf("after provision: %+v", st)
	}
	// The disk landed on the default SR with the template's size.
	vbds, _ := c.Call(ctx, "VM.get_VBDs", vm.Ref)
	vdi, _ := c.callString(ctx, "VBD.get_VDI", AsStrings(vbds)[0])
	size, _ := c.Call(ctx, "VDI.get_virtual_size", vdi)
	if n, _ := AsInt(size); n != 10737418240 {
		t.Fatalf("virtual_size %v", size)
	}
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Destroy on a running VM forces it off first.
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
	if _, err := c.Call(ctx, "VDI.get_record", vdi); !IsFailure(err, "HANDLE_INVALID") {
		t.Fatalf("VDI still there: %v", err)
	}
}

func TestProvisionFailureCleansUp(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	for _, method := range []string{"VIF.create", "VM.provision", "VM.set_other_config"} {
		if _, err := s.SetFault(sim.Fault{Kind: sim.FaultFail, Method: method, Error: []string{"SR_FULL", "1", "0"}, Count: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Provision(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "doomed"})
		if !IsFailure(err, "SR_FULL") || core.CodeOf(err) != core.ErrNoMem {
			t.Fatalf("%s: got %v", method, err)
		}
		checkNoGuests(t, s)
	}
	// A start failure after provisioning: Launch removes the VM and its disk.
	if _, err := s.SetFault(sim.Fault{Kind: sim.FaultFail, Method: "VM.start", Error: []string{"NO_HOSTS_AVAILABLE"}, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Launch(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "doomed"}); !IsFailure(err, "NO_HOSTS_AVAILABLE") {
		t.Fatalf("got %v", err)
	}
	checkNoGuests(t, s)
}

func TestSSHDDownAfterStart(t *testing.T) {
	needSSHD(t)
	t.Parallel()
	s := startSim(t, sim.Options{})
	c := clientFor(t, s)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.CallNoSession(ctx, "sim.set_fault", map[string]any{"kind": "sshd-down", "count": 1}); err != nil {
		t.Fatal(err)
	}
	vm, err := c.Launch(ctx, ProvisionSpec{Template: s.Config().TemplateName, Name: "no-sshd"})
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(vm.IP, strconv.Itoa(vm.SSHPort)), 2*time.Second); err == nil {
		conn.Close()
		t.Fatal("sshd still accepts connections")
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

// A template that already has a VIF (device 3): no VIF is added, and the IP
// is found under "3/ip".
func TestVIFDeviceNotZero(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true})
	c := clientFor(t, s)
	ctx := ctxT(t, 20*time.Second)
	vm, err := c.Launch(ctx, ProvisionSpec{Template: s.Config().TemplateName + "-vif3", Name: "dev3"})
	if err != nil {
		t.Fatal(err)
	}
	gm, _ := c.callString(ctx, "VM.get_guest_metrics", vm.Ref)
	nets, _ := c.Call(ctx, "VM_guest_metrics.get_networks", gm)
	if m := AsStringMap(nets); m["3/ip"] != "127.0.0.1" || m["0/ip"] != "" {
		t.Fatalf("networks %v", m)
	}
	if st := s.Stats(); st.VIFs != 2 {
		t.Fatalf("VIFs %d", st.VIFs)
	}
	if err := vm.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

// Polling fallback when event.from is not available.
func TestWaitIPWithoutEvents(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true, IPDelay: 600 * time.Millisecond,
		Faults: []sim.Fault{{Kind: sim.FaultFail, Method: "event.from", Error: []string{"MESSAGE_METHOD_UNKNOWN", "event.from"}}}})
	c := clientFor(t, s)
	vm, err := c.Launch(ctxT(t, 20*time.Second), ProvisionSpec{Template: s.Config().TemplateName, Name: "polled"})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Destroy(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	checkNoGuests(t, s)
}

// TestConcurrentLaunch provisions 20 VMs at once on one client and
// compares with a single launch.
func TestConcurrentLaunch(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	needSSHD(t)
	s := startSim(t, sim.Options{IPDelay: 100 * time.Millisecond})
	cfg := s.Config()
	c := clientFor(t, s)
	ctx := ctxT(t, 120*time.Second)
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	callStart := time.Now()
	const calls = 200
	for range calls {
		if _, err := c.Call(ctx, "VM.get_power_state", NullRef); !IsFailure(err, "HANDLE_INVALID") {
			t.Fatal(err)
		}
	}
	t.Logf("one XAPI call: %s on average", time.Since(callStart)/calls)

	start := time.Now()
	one, err := c.Launch(ctx, ProvisionSpec{Template: cfg.TemplateName, Name: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	single := time.Since(start)
	if err := one.Destroy(ctx); err != nil {
		t.Fatal(err)
	}

	const n = 20
	vms := make([]*VM, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start = time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vms[i], errs[i] = c.Launch(ctx, ProvisionSpec{Template: cfg.TemplateName, Name: "par-" + strconv.Itoa(i)})
		}()
	}
	wg.Wait()
	parallel := time.Since(start)
	ports := map[int]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("VM %d: %v", i, err)
		}
		ports[vms[i].SSHPort] = true
	}
	if len(ports) != n || s.Stats().SSHD != n {
		t.Fatalf("%d distinct ports, %d sshd", len(ports), s.Stats().SSHD)
	}
	// Each guest answers on its own port with its own host key.
	out, err := exec.CommandContext(ctx, "ssh", sshArgs(cfg, vms[n-1].SSHPort, "echo", "ok")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("ssh to the last guest: %v %s", err, out)
	}
	start = time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = vms[i].Destroy(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("launch (provision+start+IP, ip-delay 100ms): 1 VM %s; %d VMs concurrently %s; destroy %d: %s",
		single.Round(time.Millisecond), n, parallel.Round(time.Millisecond), n, time.Since(start).Round(time.Millisecond))
	checkNoGuests(t, s)
}
