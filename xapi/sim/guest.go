package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GuestUser is the system user the simulator creates (when run as root)
// for SSH logins into its guests.
const GuestUser = "bioxen-sim"

// sshEnv holds what every guest's sshd shares: the client key pair, the
// authorized_keys and known_hosts files and the guest user.
type sshEnv struct {
	sshd       string
	dir        string
	clientKey  string // private key for vm_key_file
	authKeys   string
	knownHosts string
	user       string
	password   string
	home       string
	logf       func(string, ...any)

	mu    sync.Mutex
	hosts map[int]string // port → "ssh-ed25519 AAAA…"
}

func newSSHEnv(dir, sshd, vmUser string, logf func(string, ...any)) (*sshEnv, error) {
	if _, err := os.Stat(sshd); err != nil {
		return nil, fmt.Errorf("xapi-sim: sshd not found at %s (install openssh-server, or use NoSSH): %v", sshd, err)
	}
	e := &sshEnv{sshd: sshd, dir: dir, logf: logf, hosts: map[int]string{},
		clientKey: filepath.Join(dir, "id_ed25519"), authKeys: filepath.Join(dir, "authorized_keys"),
		knownHosts: filepath.Join(dir, "known_hosts")}
	if _, err := os.Stat(e.clientKey); err != nil {
		if err := keygen(e.clientKey, "bioxen-sim-client"); err != nil {
			return nil, err
		}
	}
	pub, err := os.ReadFile(e.clientKey + ".pub")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(e.authKeys, pub, 0o644); err != nil {
		return nil, err
	}
	_ = os.Chmod(e.authKeys, 0o644)
	if err := e.writeKnownHosts(); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// sshd's privilege separation needs /run/sshd.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, err
		}
	}
	switch {
	case vmUser != "":
		e.user = vmUser
	case os.Geteuid() == 0:
		e.user = GuestUser
		if e.password, err = ensureGuestUser(); err != nil {
			return nil, err
		}
	default:
		u, err := user.Current()
		if err != nil {
			return nil, err
		}
		e.user = u.Username // key auth only: a non-root sshd cannot check passwords
	}
	if u, err := user.Lookup(e.user); err == nil {
		e.home = u.HomeDir
	}
	return e, nil
}

