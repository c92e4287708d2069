package xapi

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"libbioxen/xapi/sim"
)

// startSim starts an in-process simulator that is closed (and checked for
// leaked sshd processes) when the test ends.
func startSim(t *testing.T, opts sim.Options) *sim.Server {
	t.Helper()
	if opts.IPDelay == 0 {
		opts.IPDelay = 100 * time.Millisecond
	}
	if opts.ShutdownDelay == 0 {
		opts.ShutdownDelay = 10 * time.Millisecond
	}
	opts.LogFunc = func(s string) { t.Log("sim: " + s) }
	s, err := sim.New(opts)
	if err != nil {
		t.Fatalf("sim.New: %v", err)
	}
	t.Cleanup(func() { closeAndCheck(t, s) })
	return s
}

// closeAndCheck closes the simulator and checks that its sshd processes
// and its state dir are gone.
func closeAndCheck(t *testing.T, s *sim.Server) {
	t.Helper()
	pids := s.Stats().SSHDPids
	dir := s.StateDir()
	s.Close()
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("sshd pid %d still alive after Close", pid)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("state dir %s left behind", dir)
	}
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// clientFor builds a client from the simulator's printed configuration.
func clientFor(t *testing.T, s *sim.Server, mod ...func(*Options)) *Client {
	t.Helper()
	cfg := s.Config()
	opts := Options{URL: cfg.XCPHost, Username: cfg.XCPUsername, Password: Secret(cfg.XCPPassword),
		Fingerprint: cfg.TLSFingerprint, AllowLoopbackIP: cfg.AllowLoopbackIP, SSHPortKey: cfg.SSHPortKey,
		CallTimeout: 30 * time.Second}
	for _, m := range mod {
		if m != nil {
			m(&opts)
		}
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// baseline is what a fresh simulator holds: templates have no disks, the
// -vif3 template has one VIF.
func checkNoGuests(t *testing.T, s *sim.Server) {
	t.Helper()
	st := s.Stats()
	if st.VMs != 0 || st.VDIs != 0 || st.VBDs != 0 || st.VIFs != 1 || st.GuestMetrics != 0 || st.SSHD != 0 {
		t.Errorf("simulator holds leftovers: %+v", st)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// vifRecord is a VIF.create record with every field XAPI requires.
func vifRecord(vm, network, device, mac string) map[string]any {
	return map[string]any{"device": device, "network": network, "VM": vm, "MAC": mac, "MTU": "1500",
		"other_config": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{}}
}
