// Package xcpng is the "xcpng" engine: a Lua VM inside an XCP-ng virtual
// machine. Opening it provisions a VM from a template over XAPI (xapi/),
// starts it, waits for its address, connects over SSH (sshsession/) and
// runs the process engine's Lua driver on an exec channel, so Exec returns
// exactly what a basic VM returns. Closing it shuts the VM down and, unless
// it is persistent, destroys it and its disks.
package xcpng

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"libbioxen/core"
)

// Config is an XCP-ng VM's configuration. It comes from the user's config
// dict (JSON); both spellings of the spec are accepted.
type Config struct {
	Host            string // xcp_host or xapi_url
	Username        string // xcp_username or username
	Password        string // xcp_password or password
	Template        string // template_name or template
	VMName          string // vm_name (default: the VM id)
	TLSFingerprint  string // xcp_tls_fingerprint
	TLSCAFile       string // xcp_tls_ca_file
	TLSInsecure     bool   // xcp_insecure: no TLS verification (explicit opt-out)
	AllowLoopbackIP bool   // xcp_allow_loopback_ip (the simulator's guests)
	SSHPortKey      string // vm_ssh_port_key

	VMUser          string   // vm_username (default "root")
	VMPassword      string   // vm_password
	VMKeyFiles      []string // vm_key_file (string or list)
	UseAgent        bool     // vm_use_agent: also offer the ssh-agent's keys (default: only the given ones)
	KnownHosts      string   // vm_known_hosts
	TrustOnFirstUse bool     // vm_trust_on_first_use
	InsecureHostKey bool     // vm_insecure_host_key

	Lua         string        // vm_lua: the interpreter in the VM (default "lua5.4")
	Persistent  bool          // persistent: keep the VM (shut down, not destroyed) on stop
	IPTimeout   time.Duration // vm_ip_timeout seconds (default 180)
	MaxLifetime time.Duration // vm_session_lifetime seconds: remote kill of the interpreter (default 86400)
}

// String never shows secrets: the passwords print as ***, and user
// information in Host ("https://user:pw@host") as [REDACTED].
func (c Config) String() string {
	return fmt.Sprintf("xcpng.Config{Host: %q, Username: %q, Password: ***, Template: %q, VMUser: %q, VMPassword: ***, VMKeyFiles: %q, KnownHosts: %q}",
		core.RedactUserinfo(c.Host, "[REDACTED]"), c.Username, c.Template, c.VMUser, c.VMKeyFiles, c.KnownHosts)
}

// GoString is String.
func (c Config) GoString() string { return c.String() }

// Format implements fmt.Formatter so that no verb prints a field itself
// (%d or %t would otherwise print the passwords): %v, %+v, %#v and %s
// print String, %q the quoted String, any other verb
// %!verb(xcpng.Config=String). This holds for a Config inside another
// value too.
func (c Config) Format(f fmt.State, verb rune) {
	core.FormatRedacted(f, verb, "xcpng.Config", c.String())
}

var knownKeys = map[string]bool{
	"xcp_host": true, "xapi_url": true, "xcp_username": true, "username": true,
	"xcp_password": true, "password": true, "template_name": true, "template": true,
	"vm_name": true, "xcp_tls_fingerprint": true, "xcp_tls_ca_file": true, "xcp_insecure": true,
	"xcp_allow_loopback_ip": true, "vm_ssh_port_key": true, "vm_username": true,
	"vm_password": true, "vm_key_file": true, "vm_use_agent": true, "vm_known_hosts": true, "vm_trust_on_first_use": true,
	"vm_insecure_host_key": true, "vm_lua": true, "persistent": true, "vm_ip_timeout": true,
	"vm_session_lifetime": true, "vm_config": true, "sim_state_dir": true, "sim_pid": true,
}

// maxConfigSeconds bounds a seconds setting (about 31 years): far inside a
// time.Duration, also once added to another timeout.
const maxConfigSeconds = 1e9

// ParseConfig reads a config JSON object. Missing required settings and
// values of the wrong type are reported together, by key; unknown keys are
// errors too (a typo must not be ignored), and so is a config that gives
// no way to log in to the VM or no host-key policy. Secrets never appear
// in errors.
func ParseConfig(data []byte) (Config, error) {
	c, problems, err := readConfig(data)
	if err != nil {
		return c, err
	}
	if c.VMPassword == "" && len(c.VMKeyFiles) == 0 {
		problems = append(problems, `no way to log in to the VM: give "vm_key_file" or "vm_password"`)
	}
	if c.KnownHosts == "" && !c.TrustOnFirstUse && !c.InsecureHostKey {
		problems = append(problems, `no host-key policy: give "vm_known_hosts" (or set "vm_trust_on_first_use")`)
	}
	return c, configError(problems)
}

