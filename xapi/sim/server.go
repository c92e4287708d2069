// Package sim is an in-process XAPI (XCP-ng / XenServer management API)
// simulator: an XML-RPC server on loopback that implements the subset of
// XAPI that libbioxen's client uses, with XAPI's wire format, semantics and
// error shapes, and backs every running VM with a real OpenSSH sshd on
// 127.0.0.1 so that SSH sessions to "guests" work end to end.
//
// Tests start it with New and defer Close; cmd/xapi-sim wraps it in a
// binary. See docs/xapi-sim.md for the behaviour, the fault switches and
// the printed configuration.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"libbioxen/xapi/internal/wire"
)

// Fault kinds.
const (
	FaultFail           = "fail"            // Method fails with Error
	FaultDelay          = "delay"           // Method (or "*") is delayed by Delay
	FaultReplyDelay     = "reply-delay"     // Method (or "*") runs at once; its answer is delayed by Delay
	FaultNoIP           = "no-ip"           // guests started from now on never report an IP
	FaultSSHDDown       = "sshd-down"       // guests' sshd is stopped right after it starts
	FaultIgnoreShutdown = "ignore-shutdown" // guests ignore VM.clean_shutdown
)

// Fault is a switch that makes the simulator misbehave on purpose. Count
// limits how many times it fires (calls for fail/delay, VM starts for the
// guest faults); 0 means forever.
type Fault struct {
	ID     int           `json:"id"`
	Kind   string        `json:"kind"`
	Method string        `json:"method,omitempty"`
	Error  []string      `json:"error,omitempty"`
	Delay  time.Duration `json:"delay,omitempty"`
	Count  int           `json:"count,omitempty"`
	fired  int
}

// Options configure a Server. Zero values get the defaults noted.
type Options struct {
	Listen   string // address to listen on; default "127.0.0.1:0" (must be loopback)
	TLS      bool   // serve HTTPS with a fresh self-signed certificate
	StateDir string // keys, known_hosts, sshd configs; default: a temp dir removed by Close

	Username     string // XAPI user; default "root"
	Password     string // XAPI password; default: random
	TemplateName string // name_label of the Lua template; default "bioxen-lua-template"

	IPDelay              time.Duration // guest metrics appear IPDelay/2 after start, the IP after IPDelay; default 500ms
	ShutdownDelay        time.Duration // how long a cooperative guest takes to shut down; default 50ms
	CleanShutdownTimeout time.Duration // VM_SHUTDOWN_TIMEOUT for a guest ignoring clean_shutdown; default 1200s
	AuthFailDelay        time.Duration // XAPI sleeps 5 s before SESSION_AUTHENTICATION_FAILED; default 0

	// PoolMember makes the host a pool member: logins and session calls
	// fail with HOST_IS_SLAVE [master], where master is the host:port of
	// this URL (XAPI sends a bare address; the port is needed on loopback).
	PoolMember string

	NoSSH   bool         // run no sshd: guests report an IP but nothing listens
	SSHD    string       // sshd binary; default /usr/sbin/sshd
	VMUser  string       // guest user; default bioxen-sim when root, else the current user
	Faults  []Fault      // initial fault switches
	LogFunc func(string) // log sink for simulator events; default: none
}

// Server is a running simulator.
type Server struct {
	opts Options
	db   *db

	mu       sync.Mutex
	sessions map[string]*session
	faults   []*Fault
	faultID  int
	master   string
	domid    int
	guests   map[string]*guest // VM ref → running guest
	closed   bool

	httpSrv   *http.Server
	ln        net.Listener
	url       string
	tlsFP     string
	tlsCAFile string

	stateDir    string
	ownStateDir bool
	ssh         *sshEnv

	closing chan struct{}
	bg      sync.WaitGroup
	late    lateCalls // delayed calls whose client may go away (see dispatch)

	poolRef, hostRef, srRef, netRef string
}

type session struct {
	ref, uuid, user, originator string
	created                     time.Time
}

