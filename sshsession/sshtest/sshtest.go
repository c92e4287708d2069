// Package sshtest runs a real OpenSSH sshd on 127.0.0.1 for tests: a fresh
// ed25519 host key, a client key authorized for root, optional password
// login as the system user bioxen-test, all files in a temporary
// directory. It needs root (sshd's privilege separation, PAM and logins as
// another user); without root, or without sshd, Start skips the test.
//
// Everything is stopped by the pids this package started or found as
// descendants of its own sshd: never by process name.
package sshtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// PasswordUser is the system user created for password-login tests.
const PasswordUser = "bioxen-test"

// Server is one sshd, restartable on the same port with the same host key.
type Server struct {
	Host          string // 127.0.0.1
	Port          int
	Addr          string // 127.0.0.1:Port
	Dir           string // temporary directory holding every file below
	HostKeyFile   string // the server's ed25519 host key
	ClientKeyFile string // unencrypted ed25519 private key authorized for root and bioxen-test
	ConfigFile    string

	t      testing.TB
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *tailWriter
	hostPK ssh.PublicKey
	clPriv ed25519.PrivateKey
}

// Sshd is the sshd binary used.
func Sshd() (string, error) {
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("sshd")
}

// Start starts sshd on a free 127.0.0.1 port and registers its Stop with
// t.Cleanup. It skips t when not root or when sshd is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sshtest: needs root to run sshd")
	}
	if _, err := Sshd(); err != nil {
		t.Skip("sshtest: sshd not installed (Debian: openssh-server)")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshtest: privilege separation directory: %v", err)
	}
	// Traversable (0711) so that bioxen-test can read authorized_keys (0644);
	// the private keys stay 0600.
	dir, err := os.MkdirTemp("", "sshtest-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o711))
	s := &Server{
		Host:          "127.0.0.1",
		Dir:           dir,
		HostKeyFile:   filepath.Join(dir, "ssh_host_ed25519_key"),
		ClientKeyFile: filepath.Join(dir, "id_ed25519"),
		ConfigFile:    filepath.Join(dir, "sshd_config"),
		t:             t,
		logs:          &tailWriter{max: 256 << 10},
	}
	s.Port = FreePort(t)
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	s.RegenerateHostKey()

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	s.clPriv = priv
	writeKey(t, s.ClientKeyFile, priv, "")
	spub, err := ssh.NewPublicKey(pub)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(spub), 0o644))
	must(t, os.WriteFile(s.ConfigFile, []byte(s.config()), 0o600))

	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshd log (tail):\n%s", s.Logs())
		}
	})
	s.Restart()
	return s
}

func (s *Server) config() string {
	return fmt.Sprintf(`# sshtest: throwaway test server, loopback only
ListenAddress %s
Port %d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM yes
PermitRootLogin prohibit-password
AllowUsers root %s
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 32
MaxStartups 64:30:128
ClientAliveInterval 0
LogLevel VERBOSE
`, s.Host, s.Port, s.HostKeyFile, filepath.Join(s.Dir, "sshd.pid"), filepath.Join(s.Dir, "authorized_keys"), PasswordUser)
}

// Restart starts sshd again (same port, same host key, same config) after
// Stop or Kill, and waits until it answers with an SSH banner.
func (s *Server) Restart() {
	t := s.t
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatalf("sshtest: sshd already running (pid %d)", s.cmd.Process.Pid)
	}
	bin, _ := Sshd()
	cmd := exec.Command(bin, "-D", "-e", "-f", s.ConfigFile)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshtest: start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			s.cmd = nil
			t.Fatalf("sshtest: sshd exited at start: %s\n%s", cmd.ProcessState, s.Logs())
		default:
		}
		if banner(s.Addr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshtest: sshd on %s not ready after 15 s\n%s", s.Addr, s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-2.0-")
}

// Pid is the listening sshd's pid (0 when stopped).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// SessionPids are the pids of every process below the listening sshd: the
// per-connection sshd processes and the commands they run.
func (s *Server) SessionPids() []int {
	pid := s.Pid()
	if pid == 0 {
		return nil
	}
	return Descendants(pid)
}

// ConnectionPids are the per-connection sshd processes (monitor and
// unprivileged child), without the commands they run.
func (s *Server) ConnectionPids() []int {
	var out []int
	for _, p := range s.SessionPids() {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.TrimSpace(string(comm)) == "sshd" {
			out = append(out, p)
		}
	}
	return out
}

// Stop ends sshd and everything below it (SIGTERM to the listener, SIGKILL
// to its descendants) and waits. Idempotent.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

// Kill ends sshd and everything below it with SIGKILL, as a crash or a
// vanished VM would: open connections see the TCP connection drop.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	kids := Descendants(pid)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	// A child forked just before the kill: one more pass.
	for _, k := range Descendants(pid) {
		syscall.Kill(k, syscall.SIGKILL)
	}
	WaitGone(kids, 10*time.Second)
	s.cmd = nil
}

