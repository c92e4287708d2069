package xapi

import (
	"errors"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
	"libbioxen/xapi/sim"
)

func TestTLSVerification(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true, TLS: true})
	cfg := s.Config()
	if !strings.HasPrefix(cfg.XCPHost, "https://") || cfg.TLSFingerprint == "" || cfg.TLSCAFile == "" {
		t.Fatalf("config %+v", cfg)
	}
	login := func(mod func(*Options)) error {
		c := clientFor(t, s, mod)
		return c.Login(ctxT(t, 10*time.Second))
	}

	// Verified by default: the self-signed certificate is rejected, and
	// the error names its fingerprint so it can be pinned.
	err := login(func(o *Options) { o.Fingerprint = "" })
	var te *TLSError
	if !errors.As(err, &te) || core.CodeOf(err) != core.ErrHostKey {
		t.Fatalf("default verification: %v", err)
	}
	if te.Fingerprint != cfg.TLSFingerprint {
		t.Fatalf("error fingerprint %s, want %s", te.Fingerprint, cfg.TLSFingerprint)
	}
	t.Logf("default: %v", err)

	if err := login(func(o *Options) { o.Fingerprint, o.CAFile = "", cfg.TLSCAFile }); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	if err := login(nil); err != nil {
		t.Fatalf("with the pinned fingerprint: %v", err)
	}
	plain := strings.ToLower(strings.ReplaceAll(cfg.TLSFingerprint, ":", ""))
	if err := login(func(o *Options) {
		o.Fingerprint = "0000000000000000000000000000000000000000000000000000000000000000, " + plain
	}); err != nil {
		t.Fatalf("with one of several pins, lower case: %v", err)
	}
	err = login(func(o *Options) { o.Fingerprint = strings.Repeat("ab", 32) })
	if !errors.As(err, &te) || te.Fingerprint != cfg.TLSFingerprint || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("wrong fingerprint: %v", err)
	}
	if err := login(func(o *Options) { o.Fingerprint, o.Insecure = "", true }); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	if n := s.Stats().Sessions; n != 4 {
		t.Errorf("%d sessions, want 4", n)
	}
}

// A plain-HTTP client against the TLS port, and a dead port, are
// connection errors, not XAPI failures.
func TestTransportErrors(t *testing.T) {
	t.Parallel()
	s := startSim(t, sim.Options{NoSSH: true, TLS: true})
	c := clientFor(t, s, func(o *Options) { o.URL = strings.Replace(o.URL, "https://", "http://", 1) })
	err := c.Login(ctxT(t, 10*time.Second))
	if err == nil || FailureOf(err) != nil || core.CodeOf(err) != core.ErrConnection {
		t.Fatalf("http to https: %v", err)
	}
	c = clientFor(t, s, func(o *Options) { o.URL = "http://127.0.0.1:1" })
	if err := c.Login(ctxT(t, 10*time.Second)); core.CodeOf(err) != core.ErrConnection {
		t.Fatalf("dead port: %v", err)
	}
}
