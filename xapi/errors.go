package xapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"libbioxen/core"
)

// Failure is an XAPI error result: {Status: Failure, ErrorDescription:
// [Code, Params...]}. Every Failure the client returns is wrapped in a
// *core.Error whose Code classifies it (see CodeFor); use errors.As to get
// at the Failure, or IsFailure to test its code.
type Failure struct {
	Code   string
	Params []string
}

func (f *Failure) Error() string {
	if len(f.Params) == 0 {
		return "XAPI failure " + f.Code
	}
	return fmt.Sprintf("XAPI failure %s %q", f.Code, f.Params)
}

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
	case "SESSION_AUTHENTICATION_FAILED", "RBAC_PERMISSION_DENIED":
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
			return f.Params[i]
		}
		return ""
	}
	switch f.Code {
	case "SESSION_AUTHENTICATION_FAILED":
		return fmt.Sprintf("authentication failed for user %q", p(0))
	case "SESSION_INVALID":
		return "the XAPI session is no longer valid"
	case "HOST_IS_SLAVE":
		return fmt.Sprintf("host is a pool member; the master is %s", p(0))
	case "HANDLE_INVALID":
		return fmt.Sprintf("no %s with reference %s", p(0), p(1))
	case "UUID_INVALID":
		return fmt.Sprintf("no %s with UUID %q", p(0), p(1))
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
			&TLSError{Host: host, Reason: cve.Err.Error(), Fingerprint: fp, Err: err})
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return core.Wrap(core.ErrTimeout, op, "no answer from XAPI at "+host+" before the deadline", context.DeadlineExceeded)
	case errors.Is(ctx.Err(), context.Canceled):
		return core.Wrap(core.ErrGeneric, op, "call cancelled", context.Canceled)
	}
	return core.Wrap(core.ErrConnection, op, "cannot reach XAPI at "+host, err)
}

// scrub removes the password from every parameter of a Failure, in case a
// server echoes it back.
func (c *Client) scrub(f *Failure) {
	pw := string(c.creds.password)
	if pw == "" {
		return
	}
	for i, p := range f.Params {
		if p == pw || (len(pw) >= 4 && strings.Contains(p, pw)) {
			f.Params[i] = strings.ReplaceAll(p, pw, redacted)
		}
	}
}
