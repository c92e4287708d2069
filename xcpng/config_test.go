package xcpng

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

// No fmt verb prints a password: Config as a value, a pointer, a field or
// a slice element, and *Engine (whose fields hold the Config and the
// options' EngineConfig JSON).
func TestFormatHidesSecrets(t *testing.T) {
	const pw, vpw, upw = "XcpPassw0rd-secret", "VmPassw0rd-secret", "UrlPassw0rd-secret"
	js := `{"xcp_host":"https://root:` + upw + `@h/x@y","xcp_username":"root","xcp_password":"` + pw +
		`","template_name":"t","vm_password":"` + vpw + `","vm_known_hosts":"/k"}`
	cfg, err := ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{opts: core.Options{Name: "x", EngineConfig: []byte(js)}, cfg: cfg}
	var secrets []string
	for _, s := range []string{pw, vpw, upw} {
		secrets = append(secrets, s, fmt.Sprintf("%x", s), fmt.Sprintf("%X", s), fmt.Sprint([]byte(s))[1:20])
	}
	vals := map[string]any{
		"Config":         cfg,
		"*Config":        &cfg,
		"struct{Config}": struct{ C Config }{cfg},
		"[]Config":       []Config{cfg},
		"*Engine":        e,
		"[]*Engine":      []*Engine{e},
		"core.Options":   e.opts,
	}
	for name, v := range vals {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t", "%o", "%10.3v"} {
			s := fmt.Sprintf(verb, v)
			for _, sec := range secrets {
				if strings.Contains(s, sec) {
					t.Errorf("%s with %s shows a secret: %.250s", name, verb, s)
					break
				}
			}
		}
	}
	if s := fmt.Sprint(cfg); !strings.Contains(s, `Host: "https://[REDACTED]@h/x@y"`) || !strings.Contains(s, "Password: ***") {
		t.Errorf("Config: %s", s)
	}
	if s := fmt.Sprintf("%+v", e); !strings.HasPrefix(s, `xcpng.Engine{Name: "x", Config: xcpng.Config{`) {
		t.Errorf("*Engine: %s", s)
	}
	if s := fmt.Sprintf("%d", cfg); !strings.HasPrefix(s, "%!d(xcpng.Config=xcpng.Config{") {
		t.Errorf("%%d: %s", s)
	}
	if s := fmt.Sprint((*Engine)(nil)); s != "xcpng.Engine(nil)" {
		t.Errorf("nil *Engine: %s", s)
	}
}

// CheckConfig reports the keys' problems (typos, types, missing required
// settings) and leaves the VM's login and host-key policy to ParseConfig,
// which opening the VM runs: the original library's examples create VMs
// from configs that give neither.
func TestCheckConfigAndParseConfig(t *testing.T) {
	spec := `{"xcp_host":"192.168.1.100","xcp_username":"root","xcp_password":"s3cret-xcp","template_name":"t","vm_username":"u","vm_password":"s3cret-vm"`
	if err := CheckConfig([]byte(spec + `}`)); err != nil {
		t.Errorf("the spec's config: %v", err)
	}
	if _, err := ParseConfig([]byte(spec + `}`)); err == nil || !strings.Contains(err.Error(), "host-key policy") {
		t.Errorf("ParseConfig without a host-key policy: %v", err)
	}
	for bad, want := range map[string]string{
		spec + `,"vm_pasword":"x"}`:     `unknown key "vm_pasword"`,
		spec + `,"vm_ip_timeout":"x"}`:  `"vm_ip_timeout" must be a positive number`,
		spec + `,"vm_key_file":[1]}`:    `"vm_key_file" must be a path`,
		`{"xcp_host":"h"}`:              `missing "xcp_username"`,
		`[1]`:                           `not a JSON object`,
		spec + `,"persistent":"maybe"}`: ``, // strings are read as booleans
	} {
		err := CheckConfig([]byte(bad))
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", bad, err)
			}
			continue
		}
		if core.CodeOf(err) != core.ErrInvalid || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", bad, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("a secret in %v", err)
		}
	}
}

// A seconds setting too large for a time.Duration is refused: 1e19 gave a
// negative duration (vm_ip_timeout: a wait that ended before it began).
func TestSecondsBounded(t *testing.T) {
	const base = `{"xcp_host":"h","xcp_username":"u","xcp_password":"p","template_name":"t","vm_password":"v","vm_known_hosts":"/k",`
	for _, v := range []string{"1e19", "1e300", "1000000001", "0", "-1"} {
		for _, k := range []string{"vm_ip_timeout", "vm_session_lifetime"} {
			if _, err := ParseConfig([]byte(base + `"` + k + `":` + v + `}`)); err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%s %s: %v, want an error naming it", k, v, err)
			}
		}
	}
	cfg, err := ParseConfig([]byte(base + `"vm_ip_timeout":1e9,"vm_session_lifetime":2.5}`))
	if err != nil || cfg.IPTimeout <= 0 || cfg.MaxLifetime != 2500*time.Millisecond {
		t.Errorf("in range: %v %v %v", cfg.IPTimeout, cfg.MaxLifetime, err)
	}
}
