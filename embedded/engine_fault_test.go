package embedded

import (
	"context"
	"strings"
	"syscall"
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

// TestAbandonedCompileOwnsItsCode: a big chunk compiles on its own
// goroutine, which a timeout leaves running; the call's code may be the
// caller's memory, freed when the call returns (the C ABI passes a view of
// the C buffer). The compile read it after the return: with the buffer
// unmapped here, as free() may do, the process died of a fault.
func TestAbandonedCompileOwnsItsCode(t *testing.T) {
	code := []byte("local t = {" + strings.Repeat(`"xxxxxxx",`, 200_000) + "}")
	buf, err := syscall.Mmap(-1, 0, len(code), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip("mmap:", err)
	}
	copy(buf, code)
	vm := openVM(t, core.Options{})
	_, err = vm.Exec(context.Background(), buf, core.ExecOptions{Timeout: time.Millisecond})
	if core.CodeOf(err) != core.ErrTimeout {
		t.Fatalf("a 2 MB chunk with a 1 ms timeout: %v", err)
	}
	if err := syscall.Munmap(buf); err != nil {
		t.Fatal(err)
	}
	// Wait for the abandoned compile: it holds a slot of bigCompiles.
	for range cap(bigCompiles) {
		bigCompiles <- struct{}{}
	}
	for range cap(bigCompiles) {
		<-bigCompiles
	}
	res, err := vm.Exec(context.Background(), []byte("return 1 + 1"), core.ExecOptions{})
	if err != nil || string(res.Values) != "[2]" {
		t.Fatalf("after the abandoned compile: %v %v", err, res)
	}
}
