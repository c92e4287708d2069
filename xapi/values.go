package xapi

import (
	"fmt"
	"strconv"
	"time"
)

// NullRef is XAPI's null reference.
const NullRef = "OpaqueRef:NULL"

// IsNullRef reports whether ref is empty or OpaqueRef:NULL.
func IsNullRef(ref string) bool { return ref == "" || ref == NullRef }

// AsString converts a decoded XAPI value to a string ("" for nil).
func AsString(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case int64:
		return strconv.FormatInt(t, 10)
	case bool:
		return strconv.FormatBool(t)
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	case time.Time:
		return t.UTC().Format(time.RFC3339)
	}
	return fmt.Sprint(v)
}

// AsBool converts a decoded value to a bool (XAPI booleans, or "true").
func AsBool(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case string:
		b, _ := strconv.ParseBool(t)
		return b
	case int64:
		return t != 0
	}
	return false
}

// AsInt converts a decoded value to an int64. XAPI sends 64-bit ints as
// decimal strings.
func AsInt(v any) (int64, error) {
	switch t := v.(type) {
	case int64:
		return t, nil
	case string:
		return strconv.ParseInt(t, 10, 64)
	case float64:
		return int64(t), nil
	}
	return 0, fmt.Errorf("not an integer: %T", v)
}

// AsStrings converts a decoded XAPI set (array) to []string.
func AsStrings(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		out = append(out, AsString(x))
	}
	return out
}

// AsStringMap converts a decoded (string → string) map.
func AsStringMap(v any) map[string]string {
	m, _ := v.(map[string]any)
	out := make(map[string]string, len(m))
	for k, x := range m {
		out[k] = AsString(x)
	}
	return out
}

// AsRecord converts a decoded struct (an object record) to a map.
func AsRecord(v any) map[string]any {
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}
