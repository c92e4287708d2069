package sshsession

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"libbioxen/core"
)

// Defaults applied by Dial to zero fields of a Config.
const (
	DefaultPort              = 22
	DefaultDialTimeout       = 10 * time.Second
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultReconnectInitial  = 250 * time.Millisecond
	DefaultReconnectMax      = 5 * time.Second
	DefaultReconnectAttempts = 4
)

// Config says where and how to connect. The zero value of every field but
// Host is usable; Dial fills in the defaults above.
//
// Secrets (Password, KeyPassphrase) never appear in errors or log lines,
// and String, GoString and Format print them as "[REDACTED]" (an empty
// secret prints as ""), so every fmt verb is safe. A Host with user
// information ("user:password@host") is refused by Dial, and neither the
// error nor the formatted Config shows the part before the '@'. The Conn
// that Dial returns keeps them only inside authentication closures.
type Config struct {
	Host string // host name or IP address (required)
	Port int    // TCP port; 0 means 22
	User string // remote user; empty means the current local user

	// Password is tried (after public keys) with the "password" method and,
	// for servers that only offer it, "keyboard-interactive". Empty: no
	// password authentication.
	Password string
	// KeyFiles are private key files (OpenSSH or PEM format) tried in order,
	// before any ssh-agent key.
	KeyFiles []string
	// KeyPassphrase decrypts encrypted KeyFiles.
	KeyPassphrase string
	// The keys of the ssh-agent at AgentSocket (empty: $SSH_AUTH_SOCK) are
	// tried after KeyFiles unless NoAgent is set. An agent that cannot be
	// reached is skipped (logged at debug level).
	AgentSocket string
	NoAgent     bool

	// KnownHostsFile is the OpenSSH known_hosts file that host keys are
	// checked against; empty means ~/.ssh/known_hosts. Host keys are always
	// verified unless InsecureIgnoreHostKey is set: an unknown host, or a
	// missing file, is refused unless TrustOnFirstUse is set.
	KnownHostsFile string
	// TrustOnFirstUse adds the key of a host that is not in KnownHostsFile
	// (creating the file, mode 0600, if needed) and connects. A host whose
	// key differs from the recorded one is always refused, with both
	// fingerprints in the error.
	TrustOnFirstUse bool
	// InsecureIgnoreHostKey accepts any host key. It makes the connection
	// open to man-in-the-middle attacks: for throwaway test VMs only, never
	// in production. Each dial with it logs a warning.
	InsecureIgnoreHostKey bool

	// DialTimeout bounds the TCP connect plus the SSH handshake and
	// authentication of one dial attempt (0: 10 s).
	DialTimeout time.Duration
	// KeepaliveInterval is how often a keepalive@openssh.com global request
	// is sent; a reply missing for one interval marks the connection dead
	// (0: 15 s; negative: no keepalives).
	KeepaliveInterval time.Duration
	// Reconnect is the backoff used when a method finds the connection dead.
	Reconnect Backoff
}

// Backoff paces reconnection: attempt 1 is immediate, attempt k+1 follows
// after Initial·2^(k-1), capped at Max. Zero fields take the defaults
// (250 ms, 5 s, 4 attempts). Attempts < 0 turns automatic reconnection off:
// methods on a dead connection then fail with an ErrConnLost error until
// Redial is called, which makes one attempt.
type Backoff struct {
	Initial  time.Duration
	Max      time.Duration
	Attempts int
}

// Addr returns host:port.
func (c Config) Addr() string {
	p := c.Port
	if p == 0 {
		p = DefaultPort
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(p))
}

const redacted = "[REDACTED]"

// configFields is Config without its methods, so fmt prints it field by
// field (with the secrets already replaced) instead of recursing.
type configFields Config

func (c Config) redact() configFields {
	r := configFields(c)
	if r.Password != "" {
		r.Password = redacted
	}
	if r.KeyPassphrase != "" {
		r.KeyPassphrase = redacted
	}
	r.Host = core.RedactUserinfo(c.Host, redacted)
	r.KeyFiles = append([]string(nil), c.KeyFiles...)
	return r
}

// String prints the fields like %+v, with the secrets redacted.
func (c Config) String() string { return fmt.Sprintf("%+v", c.redact()) }

// GoString prints the fields like %#v, with the secrets redacted.
func (c Config) GoString() string {
	s := fmt.Sprintf("%#v", c.redact())
	return strings.Replace(s, "sshsession.configFields", "sshsession.Config", 1)
}

// Format implements fmt.Formatter so that every verb prints the redacted
// form: %v and %s like String without field names unless '+' is given,
// %#v like GoString, %q the quoted String.
func (c Config) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		io.WriteString(f, c.GoString())
	case verb == 'v' && f.Flag('+'), verb == 's':
		io.WriteString(f, c.String())
	case verb == 'v':
		fmt.Fprintf(f, "%v", c.redact())
	case verb == 'q':
		fmt.Fprintf(f, "%q", c.String())
	default:
		fmt.Fprintf(f, "%%!%c(sshsession.Config=%s)", verb, c.String())
	}
}

// normalize checks c and fills in the defaults.
func (c Config) normalize() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, core.Errorf(core.ErrInvalid, "ssh dial", format, args...)
	}
	if c.Host == "" {
		return bad("Config.Host is empty")
	}
	if strings.Contains(c.Host, "@") {
		// Never echo it: "user:password@host" would show the password.
		return bad("Config.Host %q holds user information (user[:password]@host); give the user in Config.User and the password in Config.Password",
			core.RedactUserinfo(c.Host, redacted))
	}
	if strings.ContainsAny(c.Host, "\x00\n\r\t /") {
		return bad("Config.Host %q is not a host name or address", c.Host)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 1 || c.Port > 65535 {
		return bad("Config.Port %d is out of range", c.Port)
	}
	if c.User == "" {
		u, err := user.Current()
		if err != nil {
			return bad("Config.User is empty and the current user is unknown: %v", err)
		}
		c.User = u.Username
	}
	if strings.ContainsRune(c.User, 0) || strings.ContainsRune(c.Password, 0) {
		return bad("Config.User or Config.Password contains a NUL byte")
	}
	if c.InsecureIgnoreHostKey && c.TrustOnFirstUse {
		return bad("Config.InsecureIgnoreHostKey and Config.TrustOnFirstUse are both set; choose one")
	}
	if c.KnownHostsFile == "" && !c.InsecureIgnoreHostKey {
		home, err := os.UserHomeDir()
		if err != nil {
			return bad("Config.KnownHostsFile is empty and the home directory is unknown: %v", err)
		}
		c.KnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
	}
	if c.AgentSocket == "" && !c.NoAgent {
		c.AgentSocket = os.Getenv("SSH_AUTH_SOCK")
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.DialTimeout < 0 {
		return bad("Config.DialTimeout %v is negative", c.DialTimeout)
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.Reconnect.Initial <= 0 {
		c.Reconnect.Initial = DefaultReconnectInitial
	}
	if c.Reconnect.Max <= 0 {
		c.Reconnect.Max = DefaultReconnectMax
	}
	if c.Reconnect.Max < c.Reconnect.Initial {
		c.Reconnect.Max = c.Reconnect.Initial
	}
	if c.Reconnect.Attempts == 0 {
		c.Reconnect.Attempts = DefaultReconnectAttempts
	}
	return c, nil
}
