package sshsession

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

func TestConfigRedaction(t *testing.T) {
	cfg := Config{Host: "vm1", User: "u", Password: "hunter2-pw", KeyPassphrase: "pp-s3cr3t",
		KeyFiles: []string{"/k"}, DialTimeout: time.Second}
	outs := []string{cfg.String(), cfg.GoString()}
	for _, v := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x"} {
		outs = append(outs, fmt.Sprintf(v, cfg), fmt.Sprintf(v, &cfg))
		outs = append(outs, fmt.Sprintf(v, struct{ C Config }{cfg}), fmt.Sprintf(v, []Config{cfg}))
	}
	outs = append(outs, fmt.Sprint(cfg), fmt.Sprintln(cfg))
	for _, o := range outs {
		if strings.Contains(o, "hunter2") || strings.Contains(o, "s3cr3t") {
			t.Fatalf("secret printed: %s", o)
		}
	}
	if s := fmt.Sprintf("%+v", cfg); !strings.Contains(s, "Password:[REDACTED]") || !strings.Contains(s, "Host:vm1") {
		t.Fatalf("%%+v: %s", s)
	}
	if s := fmt.Sprintf("%#v", cfg); !strings.HasPrefix(s, "sshsession.Config{") || !strings.Contains(s, `Password:"[REDACTED]"`) {
		t.Fatalf("%%#v: %s", s)
	}
	if s := fmt.Sprintf("%+v", Config{Host: "h"}); !strings.Contains(s, "Password: ") {
		t.Fatalf("empty secret should print empty: %s", s)
	}
	// The caller's Config is not modified by printing.
	if cfg.Password != "hunter2-pw" || cfg.KeyPassphrase != "pp-s3cr3t" {
		t.Fatal("printing changed the Config")
	}
}

// A host given with user information ("root:pw@10.0.0.5") is refused, and
// neither the error nor the formatted Config shows the password in it.
func TestHostWithUserinfoRedacted(t *testing.T) {
	const pw = "VmPassw0rd-host-secret"
	for _, host := range []string{"root:" + pw + "@10.0.0.5", pw + "@vm", "a@b:" + pw + "@vm"} {
		cfg := Config{Host: host, User: "u", Password: "x", NoAgent: true, InsecureIgnoreHostKey: true}
		_, err := Dial(context.Background(), cfg)
		wantCode(t, err, core.ErrInvalid, nil)
		if strings.Contains(fmt.Sprintf("%+v", err), pw) {
			t.Errorf("Dial error shows the password in Host: %v", err)
		}
		if !strings.Contains(err.Error(), "user information") {
			t.Errorf("Dial error does not say what is wrong: %v", err)
		}
		for _, v := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			if s := fmt.Sprintf(v, cfg); strings.Contains(s, pw) || strings.Contains(s, fmt.Sprintf("%x", pw)) {
				t.Errorf("%s of a Config shows the password in Host: %s", v, s)
			}
		}
	}
	if got := fmt.Sprint(Config{Host: "root:pw@vm"}); !strings.Contains(got, "[REDACTED]@vm") {
		t.Errorf("the host part should stay visible: %s", got)
	}
}

func TestNormalizeDefaults(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
	t.Setenv("HOME", "/home/someone")
	n, err := Config{Host: "vm", User: "u"}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if n.Port != 22 || n.DialTimeout != DefaultDialTimeout || n.KeepaliveInterval != DefaultKeepaliveInterval ||
		n.Reconnect != (Backoff{DefaultReconnectInitial, DefaultReconnectMax, DefaultReconnectAttempts}) ||
		n.KnownHostsFile != "/home/someone/.ssh/known_hosts" || n.AgentSocket != "/tmp/agent.sock" {
		t.Fatalf("defaults: %+v", n)
	}
	if n.Addr() != "vm:22" {
		t.Fatal(n.Addr())
	}
	n, _ = Config{Host: "::1", Port: 2222, User: "u", NoAgent: true}.normalize()
	if n.Addr() != "[::1]:2222" || n.AgentSocket != "" {
		t.Fatalf("%+v", n)
	}
}

func TestTailBuffer(t *testing.T) {
	b := newTailBuffer(8)
	b.Write([]byte("0123"))
	b.Write([]byte("456789ab"))
	p := make([]byte, 100)
	n, _ := b.Read(p)
	if string(p[:n]) != "456789ab" || b.droppedBytes() != 4 {
		t.Fatalf("%q %d", p[:n], b.droppedBytes())
	}
	b.Write([]byte("0123456789abcdefXYZ"))
	n, _ = b.Read(p)
	if string(p[:n]) != "bcdefXYZ" || b.droppedBytes() != 15 {
		t.Fatalf("%q %d", p[:n], b.droppedBytes())
	}
	b.closeWith(fmt.Errorf("end"))
	if _, err := b.Read(p); err == nil || err.Error() != "end" {
		t.Fatal(err)
	}
}

func TestPgidFilter(t *testing.T) {
	var out strings.Builder
	prefix, f := pgidHeader(&out)
	tok := strings.TrimSuffix(strings.TrimPrefix(prefix, "echo "), "$$ >&2; ")
	// rc-file noise first, the header split across writes, then output.
	f.Write([]byte("motd line\n" + tok[:5]))
	f.Write([]byte(tok[5:] + "4242\nreal "))
	f.Write([]byte("stderr\n"))
	if got := f.waitPgid(time.Second); got != 4242 {
		t.Fatalf("pgid %d", got)
	}
	f.flush()
	if out.String() != "motd line\nreal stderr\n" {
		t.Fatalf("passed through: %q", out.String())
	}
	// No header: everything passes, pgid unknown; pgid 1 (kill -1!) is never accepted.
	out.Reset()
	_, f = pgidHeader(&out)
	f.Write([]byte("a\nb"))
	f.flush()
	if out.String() != "a\nb" || f.waitPgid(0) != 0 {
		t.Fatalf("%q %d", out.String(), f.waitPgid(0))
	}
	out.Reset()
	prefix, f = pgidHeader(&out)
	tok = strings.TrimSuffix(strings.TrimPrefix(prefix, "echo "), "$$ >&2; ")
	f.Write([]byte(tok + "1\nx\n"))
	if f.waitPgid(0) != 0 || out.String() != "x\n" {
		t.Fatalf("pgid 1 accepted: %d %q", f.waitPgid(0), out.String())
	}
	if err := (&Conn{}).killGroup(nil, 1, "KILL", time.Second); err == nil {
		t.Fatal("killGroup accepted pgid 1")
	}
}
