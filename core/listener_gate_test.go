package core_test

import (
	"testing"
	"time"

	"libbioxen/core"
	_ "libbioxen/embedded"
)

// A listener being removed declines output (the C ABI's listener, once its
// removal has begun, must not call the host's function): that output goes
// to the buffer for Read, not nowhere.
func TestDeclinedListenerOutputIsBuffered(t *testing.T) {
	vm, err := core.Open(core.Options{Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	s, err := vm.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var took []byte
	s.SetGatedListener(func(_ core.Stream, p []byte) bool {
		if len(took) == 0 {
			took = append(took, p...)
			return true
		}
		return false
	})
	// The last write ends inside a UTF-8 character: its held byte is
	// flushed at the end of the line, and declined too.
	if err := s.Send([]byte("io.write('a') io.write('b') io.write('c\\195')")); err != nil {
		t.Fatal(err)
	}
	if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
		t.Fatal("session not idle:", err)
	}
	got, _ := s.Read(core.Stdout, 0)
	if string(took) != "a" || string(got) != "bc\xc3" {
		t.Fatalf("listener took %q, buffer has %q; want \"a\" and \"bc\\xc3\"", took, got)
	}
}
