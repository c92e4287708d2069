package core_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"libbioxen/core"
	_ "libbioxen/embedded"
	_ "libbioxen/luaproc"
)

// engines are the real engines Close must be able to interrupt: embedded
// always, process when lua5.4 is installed.
func engines(t *testing.T) []core.Options {
	opts := []core.Options{{Engine: "embedded", Persistent: true}}
	if _, err := exec.LookPath("lua5.4"); err == nil {
		opts = append(opts, core.Options{Engine: "process", Interpreter: "lua5.4", Persistent: true})
	} else {
		t.Log("lua5.4 not installed: process engine not tested")
	}
	return opts
}

// Defect 3 on the real engines: Close from another goroutine while a chunk
// without a timeout runs returns, and the chunk fails with ErrClosed.
func TestCloseInterruptsRealEngines(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			vm, err := core.Open(o)
			if err != nil {
				t.Fatal(err)
			}
			// The loop must be running before Close: it signals through
			// its first output line in a session.
			s, err := vm.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			started := make(chan struct{})
			s.SetListener(func(core.Stream, []byte) {
				select {
				case <-started:
				default:
					close(started)
				}
			})
			running := make(chan error, 1)
			go func() {
				_, err := s.Execute(context.Background(), []byte("io.write('go') io.stdout:flush() while true do end"), core.ExecOptions{})
				running <- err
			}()
			select {
			case <-started:
			case <-time.After(30 * time.Second):
				t.Fatal("the chunk did not start")
			}
			// A plain exec waits for its turn behind the session's chunk.
			waiting := make(chan error, 1)
			go func() {
				_, err := vm.Exec(context.Background(), []byte("return 1"), core.ExecOptions{})
				waiting <- err
			}()
			closed := make(chan error, 1)
			go func() { closed <- vm.Close() }()
			select {
			case err := <-closed:
				if err != nil {
					t.Errorf("close: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Close did not return while a chunk ran")
			}
			for name, ch := range map[string]chan error{"running chunk": running, "waiting exec": waiting} {
				select {
				case err := <-ch:
					if core.CodeOf(err) != core.ErrClosed {
						t.Errorf("%s: %v, want ErrClosed", name, err)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("%s did not end after Close", name)
				}
			}
			s.Close()
		})
	}
}

// Defect 1 on the embedded engine: /dev/zero is refused at once.
func TestExecFileDevZeroEmbedded(t *testing.T) {
	vm, err := core.Open(core.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	t0 := time.Now()
	_, err = vm.ExecFile(context.Background(), "/dev/zero", core.ExecOptions{Timeout: time.Second})
	if core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("/dev/zero: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}