// New starts a simulator listening on opts.Listen. Close it when done: it
// stops every sshd it started and removes its temporary state.
func New(opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Username == "" {
		opts.Username = "root"
	}
	if opts.Password == "" {
		opts.Password = randomHex(12)
	}
	if opts.TemplateName == "" {
		opts.TemplateName = "bioxen-lua-template"
	}
	if opts.IPDelay == 0 {
		opts.IPDelay = 500 * time.Millisecond
	}
	if opts.ShutdownDelay == 0 {
		opts.ShutdownDelay = 50 * time.Millisecond
	}
	if opts.CleanShutdownTimeout == 0 {
		opts.CleanShutdownTimeout = 1200 * time.Second
	}
	if opts.SSHD == "" {
		opts.SSHD = "/usr/sbin/sshd"
	}
	host, _, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("xapi-sim: bad listen address %q: %v", opts.Listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("xapi-sim: refusing to listen on %q: loopback only", opts.Listen)
	}
	s := &Server{opts: opts, db: newDB(), sessions: map[string]*session{}, guests: map[string]*guest{},
		closing: make(chan struct{})}
	for _, f := range opts.Faults {
		if _, err := s.SetFault(f); err != nil {
			return nil, err
		}
	}
	if opts.PoolMember != "" {
		if err := s.SetPoolMember(opts.PoolMember); err != nil {
			return nil, err
		}
	}
	if opts.StateDir == "" {
		dir, err := os.MkdirTemp("", "xapi-sim-")
		if err != nil {
			return nil, err
		}
		s.stateDir, s.ownStateDir = dir, true
	} else {
		if err := os.MkdirAll(opts.StateDir, 0o711); err != nil {
			return nil, err
		}
		s.stateDir = opts.StateDir
	}
	// The guest user must traverse the state dir to read authorized_keys.
	_ = os.Chmod(s.stateDir, 0o711)
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if !opts.NoSSH {
		if s.ssh, err = newSSHEnv(s.stateDir, opts.SSHD, opts.VMUser, s.logf); err != nil {
			return nil, err
		}
	}
	s.populate()

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if opts.TLS {
		cfg, fp, caFile, err := selfSigned(s.stateDir)
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.tlsFP, s.tlsCAFile = fp, caFile
		ln = tlsListener(ln, cfg)
		scheme = "https"
	}
	s.ln = ln
	s.url = scheme + "://" + ln.Addr().String()
	s.db.mu.Lock()
	if h, err := s.db.get("host", s.hostRef); err == nil {
		h.rec["address"] = ln.Addr().(*net.TCPAddr).IP.String()
	}
	s.db.mu.Unlock()
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: log.New(logWriter{s}, "", 0)}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = s.httpSrv.Serve(ln)
	}()
	ok = true
	return s, nil
}

type logWriter struct{ s *Server }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.LogFunc != nil {
		s.opts.LogFunc(fmt.Sprintf(format, args...))
	}
}

// URL is the XAPI endpoint, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.url }

// StateDir is where keys, known_hosts and per-VM sshd files live.
func (s *Server) StateDir() string { return s.stateDir }

// Config is the configuration the library's create_vm(vm_type="xcpng")
// accepts as is; see docs/xapi-sim.md for each key.
type Config struct {
	XCPHost         string `json:"xcp_host"`
	XCPUsername     string `json:"xcp_username"`
	XCPPassword     string `json:"xcp_password"`
	TemplateName    string `json:"template_name"`
	VMUsername      string `json:"vm_username"`
	VMPassword      string `json:"vm_password,omitempty"`
	VMKeyFile       string `json:"vm_key_file,omitempty"`
	VMKnownHosts    string `json:"vm_known_hosts,omitempty"`
	TLSFingerprint  string `json:"xcp_tls_fingerprint,omitempty"`
	TLSCAFile       string `json:"xcp_tls_ca_file,omitempty"`
	AllowLoopbackIP bool   `json:"xcp_allow_loopback_ip"`
	SSHPortKey      string `json:"vm_ssh_port_key"`
	SimStateDir     string `json:"sim_state_dir"`
	SimPID          int    `json:"sim_pid"`
}

