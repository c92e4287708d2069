package core

import (
	"fmt"
	"strings"
	"testing"
)

// No fmt verb may print EngineConfig (it holds the xcpng engine's
// passwords), whether Options is formatted as a value, a pointer or a field.
func TestOptionsFormatRedactsEngineConfig(t *testing.T) {
	const pw = "XcpPassw0rd-secret"
	o := Options{Engine: "xcpng", Name: "vm1", AllowedPaths: []string{"/data"},
		EngineConfig: []byte(`{"xcp_host":"https://h","xcp_password":"` + pw + `","vm_password":"` + pw + `"}`)}
	leaks := []string{pw, fmt.Sprintf("%x", pw), fmt.Sprintf("%X", pw), fmt.Sprint([]byte(pw))[1:20]}
	vals := map[string]any{
		"Options":         o,
		"*Options":        &o,
		"struct{Options}": struct{ O Options }{o},
		"[]Options":       []Options{o},
	}
	for name, v := range vals {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t", "%100v"} {
			s := fmt.Sprintf(verb, v)
			for _, leak := range leaks {
				if strings.Contains(s, leak) {
					t.Errorf("%s with %s shows the secret: %.200s", name, verb, s)
					break
				}
			}
		}
	}
	s := fmt.Sprintf("%+v", o)
	for _, want := range []string{`Engine: "xcpng"`, `Name: "vm1"`, `AllowedPaths: ["/data"]`, "EngineConfig: [REDACTED"} {
		if !strings.Contains(s, want) {
			t.Errorf("%%+v = %s; want it to contain %s", s, want)
		}
	}
	if s := fmt.Sprint(Options{}); !strings.Contains(s, `EngineConfig: ""`) {
		t.Errorf("empty EngineConfig: %s", s)
	}
}

// RedactUserinfo serves xcpng, sshsession, xapi and packages (each had its
// own copy).
func TestRedactUserinfo(t *testing.T) {
	for in, want := range map[string]string{
		"https://h":                "https://h",
		"https://u:p@h:443/a":      "https://[REDACTED]@h:443/a",
		"u:p@h":                    "[REDACTED]@h",
		"http://h/path@x":          "http://h/path@x",
		"https://a@b:c@h?q=x@y#f@": "https://[REDACTED]@h?q=x@y#f@",
		"":                         "",
		// A password with '/', '?' or '#' (found by review, red team).
		"https://root:pa/ss@127.0.0.1:9": "https://[REDACTED]@127.0.0.1:9",
		"root:pa#ss@127.0.0.1":           "[REDACTED]@127.0.0.1",
		"https://root:p?w@h/x":           "https://[REDACTED]@h/x",
		"/home/u@x/known_hosts":          "/home/u@x/known_hosts",
	} {
		if got := RedactUserinfo(in, "[REDACTED]"); got != want {
			t.Errorf("RedactUserinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