// RegenerateHostKey writes a new host key; it takes effect at the next
// Restart (the listener re-reads it per connection only after a restart).
func (s *Server) RegenerateHostKey() {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(s.t, err)
	writeKey(s.t, s.HostKeyFile, priv, "")
	pk, err := ssh.NewPublicKey(pub)
	must(s.t, err)
	s.mu.Lock()
	s.hostPK = pk
	s.mu.Unlock()
}

// HostKey is the server's current public host key.
func (s *Server) HostKey() ssh.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostPK
}

// KnownHostsLine is the known_hosts line for the current host key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey())
}

// WriteKnownHosts writes a known_hosts file holding the current host key
// and returns its path.
func (s *Server) WriteKnownHosts(name string) string {
	p := filepath.Join(s.Dir, name)
	must(s.t, os.WriteFile(p, []byte(s.KnownHostsLine()+"\n"), 0o600))
	return p
}

// WriteEncryptedClientKey writes the client key encrypted with passphrase
// and returns its path.
func (s *Server) WriteEncryptedClientKey(name, passphrase string) string {
	p := filepath.Join(s.Dir, name)
	writeKey(s.t, p, s.clPriv, passphrase)
	return p
}

// Logs returns the tail of sshd's log (-e: stderr).
func (s *Server) Logs() string { return s.logs.String() }

var (
	userOnce sync.Once
	userPass string
	userErr  error
)

// PasswordLogin creates the system user bioxen-test if it does not exist
// (useradd -m) and sets a random password (chpasswd), once per process.
// It skips t when not root or when that fails.
func PasswordLogin(t testing.TB) (user, password string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sshtest: password login needs root to create " + PasswordUser)
	}
	userOnce.Do(func() {
		if err := exec.Command("id", "-u", PasswordUser).Run(); err != nil {
			out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", PasswordUser).CombinedOutput()
			// exit 9: created meanwhile by another process
			var ee *exec.ExitError
			if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 9) {
				userErr = fmt.Errorf("useradd %s: %v: %s", PasswordUser, err, out)
				return
			}
		}
		b := make([]byte, 18)
		rand.Read(b)
		pw := "Bx-" + hex.EncodeToString(b)
		cmd := exec.Command("chpasswd")
		cmd.Stdin = strings.NewReader(PasswordUser + ":" + pw + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			userErr = fmt.Errorf("chpasswd: %v: %s", err, out)
			return
		}
		userPass = pw
	})
	if userErr != nil {
		t.Skipf("sshtest: %v", userErr)
	}
	return PasswordUser, userPass
}

// StartAgent starts ssh-agent -D on a socket in a temporary directory,
// adds keyFile to it, registers its stop (by pid) with t.Cleanup and
// returns the socket path. It skips t when ssh-agent or ssh-add is missing.
func StartAgent(t testing.TB, keyFile string) string {
	t.Helper()
	agentBin, err1 := exec.LookPath("ssh-agent")
	addBin, err2 := exec.LookPath("ssh-add")
	if err1 != nil || err2 != nil {
		t.Skip("sshtest: ssh-agent/ssh-add not installed")
	}
	dir, err := os.MkdirTemp("", "sshtest-agent-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	logs := &tailWriter{max: 16 << 10}
	cmd := exec.Command(agentBin, "-D", "-a", sock)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	must(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("sshtest: ssh-agent exited: %s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshtest: ssh-agent socket not ready: %s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	add := exec.Command(addBin, keyFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("sshtest: ssh-add: %v: %s", err, out)
	}
	return sock
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Descendants returns every live process below pid, found through the
// parent pids in /proc.
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := ppid(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// stat returns the state letter and parent pid of p from /proc/p/stat.
func stat(p int) (state byte, parent int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	pp, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pp, true
}

func ppid(p int) (int, bool) {
	_, pp, ok := stat(p)
	return pp, ok
}

// Alive reports whether p exists and is not a zombie.
func Alive(p int) bool {
	st, _, ok := stat(p)
	return ok && st != 'Z' && st != 'X'
}

// WaitGone waits until none of pids is alive, or timeout; it reports
// whether they are all gone.
func WaitGone(pids []int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		alive := false
		for _, p := range pids {
			if Alive(p) {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ProcsWithMarker returns the live processes whose command line contains
// marker.
func ProcsWithMarker(marker string) []int {
	var out []int
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == self {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err == nil && bytes.Contains(b, []byte(marker)) && Alive(p) {
			out = append(out, p)
		}
	}
	return out
}

func writeKey(t testing.TB, path string, priv ed25519.PrivateKey, passphrase string) {
	t.Helper()
	var blk *pem.Block
	var err error
	if passphrase == "" {
		blk, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	must(t, err)
	must(t, os.WriteFile(path, pem.EncodeToMemory(blk), 0o600))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

// tailWriter keeps the last max bytes written.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.max {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