// SSHPortKey is the VM other_config key in which the simulator publishes
// the port of a running guest's sshd (its IP is 127.0.0.1).
const SSHPortKey = "bioxen-ssh-port"

// Config returns the client configuration for this simulator.
func (s *Server) Config() Config {
	c := Config{XCPHost: s.url, XCPUsername: s.opts.Username, XCPPassword: s.opts.Password,
		TemplateName: s.opts.TemplateName, TLSFingerprint: s.tlsFP, TLSCAFile: s.tlsCAFile,
		AllowLoopbackIP: true, SSHPortKey: SSHPortKey, SimStateDir: s.stateDir, SimPID: os.Getpid()}
	if s.ssh != nil {
		c.VMUsername, c.VMPassword = s.ssh.user, s.ssh.password
		c.VMKeyFile, c.VMKnownHosts = s.ssh.clientKey, s.ssh.knownHosts
	}
	return c
}

// WaitLateCalls returns when every delayed call whose client went away
// before its delay was over has run (or the server closed): what such a
// call does is then visible. For tests.
func (s *Server) WaitLateCalls() { s.late.wait() }

// lateCalls counts the delayed calls under way. Not a sync.WaitGroup: a
// call comes in at any time, also while a test waits, and a WaitGroup's
// Add from zero must not be concurrent with its Wait (the race detector
// reported the test's WaitLateCalls against the handler's Add).
type lateCalls struct {
	mu   sync.Mutex
	cond sync.Cond
	n    int
}

func (l *lateCalls) add(delta int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n += delta
	if l.n == 0 && l.cond.L != nil {
		l.cond.Broadcast()
	}
}

func (l *lateCalls) wait() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cond.L == nil {
		l.cond.L = &l.mu
	}
	for l.n > 0 {
		l.cond.Wait()
	}
}

// Close stops the server, every guest and its sshd, and removes the
// temporary state dir. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	guests := make([]*guest, 0, len(s.guests))
	for _, g := range s.guests {
		guests = append(guests, g)
	}
	s.guests = map[string]*guest{}
	s.mu.Unlock()
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
		_ = s.httpSrv.Close()
	}
	for _, g := range guests {
		g.stop()
	}
	s.bg.Wait()
	if s.ownStateDir {
		_ = os.RemoveAll(s.stateDir)
	}
	return nil
}

// Done is closed when Close starts.
func (s *Server) Done() <-chan struct{} { return s.closing }

