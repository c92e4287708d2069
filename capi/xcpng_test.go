package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"libbioxen/xapi/sim"
)

// The xcpng engine through the C ABI, against the in-process XAPI simulator
// and its real sshd guests.
func TestXCPngThroughTheABI(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("openssh-server is not installed")
	}
	s, err := sim.New(sim.Options{})
	if err != nil {
		t.Skip("simulator: ", err)
	}
	defer s.Close()
	cfg, _ := json.Marshal(s.Config())
	h, st := testOpenConfig("xcpng", string(cfg))
	if st != 0 {
		t.Fatalf("open: %d %s", st, testErrmsg())
	}
	r, st := testExec(h, "x = 6 return x * 7", 0, 1)
	if st != 0 || r.stdout != "42\n" || r.values != "[42]" {
		t.Errorf("exec: %d %+v %s", st, r, testErrmsg())
	}
	r, st = testExec(h, "error('remote')", 0, 0)
	if st != 0 || r.success != 0 || !strings.HasPrefix(r.message, "input:1: remote") {
		t.Errorf("lua error: %d %+v", st, r)
	}
	if st := testClose(h); st != 0 {
		t.Errorf("close: %d", st)
	}
	if got := s.Stats(); got.VMs != 0 || got.VDIs != 0 {
		t.Errorf("leaked: %+v", got)
	}
	bad := strings.Replace(string(cfg), `"xcp_password":"`, `"xcp_password":"wrong`, 1)
	if _, st := testOpenConfig("xcpng", bad); st != 13 || strings.Contains(testErrmsg(), "wrong") {
		t.Errorf("wrong password: %d %q", st, testErrmsg())
	}
}