// CheckConfig reports what ParseConfig would of the keys themselves: a
// config that is not a JSON object, missing required settings, values of
// the wrong type, unknown keys. It does not ask for the VM's login or
// host-key policy, which a config may leave to be filled in before the VM
// starts (the original library's examples give neither).
func CheckConfig(data []byte) error {
	_, problems, err := readConfig(data)
	if err != nil {
		return err
	}
	return configError(problems)
}

func configError(problems []string) error {
	if len(problems) > 0 {
		return core.Errorf(core.ErrInvalid, "xcpng config", "%s", strings.Join(problems, "; "))
	}
	return nil
}

// readConfig reads a config JSON object into a Config with its defaults,
// listing the problems of its keys and values.
func readConfig(data []byte) (Config, []string, error) {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, nil, core.Wrap(core.ErrInvalid, "xcpng config", "config is not a JSON object", err)
	}
	var problems []string
	str := func(keys ...string) string {
		for _, k := range keys {
			v, ok := raw[k]
			if !ok || v == nil {
				continue
			}
			switch x := v.(type) {
			case string:
				return x
			case float64:
				return strconv.FormatFloat(x, 'f', -1, 64)
			default:
				problems = append(problems, fmt.Sprintf("%q must be a string", k))
			}
		}
		return ""
	}
	boolean := func(k string) bool {
		switch x := raw[k].(type) {
		case nil:
			return false
		case bool:
			return x
		case string:
			return x == "true" || x == "1" || x == "yes"
		default:
			problems = append(problems, fmt.Sprintf("%q must be true or false", k))
			return false
		}
	}
	seconds := func(k string, def time.Duration) time.Duration {
		switch x := raw[k].(type) {
		case nil:
			return def
		case float64:
			if x > 0 && x <= maxConfigSeconds {
				return time.Duration(x * float64(time.Second))
			}
		}
		// Past maxConfigSeconds a time.Duration overflowed (1e19 became a
		// negative timeout, an address wait that had ended before it began).
		problems = append(problems, fmt.Sprintf("%q must be a positive number of seconds, at most %g", k, float64(maxConfigSeconds)))
		return def
	}
	c := Config{
		Host:            str("xcp_host", "xapi_url"),
		Username:        str("xcp_username", "username"),
		Password:        str("xcp_password", "password"),
		Template:        str("template_name", "template"),
		VMName:          str("vm_name"),
		TLSFingerprint:  str("xcp_tls_fingerprint"),
		TLSCAFile:       str("xcp_tls_ca_file"),
		TLSInsecure:     boolean("xcp_insecure"),
		AllowLoopbackIP: boolean("xcp_allow_loopback_ip"),
		SSHPortKey:      str("vm_ssh_port_key"),
		VMUser:          str("vm_username"),
		VMPassword:      str("vm_password"),
		UseAgent:        boolean("vm_use_agent"),
		KnownHosts:      str("vm_known_hosts"),
		TrustOnFirstUse: boolean("vm_trust_on_first_use"),
		InsecureHostKey: boolean("vm_insecure_host_key"),
		Lua:             str("vm_lua"),
		Persistent:      boolean("persistent"),
		IPTimeout:       seconds("vm_ip_timeout", 180*time.Second),
		MaxLifetime:     seconds("vm_session_lifetime", 24*time.Hour),
	}
	switch x := raw["vm_key_file"].(type) {
	case nil:
	case string:
		c.VMKeyFiles = []string{x}
	case []any:
		for _, f := range x {
			if s, ok := f.(string); ok {
				c.VMKeyFiles = append(c.VMKeyFiles, s)
			} else {
				problems = append(problems, `"vm_key_file" must be a path or a list of paths`)
			}
		}
	default:
		problems = append(problems, `"vm_key_file" must be a path or a list of paths`)
	}
	for _, req := range [][2]string{{"xcp_host", "xapi_url"}, {"xcp_username", "username"}, {"xcp_password", "password"}, {"template_name", "template"}} {
		if str(req[0], req[1]) == "" {
			problems = append(problems, fmt.Sprintf("missing %q (or %q)", req[0], req[1]))
		}
	}
	var unknown []string
	for k := range raw {
		if !knownKeys[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		problems = append(problems, fmt.Sprintf("unknown key %q", k))
	}
	if c.VMUser == "" {
		c.VMUser = "root"
	}
	if c.Lua == "" {
		c.Lua = "lua5.4"
	}
	return c, problems, nil
}
