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

// TestDecodeValuesTableAndOpaqueKeys: every key that was a table became
// one Opaque{"table", "<table key>"}, and keys sharing a tostring text one
// Opaque, so a table with several kept one value of them (found by
// review). Each is now a key of its own, and re-encodes as it came.
func TestDecodeValuesTableAndOpaqueKeys(t *testing.T) {
	in := []byte(`[{"$t":[[[1],"a"],[[2],"b"],[{"$o":"function","s":"f"},"c"],[{"$o":"function","s":"f"},"d"],[{"$o":"thread","s":"t"},"e"]]}]`)
	vals, err := DecodeValues(in)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := vals[0].(map[any]any)
	if !ok || len(m) != 5 {
		t.Fatalf("got %#v, want a map of 5 keys", vals[0])
	}
	tables, shared := 0, 0
	for k := range m {
		switch k := k.(type) {
		case *TableKey:
			if l, ok := k.Table.([]any); !ok || len(l) != 1 {
				t.Errorf("table key %#v", k.Table)
			}
			tables++
		case *Opaque:
			if *k != (Opaque{"function", "f"}) {
				t.Errorf("shared opaque key %#v", *k)
			}
			shared++
		}
	}
	if tables != 2 || shared != 2 || m[Opaque{"thread", "t"}] != "e" {
		t.Fatalf("got %#v", m)
	}
	out, err := EncodeValues(vals)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("re-encoded %s, want %s", out, in)
	}
}
