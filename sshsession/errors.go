package sshsession

import (
	"errors"
	"fmt"
	"strings"
)

// Causes wrapped inside the *core.Error values this package returns; test
// them with errors.Is. The core.Code of such an error is ErrEngine, except
// where a method documents otherwise (ErrTimeout, ErrInvalid, ErrClosed).
var (
	// ErrHostKeyUnknown: the server's host key is not in known_hosts (or
	// there is no known_hosts file) and TrustOnFirstUse is off.
	ErrHostKeyUnknown = errors.New("ssh host key unknown")
	// ErrHostKeyChanged: known_hosts holds other keys for this host. Always
	// refused, whatever the Config says (except InsecureIgnoreHostKey).
	ErrHostKeyChanged = errors.New("ssh host key changed")
	// ErrHostKeyRevoked: the key is marked @revoked in known_hosts.
	ErrHostKeyRevoked = errors.New("ssh host key revoked")
	// ErrAuth: the server accepted none of the configured credentials.
	ErrAuth = errors.New("ssh authentication failed")
	// ErrConnLost: the connection died (peer gone, keepalive unanswered)
	// while a command or stream was using it.
	ErrConnLost = errors.New("ssh connection lost")
)

// HostKeyError describes a refused host key. It unwraps to one of
// ErrHostKeyUnknown, ErrHostKeyChanged, ErrHostKeyRevoked.
type HostKeyError struct {
	Kind           error  // ErrHostKeyUnknown, ErrHostKeyChanged or ErrHostKeyRevoked
	Host           string // the address as known_hosts names it, e.g. [127.0.0.1]:2222
	KeyType        string // type of the key the server presented
	Fingerprint    string // SHA256 fingerprint of the key the server presented
	KnownHostsFile string
	// Known lists the keys known_hosts has for Host ("file:line type
	// fingerprint"), for ErrHostKeyChanged and ErrHostKeyRevoked.
	Known []string
	// NoFile is set when KnownHostsFile does not exist.
	NoFile bool
}

func (e *HostKeyError) Unwrap() error { return e.Kind }

func (e *HostKeyError) Error() string {
	switch e.Kind {
	case ErrHostKeyChanged:
		return fmt.Sprintf("REMOTE HOST KEY HAS CHANGED for %s: the server presented %s %s, but %s "+
			"(possible man-in-the-middle attack; if the change is legitimate, remove the old entry from %s)",
			e.Host, e.KeyType, e.Fingerprint, knownText(e.Known), e.KnownHostsFile)
	case ErrHostKeyRevoked:
		return fmt.Sprintf("host key %s %s of %s is revoked in %s", e.KeyType, e.Fingerprint, e.Host, knownText(e.Known))
	default:
		if e.NoFile {
			return fmt.Sprintf("cannot verify host key %s %s of %s: known_hosts file %s does not exist "+
				"(add the host's key to it, or set TrustOnFirstUse to record it on first connection)",
				e.KeyType, e.Fingerprint, e.Host, e.KnownHostsFile)
		}
		return fmt.Sprintf("host key %s %s of %s is not in %s "+
			"(add it, or set TrustOnFirstUse to record it on first connection)",
			e.KeyType, e.Fingerprint, e.Host, e.KnownHostsFile)
	}
}

func knownText(known []string) string {
	if len(known) == 1 {
		return "known_hosts has " + known[0]
	}
	return "known_hosts has [" + strings.Join(known, "; ") + "]"
}
