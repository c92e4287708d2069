package core

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPeerText is how much of a text a remote peer wrote (an SSH server's
// message, a VM's stderr) an error message or a log line shows.
const MaxPeerText = 512

// minRedactedSecret is the shortest secret Redact replaces where it
// occurs; a text holding a shorter one is replaced as a whole.
const minRedactedSecret = 4

// Redact removes secret from a text a peer sent, in case it echoes it
// back. A secret of 4 bytes or more is replaced by "***" wherever it
// occurs. A shorter one is likely to occur by chance ("a" in most words),
// and replacing each occurrence would both mangle the text and show where
// the secret's characters are; so a text that contains a 1-3 byte secret
// becomes "***" as a whole: the text is lost, the secret is not shown.
func Redact(s, secret string) string {
	if secret == "" || !strings.Contains(s, secret) {
		return s
	}
	if len(secret) < minRedactedSecret {
		return "***"
	}
	return strings.ReplaceAll(s, secret, "***")
}

// Clip returns s cut to at most n bytes, on a UTF-8 boundary, with "…"
// appended when something was cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// PeerText is a text a peer wrote, made fit to show: each secret
// redacted, made Printable, then clipped to MaxPeerText bytes.
func PeerText(s string, secrets ...string) string {
	for _, secret := range secrets {
		s = Redact(s, secret)
	}
	return Clip(Printable(s), MaxPeerText)
}

// Printable returns s with what a terminal or a text viewer would act on
// made visible as Go escapes: control characters other than newline and
// tab (\x1b, \x9b), Unicode's bidirectional controls (\u202e) and bytes
// that are not UTF-8 (\xff). A peer's text shown in an error or a log
// line then cannot move the cursor, clear the screen, retitle the
// terminal or reorder what a reader sees.
func Printable(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if unprintable(r, size) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case !unprintable(r, size):
			b.WriteString(s[i : i+size])
		case r == utf8.RuneError || r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

func unprintable(r rune, size int) bool {
	if r == utf8.RuneError && size <= 1 {
		return true
	}
	if r == '\n' || r == '\t' {
		return false
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)
}

// PeerError is err, whose text a peer may have written, with that text
// shown as PeerText; err stays in the chain for errors.Is and errors.As.
// nil stays nil.
func PeerError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	return &peerError{text: PeerText(err.Error(), secrets...), err: err}
}

type peerError struct {
	text string
	err  error
}

func (e *peerError) Error() string { return e.text }
func (e *peerError) Unwrap() error { return e.err }
