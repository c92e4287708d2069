package xapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"unicode"

	"libbioxen/core"
	"libbioxen/xapi/internal/wire"
)

// Failure is an XAPI error result: {Status: Failure, ErrorDescription:
// [Code, Params...]}. Every Failure the client returns is wrapped in a
// *core.Error whose Code classifies it (see CodeFor); use errors.As to get
// at the Failure, or IsFailure to test its code.
type Failure struct {
	Code   string
	Params []string
}

// Error shows the code and the parameters, each clipped (a server could
// send megabytes); the fields keep them whole.
func (f *Failure) Error() string {
	code := shown(f.Code, maxCodeText)
	if len(f.Params) == 0 {
		return "XAPI failure " + code
	}
	n := min(len(f.Params), maxParamsShown)
	params := make([]string, n)
	for i := range n {
		params[i] = core.Clip(f.Params[i], maxParamText)
	}
	s := fmt.Sprintf("XAPI failure %s %q", code, params)
	if n < len(f.Params) {
		s += fmt.Sprintf(" and %d more parameters", len(f.Params)-n)
	}
	return s
}

// shown is a server's text as an error message shows it unquoted: clipped
// to n bytes, and quoted when it holds a character that is not printable
// (a newline in a failure's code or parameter started a forged line in a
// log, a U+202E reordered the text after it).
func shown(s string, n int) string {
	s = core.Clip(s, n)
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// How much of a server's text an error message shows.
const (
	maxCodeText    = 64
	maxParamText   = 256
	maxParamsShown = 16
)

// ErrMalformed is in the chain of the error for a response that is not a
// well-formed XML-RPC document, or is over the decoder's limits (then
// ErrResponseLimit is in the chain too).
var ErrMalformed = wire.ErrMalformed

// ErrResponseLimit is in the chain of the error for a response nested
// deeper than wire.DefaultMaxDepth (512) values, holding more than
// wire.DefaultMaxValues (2 Mi) values, a tag (or processing instruction,
// or directive) longer than wire.MaxMarkup (4 KiB) or more than
// wire.MaxAttributes (64 KiB) of attributes. With the 256 MiB cap on a
// response's size, this keeps a hostile server from crashing the client
// (stack exhaustion) or making it allocate many times the response's size.
var ErrResponseLimit = wire.ErrLimit

// Fault is an XML-RPC <fault>, in the chain of the error when a server
// answers with one (XAPI never does). Its String is scrubbed of the
// password and clipped to 1 KiB.
type Fault = wire.Fault

// ErrSchemeChange is in the chain of the error when HOST_IS_SLAVE names a
// master URL whose scheme differs from the client's: following an https
// client to http would send the password in clear text.
var ErrSchemeChange = errors.New("the pool master's URL scheme differs from the client's")

// IsFailure reports whether err carries an XAPI Failure with the given code
// (any code when code is "").
func IsFailure(err error, code string) bool {
	var f *Failure
	return errors.As(err, &f) && (code == "" || f.Code == code)
}

// FailureOf returns the XAPI Failure in err's chain, or nil.
func FailureOf(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return nil
}

// CodeFor maps an XAPI error code to the library's error code.
func CodeFor(code string) core.Code {
	switch code {
	// SESSION_AUTHORIZATION_FAILED [user, msg]: an external-auth user
	// whose password is right but who may not log in (xen-api
	// xapi_session.ml thread_delay_and_raise_error).
	case "SESSION_AUTHENTICATION_FAILED", "SESSION_AUTHORIZATION_FAILED", "RBAC_PERMISSION_DENIED":
		return core.ErrAuth
	case "SESSION_INVALID",
		"MESSAGE_PARAMETER_COUNT_MISMATCH", "FIELD_TYPE_ERROR", "INVALID_VALUE", "MAP_DUPLICATE_KEY",
		"VM_IS_TEMPLATE", "VM_CANNOT_DELETE_DEFAULT_TEMPLATE", "DEVICE_ALREADY_EXISTS", "INVALID_DEVICE",
		"EVENT_FROM_TOKEN_PARSE_FAILURE", "MEMORY_CONSTRAINT_VIOLATION":
		return core.ErrInvalid
	case "HANDLE_INVALID", "UUID_INVALID":
		return core.ErrBadHandle
	case "MESSAGE_METHOD_UNKNOWN", "MESSAGE_REMOVED", "VM_LACKS_FEATURE":
		return core.ErrUnsupported
	case "HOST_NOT_ENOUGH_FREE_MEMORY", "SR_FULL":
		return core.ErrNoMem
	case "VM_SHUTDOWN_TIMEOUT":
		return core.ErrTimeout
	}
	return core.ErrEngine
}

// describe gives a person-readable sentence for common failures.
func describe(f *Failure) string {
	p := func(i int) string {
		if i < len(f.Params) {
			return shown(f.Params[i], maxParamText)
		}
		return ""
	}
	q := func(i int) string { // for %q, which quotes it already
		if i < len(f.Params) {
			return core.Clip(f.Params[i], maxParamText)
		}
		return ""
	}
	switch f.Code {
	case "SESSION_AUTHENTICATION_FAILED":
		return fmt.Sprintf("authentication failed for user %q", q(0))
	case "SESSION_AUTHORIZATION_FAILED":
		return fmt.Sprintf("user %q may not log in to XAPI", q(0))
	case "SESSION_INVALID":
		return "the XAPI session is no longer valid"
	case "HOST_IS_SLAVE":
		return fmt.Sprintf("host is a pool member; the master is %s", p(0))
	case "HANDLE_INVALID":
		return fmt.Sprintf("no %s with reference %s", p(0), p(1))
	case "UUID_INVALID":
		return fmt.Sprintf("no %s with UUID %q", p(0), q(1))
	case "VM_BAD_POWER_STATE":
		return fmt.Sprintf("VM is %s, expected %s", p(2), p(1))
	case "VM_IS_TEMPLATE":
		return fmt.Sprintf("cannot %s a template", p(1))
	case "MESSAGE_METHOD_UNKNOWN":
		return fmt.Sprintf("XAPI does not know method %s", p(0))
	}
	return "XAPI call failed"
}

// TLSError says the server's certificate was not trusted. Fingerprint is
// the SHA-256 of the certificate the server presented (colon-separated
// upper-case hex, as OpenSSL prints it), to pin after checking it out of
// band.
type TLSError struct {
	Host        string
	Reason      string
	Fingerprint string
	Err         error
}

func (e *TLSError) Error() string {
	s := fmt.Sprintf("TLS certificate of %s not trusted: %s", e.Host, e.Reason)
	if e.Fingerprint != "" {
		s += " (server certificate SHA-256 " + e.Fingerprint + ")"
	}
	return s
}

func (e *TLSError) Unwrap() error { return e.Err }

// transportError classifies an error from the HTTP round trip.
func (c *Client) transportError(ctx context.Context, op, host string, err error) error {
	var te *TLSError
	if errors.As(err, &te) {
		te.Host = host
		return core.Wrap(core.ErrHostKey, op, "cannot connect to XAPI", te)
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		fp := ""
		if len(cve.UnverifiedCertificates) > 0 {
			fp = fingerprint(cve.UnverifiedCertificates[0].Raw)
		}
		return core.Wrap(core.ErrHostKey, op, "cannot connect to XAPI",
			&TLSError{Host: host, Reason: core.PeerText(cve.Err.Error(), string(c.creds.password)), Fingerprint: fp, Err: err})
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return core.Wrap(core.ErrTimeout, op, "no answer from XAPI at "+host+" before the deadline", context.DeadlineExceeded)
	case errors.Is(ctx.Err(), context.Canceled):
		return core.Wrap(core.ErrGeneric, op, "call cancelled", context.Canceled)
	}
	return core.Wrap(core.ErrConnection, op, "cannot reach XAPI at "+host, c.serverError(err))
}

// serverError is err, whose text a server may have written (net/http
// quotes a malformed status line or header), redacted and clipped; err
// stays in the chain for errors.Is and errors.As.
func (c *Client) serverError(err error) error {
	return core.PeerError(err, string(c.creds.password))
}

// scrub removes the password from a Failure's code and parameters, in
// case a server echoes it back.
func (c *Client) scrub(f *Failure) {
	f.Code = c.redact(f.Code)
	for i, p := range f.Params {
		f.Params[i] = c.redact(p)
	}
}

// redact removes the password from one piece of text a server sent (a
// failure's code or parameter, a fault string, the text a decoding error
// quotes), by core.Redact's rule: a password of 4 bytes or more becomes
// "***" wherever it occurs; a text holding a shorter one becomes "***"
// as a whole, as each occurrence of "a" or "10" would both mangle the text
// and show where the password's characters are ("HANDLE_INV***ID"). (With
// such a password a HOST_IS_SLAVE address that happens to contain it is
// lost too, and the redirect fails with an error.)
func (c *Client) redact(s string) string {
	return core.Redact(s, string(c.creds.password))
}

// quoteServer quotes text a server sent for an error message: redacted,
// then clipped.
func (c *Client) quoteServer(s string) string { return quoteText(c.redact(s)) }

// quoteText quotes already redacted text, clipped to a short prefix.
func quoteText(s string) string { return wire.Quote(s) }
