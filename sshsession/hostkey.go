package sshsession

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"libbioxen/core"
)

// hostKeyCheck is one dial's host-key policy. refused records why the
// callback refused a key (the ssh package wraps the callback's error in its
// own text; the dial reports this one).
type hostKeyCheck struct {
	callback ssh.HostKeyCallback
	algos    []string // host key algorithms to ask for (those known_hosts has for the host)
	refused  *HostKeyError
	other    error
}

// newHostKeyCheck reads KnownHostsFile (again on every dial, so entries
// added meanwhile count) and returns the policy for addr.
func newHostKeyCheck(cfg *Config, addr string) (*hostKeyCheck, error) {
	hc := &hostKeyCheck{}
	if cfg.InsecureIgnoreHostKey {
		core.Logf(core.LevelWarn, "ssh: %s: host key NOT verified (InsecureIgnoreHostKey)", addr)
		hc.callback = ssh.InsecureIgnoreHostKey()
		return hc, nil
	}
	path := cfg.KnownHostsFile
	var db ssh.HostKeyCallback
	_, statErr := os.Stat(path)
	noFile := errors.Is(statErr, fs.ErrNotExist)
	if statErr != nil && !noFile {
		return nil, core.Wrap(core.ErrInvalid, "ssh dial", "cannot read known_hosts file "+path, statErr)
	}
	if !noFile {
		var err error
		if db, err = knownhosts.New(path); err != nil {
			return nil, core.Wrap(core.ErrInvalid, "ssh dial", "cannot parse known_hosts file "+path, err)
		}
		hc.algos = knownAlgorithms(db, addr)
	}
	hc.callback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		hke := &HostKeyError{
			Kind:           ErrHostKeyUnknown,
			Host:           knownhosts.Normalize(hostname),
			KeyType:        key.Type(),
			Fingerprint:    ssh.FingerprintSHA256(key),
			KnownHostsFile: path,
			NoFile:         noFile,
		}
		if db != nil {
			err := db(hostname, remote, key)
			if err == nil {
				return nil
			}
			var ke *knownhosts.KeyError
			var re *knownhosts.RevokedError
			switch {
			case errors.As(err, &re):
				hke.Kind, hke.Known = ErrHostKeyRevoked, []string{describeKnown(re.Revoked)}
				hc.refused = hke
				return hke
			case errors.As(err, &ke) && len(ke.Want) > 0:
				hke.Kind = ErrHostKeyChanged
				for _, k := range ke.Want {
					hke.Known = append(hke.Known, describeKnown(k))
				}
				hc.refused = hke
				return hke
			case errors.As(err, &ke):
				// unknown host: trust on first use below
			default:
				hc.other = err
				return err
			}
		}
		if !cfg.TrustOnFirstUse {
			hc.refused = hke
			return hke
		}
		if err := addKnownHost(path, hostname, remote, key); err != nil {
			var changed *HostKeyError
			if errors.As(err, &changed) {
				hc.refused = changed
				return changed
			}
			hc.other = fmt.Errorf("trust on first use: cannot record the host key of %s in %s: %w", hke.Host, path, err)
			return hc.other
		}
		core.Logf(core.LevelWarn, "ssh: trust on first use: added host key %s %s of %s to %s",
			hke.KeyType, hke.Fingerprint, hke.Host, path)
		return nil
	}
	return hc, nil
}

func describeKnown(k knownhosts.KnownKey) string {
	return fmt.Sprintf("%s:%d %s %s", k.Filename, k.Line, k.Key.Type(), ssh.FingerprintSHA256(k.Key))
}

// probeKey is a key no known_hosts file holds: checking it against the
// database returns the keys recorded for an address.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// knownAlgorithms returns the host key algorithms of the keys db holds for
// addr, so the server is asked for a key type we can check (otherwise a
// server with several host keys may present another type, which would look
// like a changed key). nil when the host is unknown.
func knownAlgorithms(db ssh.HostKeyCallback, addr string) []string {
	err := db(addr, &net.TCPAddr{IP: net.IPv4zero}, probeKey())
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, s := range a {
			if !seen[s] {
				seen[s] = true
				algos = append(algos, s)
			}
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

// knownHostsMu serializes trust-on-first-use writers in this process; an
// flock on the file serializes them across processes.
var knownHostsMu sync.Mutex

// addKnownHost appends hostname's key to path, unless another writer
// recorded a key for the host meanwhile: the same key is fine, a different
// one is a *HostKeyError (changed).
func addKnownHost(path, hostname string, remote net.Addr, key ssh.PublicKey) error {
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if db, err := knownhosts.New(path); err == nil {
		err := db(hostname, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			hke := &HostKeyError{Kind: ErrHostKeyChanged, Host: knownhosts.Normalize(hostname),
				KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), KnownHostsFile: path}
			for _, k := range ke.Want {
				hke.Known = append(hke.Known, describeKnown(k))
			}
			return hke
		}
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		return err
	}
	return f.Sync()
}
