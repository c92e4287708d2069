package xcpng

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"libbioxen/core"
	"libbioxen/sshsession/sshtest"
	"libbioxen/xapi/sim"
)

// The engine against the XAPI simulator and its real sshd guest: a call,
// a call past its deadline (prompt return, the interpreter killed and
// restarted), and a Close that leaves no VM and no goroutine behind.
func TestEngineWithSimulator(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("openssh-server is not installed")
	}
	if _, err := exec.LookPath("lua5.4"); err != nil {
		t.Skip("lua5.4 is not installed")
	}
	s, err := sim.New(sim.Options{})
	if err != nil {
		t.Skip("simulator: ", err)
	}
	defer s.Close()
	cfg, err := json.Marshal(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	eng, err := Open(core.Options{Name: "simtest", EngineConfig: cfg, Limits: core.Limits{}.WithDefaults()})
	if err != nil {
		t.Fatal(err)
	}
	e := eng.(*Engine)
	run := func(code string, timeout time.Duration) (*core.Result, error, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		res, err := e.Exec(ctx, &core.Request{Code: []byte(code), ChunkName: "=input"})
		return res, err, time.Since(start)
	}
	res, err, _ := run("x = 6 return x * 7", time.Minute)
	if err != nil || !res.Success || string(res.Values) != "[42]" {
		t.Fatalf("exec: %+v %v", res, err)
	}
	e.mu.Lock()
	pid := e.drv.pid // the guest is local: so is its process
	e.mu.Unlock()
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Fatalf("the remote interpreter's pid %d: %v", pid, err)
	}
	_, err, d := run("while true do end", time.Second)
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("endless loop: %v", err)
	}
	if d > time.Second+dropGrace+2*time.Second {
		t.Errorf("a call with a 1 s timeout returned after %v", d)
	}
	e.killers.Wait()
	waitFor(t, "the interpreter to be killed", 10*time.Second, func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return err != nil
	})
	// The next call restarts the interpreter (globals are lost).
	res, err, _ = run("return x == nil, 1 + 1", time.Minute)
	if err != nil || !res.Success || string(res.Values) != "[true,2]" {
		t.Fatalf("after the timeout: %+v %v", res, err)
	}
	closeAndCheckGoroutines(t, e)
	if got := s.Stats(); got.VMs != 0 || got.VDIs != 0 {
		t.Errorf("leaked: %+v", got)
	}
}

// vm_ip_timeout bounds the wait for the guest's address only, as
// docs/xcpng.md says: cloning, provisioning and VM.start, which may rightly
// take longer on a real host (disks are copied, the guest boots), are
// bounded by the whole start's deadline. A VM.start of 1.5 s with
// vm_ip_timeout 1 made start() fail with a timeout (and destroy the VM).
func TestIPTimeoutBoundsOnlyTheAddressWait(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("openssh-server is not installed")
	}
	if _, err := exec.LookPath("lua5.4"); err != nil {
		t.Skip("lua5.4 is not installed")
	}
	s, err := sim.New(sim.Options{IPDelay: 100 * time.Millisecond,
		Faults: []sim.Fault{{Kind: sim.FaultDelay, Method: "VM.start", Delay: 1500 * time.Millisecond, Count: 1}}})
	if err != nil {
		t.Skip("simulator: ", err)
	}
	defer s.Close()
	cfg := simConfigWith(t, s, func(m map[string]any) { m["vm_ip_timeout"] = 1 })
	eng, err := Open(core.Options{Name: "iptimeout", EngineConfig: cfg, Limits: core.Limits{}.WithDefaults()})
	if err != nil {
		t.Fatalf("a VM.start longer than vm_ip_timeout: %v", err)
	}
	e := eng.(*Engine)
	closeAndCheckGoroutines(t, e)
	if got := s.Stats(); got.VMs != 0 || got.VDIs != 0 {
		t.Errorf("leaked: %+v", got)
	}
}

// The ssh-agent's keys are offered to the guest only with vm_use_agent:
// with a vm_key_file the guest does not accept and the accepted key in
// the agent, the start fails with an authentication error by default and
// succeeds with vm_use_agent.
func TestAgentKeysOnlyWhenAsked(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("openssh-server is not installed")
	}
	if _, err := exec.LookPath("lua5.4"); err != nil {
		t.Skip("lua5.4 is not installed")
	}
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen is not installed")
	}
	s, err := sim.New(sim.Options{IPDelay: 50 * time.Millisecond})
	if err != nil {
		t.Skip("simulator: ", err)
	}
	defer s.Close()
	t.Setenv("SSH_AUTH_SOCK", sshtest.StartAgent(t, s.Config().VMKeyFile))
	other := filepath.Join(t.TempDir(), "other")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	for _, useAgent := range []bool{false, true} {
		cfg := simConfigWith(t, s, func(m map[string]any) {
			delete(m, "vm_password")
			m["vm_key_file"] = other
			if useAgent {
				m["vm_use_agent"] = true
			}
		})
		eng, err := Open(core.Options{Name: "agent", EngineConfig: cfg, Limits: core.Limits{}.WithDefaults()})
		switch {
		case useAgent && err != nil:
			t.Fatalf("vm_use_agent: %v", err)
		case useAgent:
			closeAndCheckGoroutines(t, eng.(*Engine))
		case core.CodeOf(err) != core.ErrAuth:
			t.Fatalf("without vm_use_agent: %v (%v), want an authentication error", err, core.CodeOf(err))
		}
	}
	if got := s.Stats(); got.VMs != 0 {
		t.Errorf("leaked: %+v", got)
	}
}

// simConfigWith is the simulator's config JSON as edit changes it.
func simConfigWith(t *testing.T, s *sim.Server, edit func(map[string]any)) []byte {
	t.Helper()
	raw, err := json.Marshal(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	cfg, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
