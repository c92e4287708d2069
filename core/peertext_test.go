package core

import (
	"strings"
	"testing"
)

// TestPrintable: what a terminal would act on comes out as escapes; the
// rest, newlines and tabs included, as it was.
func TestPrintable(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain text\nline two\tcol", "plain text\nline two\tcol"},
		{"é ü 日本 \uFFFD", "é ü 日本 \uFFFD"},
		{"\x1b[2J\x1b]0;pwned\x07", `\x1b[2J\x1b]0;pwned\x07`},
		{"over\rwrite", `over\x0dwrite`},
		{"del\x7f", `del\x7f`},
		{"c1 \u009b31m", `c1 \u009b31m`},
		{"abc\u202edcb", `abc\u202edcb`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{"cut \xe6\x97", `cut \xe6\x97`},
		{"", ""},
	}
	for _, c := range cases {
		if got := Printable(c.in); got != c.want {
			t.Errorf("Printable(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestPeerTextOrder: the secret is redacted before escaping (a secret
// with a control character is still found), and the escaped text is
// clipped to MaxPeerText.
func TestPeerTextOrder(t *testing.T) {
	if got := PeerText("pw is se\x01cret!", "se\x01cret!"); got != "pw is ***" {
		t.Errorf("redaction: %q", got)
	}
	got := PeerText(strings.Repeat("\x1b", 4*MaxPeerText))
	if len(got) > MaxPeerText+len("…") || !strings.HasPrefix(got, `\x1b\x1b`) || strings.Contains(got, "\x1b") {
		t.Errorf("clipping: %d bytes, %q...", len(got), got[:16])
	}
}
