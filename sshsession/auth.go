package sshsession

import (
	"errors"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"libbioxen/core"
)

// loadKeyFiles parses cfg.KeyFiles once, at Dial. The errors name the file,
// never the passphrase.
func loadKeyFiles(cfg *Config) ([]ssh.Signer, error) {
	var signers []ssh.Signer
	for _, path := range cfg.KeyFiles {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, core.Wrap(core.ErrInvalid, "ssh dial", "cannot read key file "+path, err)
		}
		s, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			if cfg.KeyPassphrase == "" {
				return nil, core.Errorf(core.ErrInvalid, "ssh dial",
					"key file %s is encrypted and Config.KeyPassphrase is empty", path)
			}
			s, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(cfg.KeyPassphrase))
			if err != nil {
				return nil, core.Errorf(core.ErrInvalid, "ssh dial",
					"cannot decrypt key file %s with Config.KeyPassphrase (wrong passphrase?)", path)
			}
		} else if err != nil {
			return nil, core.Wrap(core.ErrInvalid, "ssh dial", "cannot parse key file "+path, err)
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// authMethods returns the methods for one dial, in order: public keys (key
// files, then the agent's keys), password, keyboard-interactive answered
// with the password. done closes the agent connection after the handshake.
func (c *Conn) authMethods() (methods []ssh.AuthMethod, done func()) {
	done = func() {}
	signers := append([]ssh.Signer(nil), c.signers...)
	if c.cfg.AgentSocket != "" && !c.cfg.NoAgent {
		ac, err := net.Dial("unix", c.cfg.AgentSocket)
		if err != nil {
			core.Logf(core.LevelDebug, "ssh: ssh-agent at %s not usable: %v", c.cfg.AgentSocket, err)
		} else {
			done = func() { ac.Close() }
			as, err := agent.NewClient(ac).Signers()
			if err != nil {
				core.Logf(core.LevelDebug, "ssh: ssh-agent at %s: listing keys: %v", c.cfg.AgentSocket, err)
			}
			signers = append(signers, as...)
		}
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if c.password != nil {
		pw := c.password
		methods = append(methods, ssh.PasswordCallback(func() (string, error) { return pw(), nil }))
		methods = append(methods, ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
			answers := make([]string, len(questions))
			for i := range questions {
				if echos[i] {
					return nil, errors.New("keyboard-interactive: unexpected echoed prompt")
				}
				answers[i] = pw()
			}
			return answers, nil
		}))
	}
	return methods, done
}

func isAuthError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}
