package embedded

import (
	"context"
	"strings"
	"testing"
	"time"

	"libbioxen/core"
)

// TestPanicInTheEngineIsAnError: a Go panic in the engine's own code while a
// chunk runs (simulated with faultAfterChunk: no Lua code can cause one)
// becomes a typed error, with or without a deadline. With a deadline the
// chunk runs on a goroutine, where a panic used to end the whole process.
// The VM's state is replaced and the VM works afterwards.
func TestPanicInTheEngineIsAnError(t *testing.T) {
	vm := openVM(t, core.Options{Persistent: true})
	if _, err := vm.Exec(context.Background(), []byte("kept = 1"), core.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []time.Duration{0, time.Second} {
		faultAfterChunk = func() { panic("simulated engine bug") }
		_, err := vm.Exec(context.Background(), []byte("return 1"), core.ExecOptions{Timeout: timeout})
		faultAfterChunk = nil
		if core.CodeOf(err) != core.ErrGeneric || !strings.Contains(err.Error(), "simulated engine bug") {
			t.Fatalf("timeout %v: %v", timeout, err)
		}
		res, err := vm.Exec(context.Background(), []byte("return kept, 1 + 1"), core.ExecOptions{Timeout: timeout})
		if err != nil || string(res.Values) != "[null,2]" {
			t.Fatalf("after the fault (timeout %v): %v %s", timeout, err, res.Values)
		}
	}
}