// populate creates the pool, host, storage, networks and templates.
func (s *Server) populate() {
	d := s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	host := defaults("host")
	host["name_label"], host["hostname"] = "sim-host", "sim-host"
	host["software_version"] = map[string]string{"product_brand": "XCP-ng", "product_version": "8.3.0",
		"platform_name": "XCP", "xapi": "24.19", "hostname": "sim-host"}
	s.hostRef = d.create("host", host)

	sr := defaults("SR")
	sr["name_label"], sr["name_description"] = "Local storage", "simulated local SR"
	sr["physical_size"] = int64(1 << 40)
	s.srRef = d.create("SR", sr)

	pool := defaults("pool")
	pool["name_label"], pool["master"], pool["default_SR"] = "sim-pool", s.hostRef, s.srRef
	s.poolRef = d.create("pool", pool)

	// The host-internal management network comes first, so that "the
	// first network" is the wrong choice and the client must prefer the
	// management PIF's network.
	internal := defaults("network")
	internal["name_label"], internal["bridge"] = "Host internal management network", "xenapi"
	internal["other_config"] = map[string]string{"is_guest_installer_network": "true", "is_host_internal_management_network": "true"}
	d.create("network", internal)

	nw := defaults("network")
	nw["name_label"], nw["bridge"] = "Pool-wide network associated with eth0", "xenbr0"
	s.netRef = d.create("network", nw)
	pif := defaults("PIF")
	pif["device"], pif["network"], pif["host"], pif["management"] = "eth0", s.netRef, s.hostRef, true
	pif["MAC"], pif["IP"], pif["netmask"] = "02:00:00:00:00:01", "127.0.0.1", "255.0.0.0"
	pifRef := d.create("PIF", pif)
	d.addToSet("network", s.netRef, "PIFs", pifRef)
	d.addToSet("host", s.hostRef, "PIFs", pifRef)

	dom0 := defaults("VM")
	dom0["name_label"], dom0["is_control_domain"] = "Control domain on host: sim-host", true
	dom0["power_state"], dom0["domid"], dom0["resident_on"] = "Running", int64(0), s.hostRef
	dom0Ref := d.create("VM", dom0)
	d.addToSet("host", s.hostRef, "resident_VMs", dom0Ref)

	disks := `<provision><disk device="0" size="10737418240" sr="" bootable="true" type="system"/></provision>`
	tmpl := func(name, desc string, isDefault bool) string {
		r := defaults("VM")
		r["name_label"], r["name_description"] = name, desc
		r["is_a_template"], r["is_default_template"] = true, isDefault
		oc := map[string]string{"disks": disks, "install-methods": "cdrom,nfs,http,ftp", "linux_template": "true"}
		if isDefault {
			oc["default_template"] = "true" // as XAPI's set_is_default_template writes it
		}
		r["other_config"] = oc
		return d.create("VM", r)
	}
	tmpl("Debian Bookworm 12", "Clones of this template will automatically provision their storage.", true)
	lua := tmpl(s.opts.TemplateName, "Lua 5.4 + luarocks guest (simulated)", false)
	// A template that already has a VIF, on device 3: the guest agent
	// reports its IP under "3/ip".
	vif3 := tmpl(s.opts.TemplateName+"-vif3", "Lua guest whose VIF is device 3", false)
	v := defaults("VIF")
	v["device"], v["network"], v["VM"], v["MAC"] = "3", s.netRef, vif3, "02:00:00:00:03:03"
	vifRef := d.create("VIF", v)
	d.addToSet("VM", vif3, "VIFs", vifRef)
	d.addToSet("network", s.netRef, "VIFs", vifRef)
	// A snapshot with the Lua template's name: clients must skip it.
	snap := defaults("VM")
	snap["name_label"], snap["is_a_template"], snap["is_a_snapshot"], snap["snapshot_of"] = s.opts.TemplateName, true, true, lua
	snap["other_config"] = map[string]string{"disks": disks}
	snapRef := d.create("VM", snap)
	d.addToSet("VM", lua, "snapshots", snapRef)
}

// ServeHTTP answers XML-RPC on any path (XAPI's router sends every path
// without a handler of its own to XML-RPC).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "xapi-sim: only XML-RPC over POST is simulated", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/jsonrpc" || r.URL.Path == "/json" {
		http.Error(w, "xapi-sim: JSON-RPC is not simulated", http.StatusNotFound)
		return
	}
	method, params, err := wire.DecodeCall(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		// XAPI answers a malformed request with an HTTP 500 HTML page.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative.<h1> Additional information </h1>%s</body></html>", htmlEscape(err.Error()))
		return
	}
	var resp any
	if method == "system.listMethods" {
		resp = s.listMethods() // unwrapped, as XAPI does
	} else {
		v, err := s.dispatch(r.Context(), method, params)
		resp = envelope(v, err)
	}
	body, err := wire.Encoder{Untyped: true}.EncodeResponse(resp)
	if err != nil {
		body, _ = wire.Encoder{Untyped: true}.EncodeResponse(envelope(nil, fail("INTERNAL_ERROR", err.Error())))
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func envelope(v any, err error) map[string]any {
	if err != nil {
		var x xerr
		if !errors.As(err, &x) {
			x = xerr{"INTERNAL_ERROR", err.Error()}
		}
		return map[string]any{"Status": "Failure", "ErrorDescription": []string(x)}
	}
	if v == nil {
		v = ""
	}
	return map[string]any{"Status": "Success", "Value": v}
}

// SetPoolMember switches pool-member mode: with a non-empty master URL
// (or host:port) logins and session calls fail with HOST_IS_SLAVE; with ""
// the host is the master again.
func (s *Server) SetPoolMember(master string) error {
	addr := master
	if strings.Contains(master, "://") {
		u, err := url.Parse(master)
		if err != nil || u.Host == "" {
			return fmt.Errorf("xapi-sim: bad master URL %q", master)
		}
		addr = u.Host
	}
	s.mu.Lock()
	s.master = addr
	s.mu.Unlock()
	return nil
}

// SetFault installs a fault switch and returns its id.
func (s *Server) SetFault(f Fault) (int, error) {
	switch f.Kind {
	case FaultFail:
		if f.Method == "" || len(f.Error) == 0 || f.Error[0] == "" {
			return 0, fmt.Errorf("xapi-sim: a fail fault needs a method and an error code")
		}
	case FaultDelay, FaultReplyDelay:
		if f.Method == "" || f.Delay <= 0 {
			return 0, fmt.Errorf("xapi-sim: a %s fault needs a method (or *) and a positive delay", f.Kind)
		}
	case FaultNoIP, FaultSSHDDown, FaultIgnoreShutdown:
	default:
		return 0, fmt.Errorf("xapi-sim: unknown fault kind %q", f.Kind)
	}
	if f.Method != "" && f.Method != "*" {
		f.Method = canonicalMethod(f.Method)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultID++
	f.ID, f.fired = s.faultID, 0
	s.faults = append(s.faults, &f)
	return f.ID, nil
}

// ClearFaults removes every fault switch.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// Faults lists the active fault switches.
func (s *Server) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, len(s.faults))
	for i, f := range s.faults {
		out[i] = *f
	}
	return out
}