func keygen(path, comment string) error {
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xapi-sim: ssh-keygen: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

const guestStateDir = "/var/lib/bioxen-sim"

// ensureGuestUser creates the bioxen-sim user once, with a random password
// kept in /var/lib/bioxen-sim/password (root only), so that concurrent and
// later simulators report the same, working password. It also makes
// luarocks default to Lua 5.4 and to the user's own tree for that user.
func ensureGuestUser() (string, error) {
	if err := os.MkdirAll(guestStateDir, 0o700); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(guestStateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	created := false
	if _, err := user.Lookup(GuestUser); err != nil {
		out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", "-c", "libbioxen XAPI simulator guest", GuestUser).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("xapi-sim: useradd %s: %v: %s", GuestUser, err, strings.TrimSpace(string(out)))
		}
		created = true
	}
	pwFile := filepath.Join(guestStateDir, "password")
	pwBytes, err := os.ReadFile(pwFile)
	pw := strings.TrimSpace(string(pwBytes))
	if err != nil || pw == "" || created {
		if pw == "" {
			pw = randomHex(12)
		}
		cmd := exec.Command("chpasswd")
		cmd.Stdin = strings.NewReader(GuestUser + ":" + pw + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("xapi-sim: chpasswd: %v: %s", err, strings.TrimSpace(string(out)))
		}
		if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	u, err := user.Lookup(GuestUser)
	if err != nil {
		return "", err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	rocks := filepath.Join(u.HomeDir, ".luarocks")
	if err := os.MkdirAll(rocks, 0o755); err == nil {
		_ = os.Chown(rocks, uid, gid)
		for name, body := range map[string]string{
			"default-lua-version.lua": "return \"5.4\"\n",
			"config-5.4.lua":          "-- written by xapi-sim: install rocks into ~/.luarocks\nlocal_by_default = true\n",
		} {
			p := filepath.Join(rocks, name)
			if _, err := os.Stat(p); err != nil {
				if os.WriteFile(p, []byte(body), 0o644) == nil {
					_ = os.Chown(p, uid, gid)
				}
			}
		}
	}
	return pw, nil
}

// writeKnownHosts rewrites known_hosts from the port → key map; e.mu held
// or during setup.
func (e *sshEnv) writeKnownHosts() error {
	ports := make([]int, 0, len(e.hosts))
	for p := range e.hosts {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "[127.0.0.1]:%d %s\n", p, e.hosts[p])
	}
	tmp := e.knownHosts + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, e.knownHosts)
}

func (e *sshEnv) setHost(port int, key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if key == "" {
		delete(e.hosts, port)
	} else {
		e.hosts[port] = key
	}
	if err := e.writeKnownHosts(); err != nil {
		e.logf("known_hosts: %v", err)
	}
}

// sshdProc is one running sshd.
type sshdProc struct {
	cmd  *exec.Cmd
	port int
	done chan struct{}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (e *sshEnv) config(dir string, port int) string {
	auth := "no"
	if e.password != "" {
		auth = "yes"
	}
	var env string
	if e.home != "" {
		t := filepath.Join(e.home, ".luarocks")
		env = fmt.Sprintf("SetEnv \"LUA_PATH_5_4=%[1]s/share/lua/5.4/?.lua;%[1]s/share/lua/5.4/?/init.lua;;\" \"LUA_CPATH_5_4=%[1]s/lib/lua/5.4/?.so;;\"\n", t)
	}
	return fmt.Sprintf(`# generated by xapi-sim for one simulated guest
ListenAddress 127.0.0.1:%d
HostKey %s
PidFile %s
AuthorizedKeysFile %s
AllowUsers %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication %s
PermitEmptyPasswords no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 100:30:200
MaxSessions 64
LoginGraceTime 30
LogLevel INFO
Subsystem sftp internal-sftp
%s`, port, filepath.Join(dir, "ssh_host_ed25519_key"), filepath.Join(dir, "sshd.pid"), e.authKeys, e.user, auth, env)
}

// start runs a fresh sshd for a guest, retrying on a port race, and
// returns once it listens.
func (e *sshEnv) start(ctx context.Context, dir, uuid string) (*sshdProc, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	key := filepath.Join(dir, "ssh_host_ed25519_key")
	if _, err := os.Stat(key); err != nil {
		if err := keygen(key, "bioxen-sim-vm-"+uuid); err != nil {
			return nil, "", err
		}
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return nil, "", err
	}
	f := strings.Fields(string(pub))
	if len(f) < 2 {
		return nil, "", fmt.Errorf("xapi-sim: bad host key %s.pub", key)
	}
	hostKey := f[0] + " " + f[1]
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p, err := e.spawn(ctx, dir)
		if err == nil {
			return p, hostKey, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", lastErr
}

func (e *sshEnv) spawn(ctx context.Context, dir string) (*sshdProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(e.config(dir, port)), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd := exec.Command(e.sshd, "-D", "-e", "-f", cfg)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logFile.Close()
		return nil, err
	}
	pw.Close()
	p := &sshdProc{cmd: cmd, port: port, done: make(chan struct{})}
	ready := make(chan struct{})
	var tail strings.Builder
	var tailMu sync.Mutex
	go func() {
		defer logFile.Close()
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			tailMu.Lock()
			if tail.Len() < 4096 {
				tail.WriteString(line + "\n")
			}
			tailMu.Unlock()
			if strings.Contains(line, "Server listening on") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		tailMu.Lock()
		msg := strings.TrimSpace(tail.String())
		tailMu.Unlock()
		return nil, fmt.Errorf("xapi-sim: sshd exited at start: %s", msg)
	case <-t.C:
		p.stop()
		return nil, errors.New("xapi-sim: sshd did not start listening within 15s")
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// descendants lists the live descendants of pid from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, ent := range entries {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
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

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// stop ends the sshd we started and the per-connection sshd processes it
// forked (so that open sessions drop, as they would when a VM halts), then
// waits for them.
func (p *sshdProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.cmd.Process.Pid
	kids := descendants(pid)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, k := range kids {
		for alive(k) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(k) {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
	}
}

func (p *sshdProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// guest is a running VM: its sshd and its guest agent timeline.
type guest struct {
	s       *Server
	vm      string
	uuid    string
	devices []string // VIF devices at start

	noIP, sshdDown, ignoreShutdown bool

	ctx     context.Context
	cancel  context.CancelFunc
	runDone chan struct{}
	done    chan struct{} // closed once stopped
	once    sync.Once

	mu   sync.Mutex
	sshd *sshdProc
}

func (s *Server) newGuest(vm, uuid string, devices []string) *guest {
	ctx, cancel := context.WithCancel(context.Background())
	return &guest{s: s, vm: vm, uuid: uuid, devices: devices, ctx: ctx, cancel: cancel,
		runDone: make(chan struct{}), done: make(chan struct{})}
}

func (s *Server) vmDir(uuid string) string { return filepath.Join(s.stateDir, "vms", uuid) }

func (s *Server) removeVMDir(uuid string) {
	if uuid != "" {
		_ = os.RemoveAll(s.vmDir(uuid))
	}
}

func (g *guest) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return g.ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-g.ctx.Done():
		return false
	}
}

// run boots the guest: sshd first, then the guest agent reports metrics
// (at IPDelay/2, without networks) and the IP (at IPDelay).
func (g *guest) run() {
	defer g.s.bg.Done()
	defer close(g.runDone)
	s := g.s
	start := time.Now()
	if s.ssh != nil {
		p, hostKey, err := s.ssh.start(g.ctx, s.vmDir(g.uuid), g.uuid)
		if err != nil {
			if g.ctx.Err() == nil {
				s.logf("VM %s: sshd failed: %v", g.uuid, err)
			}
		} else {
			g.mu.Lock()
			g.sshd = p
			g.mu.Unlock()
			s.ssh.setHost(p.port, hostKey)
			s.db.mu.Lock()
			if o := s.db.objs[g.vm]; o != nil {
				oc := maps.Clone(o.rec.smap("other_config"))
				oc[SSHPortKey] = strconv.Itoa(p.port)
				o.rec["other_config"] = oc
				s.db.touch(o)
			}
			s.db.mu.Unlock()
			s.logf("VM %s: sshd pid %d on 127.0.0.1:%d", g.uuid, p.cmd.Process.Pid, p.port)
			if g.sshdDown {
				p.stop()
				s.logf("VM %s: sshd stopped (fault sshd-down)", g.uuid)
			}
		}
	}
	if !g.sleepUntil(start.Add(s.opts.IPDelay / 2)) {
		return
	}
	s.db.mu.Lock()
	gm := defaults("VM_guest_metrics")
	gm["os_version"] = map[string]string{"name": "Debian GNU/Linux 12 (bookworm) [xapi-sim]", "distro": "debian", "major": "12", "uname": "6.1.0-sim"}
	gm["PV_drivers_version"] = map[string]string{"major": "8", "minor": "4", "micro": "0", "build": "sim"}
	gm["last_updated"] = time.Now().UTC().Truncate(time.Second)
	gmRef := s.db.create("VM_guest_metrics", gm)
	if o := s.db.objs[g.vm]; o != nil {
		o.rec["guest_metrics"] = gmRef
		s.db.touch(o)
	}
	s.db.mu.Unlock()
	if g.noIP || !g.sleepUntil(start.Add(s.opts.IPDelay)) {
		return
	}
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	if o := s.db.objs[gmRef]; o != nil {
		nets := map[string]string{}
		for _, dev := range g.devices {
			nets[dev+"/ip"], nets[dev+"/ipv4/0"] = "127.0.0.1", "127.0.0.1"
			nets[dev+"/ipv6/0"] = "fe80::ff:fe00:" + dev
		}
		o.rec["networks"], o.rec["last_updated"] = nets, time.Now().UTC().Truncate(time.Second)
		s.db.touch(o)
	}
}

// stop halts the guest: cancels its timeline and stops its sshd.
func (g *guest) stop() {
	g.once.Do(func() {
		g.cancel()
		<-g.runDone
		g.mu.Lock()
		p := g.sshd
		g.mu.Unlock()
		if p != nil {
			p.stop()
			g.s.ssh.setHost(p.port, "")
		}
		close(g.done)
	})
}

func (g *guest) sshdPid() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sshd != nil && g.sshd.running() {
		return g.sshd.cmd.Process.Pid
	}
	return 0
}
