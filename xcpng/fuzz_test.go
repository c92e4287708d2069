package xcpng

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"libbioxen/core"
)

// FuzzParseConfig feeds ParseConfig any JSON: errors are ErrInvalid, and
// neither an error nor any fmt verb of the Config shows a password (when
// the password is not also written elsewhere in the config, as a key or
// another setting).
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"xcp_host":"https://root:UrlPassw0rd@h/x@y","xcp_username":"root","xcp_password":"XcpPassw0rd","template_name":"t","vm_password":"VmPassw0rd","vm_known_hosts":"/k"}`,
		`{"xapi_url":"h","username":"u","password":12345678.5,"template":"t","vm_key_file":["a",1],"vm_trust_on_first_use":"yes"}`,
		`{"xcp_host":"h","xcp_username":"u","xcp_password":"p","template_name":"t","vm_ip_timeout":1e19,"vm_session_lifetime":-1,"bogus":1}`,
		`{"vm_password":["SecretInList"]}`, `[]`, `{`, `null`, `{"xcp_password":{"a":"SecretInObject"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil && core.CodeOf(err) != core.ErrInvalid {
			t.Fatalf("%q: %v, want ErrInvalid", data, err)
		}
		if err2 := CheckConfig(data); err2 != nil && core.CodeOf(err2) != core.ErrInvalid {
			t.Fatalf("%q: CheckConfig %v, want ErrInvalid", data, err2)
		}
		others := strings.Join([]string{c.Host, c.Username, c.Template, c.VMName, c.TLSFingerprint, c.TLSCAFile,
			c.SSHPortKey, c.VMUser, c.KnownHosts, c.Lua, strings.Join(c.VMKeyFiles, " ")}, "\x00")
		for k := range knownKeys {
			others += "\x00" + k
		}
		var raw map[string]any
		_ = json.Unmarshal(data, &raw)
		for k := range raw {
			others += "\x00" + k
		}
		out := fmt.Sprintf("%v %+v %#v %s %q %d %x", c, c, c, c, c, c, c)
		if err != nil {
			out += err.Error()
		}
		for _, pw := range []string{c.Password, c.VMPassword} {
			if len(pw) < 6 || strings.Contains(others, pw) || strings.Contains("xcpng.Config{Host: Username: Password: ***, Template: VMUser: VMPassword: VMKeyFiles: KnownHosts: [REDACTED] must be a string missing unknown key", pw) {
				continue
			}
			if strings.Contains(out, pw) {
				t.Fatalf("%q: password %q shown: %s", data, pw, out)
			}
		}
	})
}