// takeFault consumes one firing of the first matching fault; s.mu held.
func (s *Server) takeFault(kind, method string) *Fault {
	for i, f := range s.faults {
		if f.Kind != kind || (f.Method != "" && f.Method != "*" && f.Method != method) {
			continue
		}
		f.fired++
		c := *f
		if f.Count > 0 && f.fired >= f.Count {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
		return &c
	}
	return nil
}

// ExpireSessions invalidates every session (as a host restart or the 24 h
// idle timeout would) and returns how many there were.
func (s *Server) ExpireSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.sessions)
	s.sessions = map[string]*session{}
	return n
}

// Stats counts what the simulator holds, for leak checks.
type Stats struct {
	VMs          int   `json:"vms"` // non-template, non-snapshot, non-control-domain VMs
	RunningVMs   int   `json:"running_vms"`
	Templates    int   `json:"templates"`
	VDIs         int   `json:"vdis"`
	VBDs         int   `json:"vbds"`
	VIFs         int   `json:"vifs"`
	GuestMetrics int   `json:"guest_metrics"`
	Tasks        int   `json:"tasks"`
	Sessions     int   `json:"sessions"`
	SSHD         int   `json:"sshd"` // running sshd processes
	SSHDPids     []int `json:"sshd_pids"`
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	var st Stats
	s.db.mu.Lock()
	for _, o := range s.db.byClass["VM"] {
		switch {
		case o.rec.flag("is_a_template"), o.rec.flag("is_a_snapshot"):
			if o.rec.flag("is_a_template") && !o.rec.flag("is_a_snapshot") {
				st.Templates++
			}
		case o.rec.flag("is_control_domain"):
		default:
			st.VMs++
			if o.rec.str("power_state") == "Running" {
				st.RunningVMs++
			}
		}
	}
	st.VDIs, st.VBDs, st.VIFs = len(s.db.byClass["VDI"]), len(s.db.byClass["VBD"]), len(s.db.byClass["VIF"])
	st.GuestMetrics, st.Tasks = len(s.db.byClass["VM_guest_metrics"]), len(s.db.byClass["task"])
	s.db.mu.Unlock()
	s.mu.Lock()
	st.Sessions = len(s.sessions)
	guests := make([]*guest, 0, len(s.guests))
	for _, g := range s.guests {
		guests = append(guests, g)
	}
	s.mu.Unlock()
	st.SSHDPids = []int{}
	for _, g := range guests {
		if pid := g.sshdPid(); pid > 0 {
			st.SSHD++
			st.SSHDPids = append(st.SSHDPids, pid)
		}
	}
	sort.Ints(st.SSHDPids)
	return st
}
