package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"libbioxen/xapi"
)

var simBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xapi-sim-test-")
	if err != nil {
		panic(err)
	}
	simBin = filepath.Join(dir, "xapi-sim")
	out, err := exec.Command("go", "build", "-o", simBin, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("go build: " + err.Error() + ": " + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

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

// readConfig reads the single JSON line the simulator prints.
func readConfig(t *testing.T, r io.Reader) map[string]any {
	t.Helper()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the config line: %v (%q)", err, line)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(line), &cfg); err != nil {
		t.Fatalf("config is not JSON: %v: %s", err, line)
	}
	return cfg
}

func clientFromConfig(t *testing.T, cfg map[string]any) *xapi.Client {
	t.Helper()
	fp, _ := cfg["xcp_tls_fingerprint"].(string)
	c, err := xapi.New(xapi.Options{URL: cfg["xcp_host"].(string), Username: cfg["xcp_username"].(string),
		Password: xapi.Secret(cfg["xcp_password"].(string)), Fingerprint: fp,
		AllowLoopbackIP: cfg["xcp_allow_loopback_ip"] == true, SSHPortKey: cfg["vm_ssh_port_key"].(string)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stats(t *testing.T, ctx context.Context, c *xapi.Client) map[string]string {
	t.Helper()
	v, err := c.CallNoSession(ctx, "sim.stats")
	if err != nil {
		t.Fatal(err)
	}
	return xapi.AsStringMap(v)
}

func TestPrintConfigServeAndSIGTERM(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("openssh-server is not installed")
	}
	cmd := exec.Command(simBin, "-listen", "127.0.0.1:0", "-print-config", "-tls", "-ip-delay", "100ms")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	cfg := readConfig(t, stdout)
	for _, k := range []string{"xcp_host", "xcp_username", "xcp_password", "template_name", "vm_username",
		"vm_key_file", "vm_known_hosts", "xcp_tls_fingerprint", "xcp_tls_ca_file"} {
		if s, _ := cfg[k].(string); s == "" {
			t.Errorf("config key %s missing: %v", k, cfg)
		}
	}
	if !strings.HasPrefix(cfg["xcp_host"].(string), "https://127.0.0.1:") {
		t.Fatalf("xcp_host %v", cfg["xcp_host"])
	}
	stateDir := cfg["sim_state_dir"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clientFromConfig(t, cfg)
	vm, err := c.Launch(ctx, xapi.ProvisionSpec{Template: cfg["template_name"].(string), Name: "from-binary"})
	if err != nil {
		t.Fatal(err)
	}
	st := stats(t, ctx, c)
	if st["vms"] != "1" || st["sshd"] != "1" {
		t.Fatalf("stats %v", st)
	}
	kh, _ := os.ReadFile(cfg["vm_known_hosts"].(string))
	if !strings.Contains(string(kh), "[127.0.0.1]:"+strconv.Itoa(vm.SSHPort)+" ssh-ed25519 ") {
		t.Fatalf("known_hosts: %s", kh)
	}
	v, _ := c.CallNoSession(ctx, "sim.stats")
	var pids []int
	for _, p := range xapi.AsStrings(xapi.AsRecord(v)["sshd_pids"]) {
		n, _ := strconv.Atoi(p)
		pids = append(pids, n)
	}
	_ = c.Close(ctx)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("simulator did not exit on SIGTERM")
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("sshd %d survived the simulator", pid)
		}
	}
	if _, err := os.Stat(stateDir); err == nil {
		t.Errorf("state dir %s left behind", stateDir)
	}
}

// The simulator cleans up when its parent process goes away.
func TestParentExit(t *testing.T) {
	sh := exec.Command("sh", "-c", `"$0" -listen 127.0.0.1:0 -print-config -no-ssh & echo "$!"; read x`, simBin)
	stdin, _ := sh.StdinPipe()
	stdout, _ := sh.StdoutPipe()
	sh.Stderr = os.Stderr
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	pidLine, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(pidLine))
	cfg := readConfig(t, r)
	stateDir := cfg["sim_state_dir"].(string)
	stdin.Close() // the shell exits; the simulator is orphaned
	_ = sh.Wait()
	waitFor(t, 10*time.Second, "the orphaned simulator to exit", func() bool { return !alive(pid) })
	waitFor(t, 5*time.Second, "its state dir to go", func() bool { _, err := os.Stat(stateDir); return err != nil })
}

func TestFaultFlags(t *testing.T) {
	cmd := exec.Command(simBin, "-print-config", "-no-ssh", "-fail", "VM.get_all=NO_HOSTS_AVAILABLE", "-delay", "pool.get_all=200ms")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	}()
	cfg := readConfig(t, stdout)
	c := clientFromConfig(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, "VM.get_all"); !xapi.IsFailure(err, "NO_HOSTS_AVAILABLE") {
		t.Fatalf("-fail: %v", err)
	}
	start := time.Now()
	if _, err := c.Call(ctx, "pool.get_all"); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("-delay: %v after %s", err, time.Since(start))
	}
	if _, err := c.CallNoSession(ctx, "sim.clear_faults"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(ctx, "VM.get_all"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(ctx)
	bad := exec.Command(simBin, "-fail", "nonsense")
	if err := bad.Run(); err == nil {
		t.Fatal("a bad -fail was accepted")
	}
}
