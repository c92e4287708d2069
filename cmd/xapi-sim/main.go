// Command xapi-sim is a local XAPI (XCP-ng / XenServer) simulator for
// libbioxen's tests: an XML-RPC server on loopback whose VMs are backed by
// real OpenSSH sshd processes on 127.0.0.1. See docs/xapi-sim.md.
//
//	bin/xapi-sim -listen 127.0.0.1:0 -print-config
//
// prints one line of JSON (a config for create_vm(vm_type="xcpng")) and
// serves until SIGTERM/SIGINT or until its parent process goes away, then
// stops every sshd it started and removes its temporary state.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"libbioxen/xapi/sim"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	var (
		opts                     sim.Options
		printConfig, verbose     bool
		noIP, sshdDown, ignoreSD bool
		fails, delays            multiFlag
	)
	flag.StringVar(&opts.Listen, "listen", "127.0.0.1:0", "loopback address to serve XML-RPC on")
	flag.BoolVar(&printConfig, "print-config", false, "print the client config as one line of JSON on stdout once serving")
	flag.BoolVar(&opts.TLS, "tls", false, "serve HTTPS with a fresh self-signed certificate (its SHA-256 is printed as xcp_tls_fingerprint)")
	flag.StringVar(&opts.StateDir, "state-dir", "", "directory for keys, known_hosts and sshd files (default: a temp dir removed at exit)")
	flag.DurationVar(&opts.IPDelay, "ip-delay", 500*time.Millisecond, "delay from VM.start to the guest reporting its IP (metrics appear at half of it)")
	flag.StringVar(&opts.PoolMember, "pool-member", "", "act as a pool member of this master URL: logins fail with HOST_IS_SLAVE")
	flag.StringVar(&opts.Username, "username", "root", "XAPI user name")
	flag.StringVar(&opts.Password, "password", "", "XAPI password (default: random, printed in the config)")
	flag.StringVar(&opts.TemplateName, "template", "bioxen-lua-template", "name_label of the Lua guest template")
	flag.DurationVar(&opts.AuthFailDelay, "auth-fail-delay", 0, "delay before SESSION_AUTHENTICATION_FAILED (real XAPI: 5s)")
	flag.DurationVar(&opts.ShutdownDelay, "shutdown-delay", 50*time.Millisecond, "how long a cooperative guest takes to shut down")
	flag.DurationVar(&opts.CleanShutdownTimeout, "clean-shutdown-timeout", 1200*time.Second, "when a guest ignoring clean_shutdown gets VM_SHUTDOWN_TIMEOUT")
	flag.BoolVar(&opts.NoSSH, "no-ssh", false, "start no sshd for guests (they still report an IP)")
	flag.StringVar(&opts.SSHD, "sshd", "/usr/sbin/sshd", "sshd binary")
	flag.StringVar(&opts.VMUser, "vm-user", "", "guest user (default: bioxen-sim when root, else the current user)")
	flag.Var(&fails, "fail", "fault: METHOD=CODE[,PARAM...] makes every call of METHOD fail so (repeatable)")
	flag.Var(&delays, "delay", "fault: METHOD=DURATION delays every call of METHOD (or *) (repeatable)")
	flag.BoolVar(&noIP, "no-ip", false, "fault: guests never report an IP")
	flag.BoolVar(&sshdDown, "sshd-down", false, "fault: guests' sshd stops right after it starts")
	flag.BoolVar(&ignoreSD, "ignore-shutdown", false, "fault: guests ignore VM.clean_shutdown")
	flag.BoolVar(&verbose, "v", false, "log simulator events to stderr")
	flag.Parse()

	for _, f := range fails {
		method, spec, ok := strings.Cut(f, "=")
		if !ok || method == "" || spec == "" {
			fmt.Fprintf(os.Stderr, "xapi-sim: bad -fail %q: want METHOD=CODE[,PARAM...]\n", f)
			return 2
		}
		opts.Faults = append(opts.Faults, sim.Fault{Kind: sim.FaultFail, Method: method, Error: strings.Split(spec, ",")})
	}
	for _, f := range delays {
		method, spec, ok := strings.Cut(f, "=")
		d, err := time.ParseDuration(spec)
		if !ok || method == "" || err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "xapi-sim: bad -delay %q: want METHOD=DURATION\n", f)
			return 2
		}
		opts.Faults = append(opts.Faults, sim.Fault{Kind: sim.FaultDelay, Method: method, Delay: d})
	}
	for kind, on := range map[string]bool{sim.FaultNoIP: noIP, sim.FaultSSHDDown: sshdDown, sim.FaultIgnoreShutdown: ignoreSD} {
		if on {
			opts.Faults = append(opts.Faults, sim.Fault{Kind: kind})
		}
	}
	if verbose {
		opts.LogFunc = func(s string) { fmt.Fprintln(os.Stderr, "xapi-sim:", s) }
	}

	// Catch signals before anything exists to clean up.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	parent := os.Getppid()

	s, err := sim.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	if printConfig {
		line, _ := json.Marshal(s.Config())
		fmt.Println(string(line))
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "xapi-sim: serving %s (state in %s)\n", s.URL(), s.StateDir())
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case sig := <-sigs:
			if verbose {
				fmt.Fprintf(os.Stderr, "xapi-sim: %v: cleaning up\n", sig)
			}
			return 0
		case <-tick.C:
			if os.Getppid() != parent {
				if verbose {
					fmt.Fprintln(os.Stderr, "xapi-sim: parent process gone: cleaning up")
				}
				return 0
			}
		}
	}
}
