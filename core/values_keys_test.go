package core

import (
	"bytes"
	"testing"
)

// TestDecodeValuesByteStringKeys: a key that is a string but not UTF-8
// ({"$b":...}) became Opaque{"table", "<table key>"}, so two such keys
// merged into one (a value lost) and EncodeValues did not give the input
// back.
func TestDecodeValuesByteStringKeys(t *testing.T) {
	in := []byte(`[{"$t":[["a",3],[{"$b":"/g=="},2],[{"$b":"/w=="},1]]}]`)
	vals, err := DecodeValues(in)
	if err != nil {
		t.Fatalf("DecodeValues: %v", err)
	}
	m, ok := vals[0].(map[any]any)
	if !ok || len(m) != 3 {
		t.Fatalf("got %#v, want a map of 3 keys", vals[0])
	}
	if m["\xff"] != int64(1) || m["\xfe"] != int64(2) || m["a"] != int64(3) {
		t.Fatalf("got %#v", m)
	}
	out, err := EncodeValues(vals)
	if err != nil {
		t.Fatalf("EncodeValues: %v", err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("re-encoded %s, want %s", out, in)
	}
}
