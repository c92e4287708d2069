package sshsession

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// echoServer is an SSH server (x/crypto's, in process: OpenSSH cannot be
// made to do this) that accepts any password and rejects every channel
// with a message of 200 KiB that echoes the password back.
func echoServer(t *testing.T) (port int, knownHosts string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(ln.Addr().String())}, signer.PublicKey())
	if err := os.WriteFile(knownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		return &ssh.Permissions{Extensions: map[string]string{"pw": string(pw)}}, nil
	}}
	cfg.AddHostKey(signer)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					_ = nch.Reject(ssh.Prohibited, "no session for password "+sc.Permissions.Extensions["pw"]+" "+strings.Repeat("x", 200<<10))
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, knownHosts
}

// A server that echoes the password in a channel-open rejection: Run's and
// Start's errors show its message redacted and clipped.
func TestServerMessagesInErrorsAreScrubbed(t *testing.T) {
	const pw = "Peer-Secret-hostile"
	port, kh := echoServer(t)
	c := dial(t, Config{Host: "127.0.0.1", Port: port, User: "u", Password: pw, NoAgent: true, KnownHostsFile: kh})
	_, runErr := c.Run(ctxT(t, 10*time.Second), "true", nil, Limits{})
	_, startErr := c.Start(ctxT(t, 10*time.Second), "true")
	for what, err := range map[string]error{"Run": runErr, "Start": startErr} {
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		msg := err.Error()
		if strings.Contains(msg, pw) || len(msg) > 1024 || !strings.Contains(msg, "no session for password ***") {
			t.Errorf("%s: error of %d bytes: %.200s", what, len(msg), msg)
		}
	}
}
