package core_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"libbioxen/core"
)

// allEngines are the engines an Interrupt is tested on: embedded, and the
// process engine on every interpreter installed. Trusted, so that a chunk
// can say it started by creating a file.
func allEngines(t *testing.T) []core.Options {
	all := engines(t)
	for _, interp := range []string{"lua5.1", "luajit"} {
		if _, err := exec.LookPath(interp); err == nil {
			all = append(all, core.Options{Engine: "process", Interpreter: interp, Persistent: true})
		}
	}
	for i := range all {
		all[i].Trusted = true
	}
	return all
}

// openVM opens a VM that the test closes at its end.
func openVM(t *testing.T, o core.Options) *core.VM {
	t.Helper()
	vm, err := core.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// startedChunk returns Lua code that creates a marker file and then runs
// body, and a function that waits (polling, up to 20 s) for the marker.
func startedChunk(t *testing.T, body string) (string, func()) {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "started")
	code := fmt.Sprintf("local f = assert(io.open(%q, 'w')) f:close() %s", marker, body)
	return code, func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(marker); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the chunk did not start within 20 s")
			}
			time.Sleep(5 * time.Millisecond) // polling for the marker, not waiting for output
		}
	}
}

// awaitInterrupted waits (up to 30 s) for the error of a call that was
// interrupted and checks that it is an ErrTimeout saying so.
func awaitInterrupted(t *testing.T, done <-chan error) error {
	t.Helper()
	var stopErr error
	select {
	case stopErr = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the interrupted call did not return")
	}
	if core.CodeOf(stopErr) != core.ErrTimeout || !strings.Contains(stopErr.Error(), "interrupted") {
		t.Fatalf("got %v, want an ErrTimeout saying interrupted", stopErr)
	}
	return stopErr
}

// kept checks what the VM (or session) remembers after an interrupt: 42
// when the error says the state was kept ("a new one starts" means the
// interpreter was replaced: LuaJIT's compiled loops do not see the
// interrupt). exec is VM.Exec or Session.Execute.
func kept(t *testing.T, exec func(context.Context, []byte, core.ExecOptions) (*core.Result, error), stopErr error) {
	t.Helper()
	want := "[42]"
	if strings.Contains(stopErr.Error(), "a new one starts") {
		want = `["lost"]`
	}
	res, err := exec(context.Background(), []byte("return kept or 'lost'"), core.ExecOptions{})
	if err != nil || string(res.Values) != want {
		t.Fatalf("after the interrupt (%v): %v %+v, want %s", stopErr, err, res, want)
	}
}

// Trigger stops an Exec and an ExecFile on every engine; the VM keeps its
// state and the error says "interrupted" (Ctrl-C from Python's main thread).
func TestInterruptStopsExecAndExecFile(t *testing.T) {
	for _, o := range allEngines(t) {
		for _, how := range []string{"exec", "file"} {
			t.Run(o.Engine+"/"+o.Interpreter+"/"+how, func(t *testing.T) {
				vm := openVM(t, o)
				if _, err := vm.Exec(context.Background(), []byte("kept = 42"), core.ExecOptions{}); err != nil {
					t.Fatal(err)
				}
				code, started := startedChunk(t, "local n = 0 while true do n = n + 1 end")
				in := &core.Interrupt{}
				eo := core.ExecOptions{Interrupt: in}
				done := make(chan error, 1)
				go func() {
					var res *core.Result
					var err error
					if how == "exec" {
						res, err = vm.Exec(context.Background(), []byte(code), eo)
					} else {
						path := filepath.Join(t.TempDir(), "spin.lua")
						if werr := os.WriteFile(path, []byte(code), 0o600); werr != nil {
							t.Error(werr)
						}
						res, err = vm.ExecFile(context.Background(), path, eo)
					}
					if err == nil {
						t.Errorf("the interrupted chunk returned a result: %+v", res)
					}
					done <- err
				}()
				started()
				in.Trigger()
				kept(t, vm.Exec, awaitInterrupted(t, done))
			})
		}
	}
}

// A Trigger that comes after a call took the VM but before the engine got
// it (a window of microseconds, hit here with a hook) stops the chunk with
// the engine's own interrupt, which keeps the state, as later ones do. The
// process engine used to drop it and kill the interpreter after the grace.
func TestTriggerAsTheCallTakesTheVM(t *testing.T) {
	for _, o := range allEngines(t) {
		for _, how := range []string{"exec", "session"} {
			t.Run(o.Engine+"/"+o.Interpreter+"/"+how, func(t *testing.T) {
				vm, s := openSession(t, o)
				exec := vm.Exec
				if how == "session" {
					exec = s.Execute
				}
				if _, err := exec(context.Background(), []byte("kept = 42"), core.ExecOptions{}); err != nil {
					t.Fatal(err)
				}
				in := &core.Interrupt{}
				var once sync.Once
				core.SetAcquireHook(func() { once.Do(in.Trigger) })
				defer core.SetAcquireHook(nil)
				// (jit.off: a loop LuaJIT has compiled ignores SIGINT.)
				_, err := exec(context.Background(), []byte("if jit then jit.off() end while true do end"),
					core.ExecOptions{Interrupt: in, Timeout: time.Minute})
				core.SetAcquireHook(nil)
				if core.CodeOf(err) != core.ErrTimeout || !strings.Contains(err.Error(), "interrupted") {
					t.Fatalf("got %v, want an ErrTimeout saying interrupted", err)
				}
				res, err := exec(context.Background(), []byte("return kept or 'lost'"), core.ExecOptions{})
				if err != nil || string(res.Values) != "[42]" {
					t.Fatalf("after the interrupt: %v %+v, want [42]", err, res)
				}
			})
		}
	}
}

// A Trigger while no call runs with the Interrupt does nothing: the next
// call runs to its end.
func TestTriggerBetweenCallsDoesNothing(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			vm := openVM(t, o)
			in := &core.Interrupt{}
			in.Trigger()
			res, err := vm.Exec(context.Background(), []byte("local n = 0 for i = 1, 1e6 do n = n + i end return n"), core.ExecOptions{Interrupt: in})
			if err != nil || string(res.Values) != "[500000500000]" {
				t.Fatalf("%v %+v", err, res)
			}
			in.Trigger()
			if res, err := vm.Exec(context.Background(), []byte("return 1"), core.ExecOptions{Interrupt: in}); err != nil || !res.Success {
				t.Fatalf("%v %+v", err, res)
			}
		})
	}
}

// A session's Execute with an Interrupt interrupts the session: the chunk
// and the input queued ahead of it stop; the session keeps its state.
func TestInterruptStopsSessionExecute(t *testing.T) {
	for _, o := range allEngines(t) {
		t.Run(o.Engine+"/"+o.Interpreter, func(t *testing.T) {
			_, s := openSession(t, o)
			if _, err := s.Execute(context.Background(), []byte("kept = 42"), core.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			code, started := startedChunk(t, "while true do end")
			in := &core.Interrupt{}
			done := make(chan error, 1)
			go func() {
				_, err := s.Execute(context.Background(), []byte(code), core.ExecOptions{Interrupt: in})
				done <- err
			}()
			started()
			in.Trigger()
			kept(t, s.Execute, awaitInterrupted(t, done))
		})
	}
}

// An Interrupt with KeepEarly (an async call's handle) keeps a Trigger that
// comes before its call starts: the call then stops at once, without
// running. Without KeepEarly such a Trigger is dropped (Ctrl-C between
// calls).
func TestKeepEarlyStopsACallTriggeredBeforeItStarts(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			vm := openVM(t, o)
			in := &core.Interrupt{KeepEarly: true}
			in.Trigger()
			_, err := vm.Exec(context.Background(), []byte("ran = true while true do end"), core.ExecOptions{Interrupt: in, Timeout: time.Minute})
			if core.CodeOf(err) != core.ErrTimeout || !strings.Contains(err.Error(), "interrupted") {
				t.Fatalf("got %v, want an ErrTimeout saying interrupted", err)
			}
			res, err := vm.Exec(context.Background(), []byte("return ran == nil"), core.ExecOptions{Interrupt: in})
			if err != nil || string(res.Values) != "[true]" {
				t.Fatalf("the kept Trigger stopped more than one call, or the chunk ran: %v %+v", err, res)
			}
		})
	}
}

// Cancelling an Execute just as its chunk ends must not stop the chunk
// queued behind it (someone else's): the stop went to whatever ran when it
// landed, and B failed "interrupted" in 19 of 20 runs.
func TestCancellingAnEndingExecuteLeavesTheNextAlone(t *testing.T) {
	for _, path := range []string{"idle", "queued"} {
		t.Run(path, func(t *testing.T) {
			_, s := openSession(t, core.Options{Engine: "embedded", Persistent: true})
			for i := 0; i < 10; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				bDone := make(chan error, 1)
				s.SetListener(func(_ core.Stream, p []byte) {
					switch {
					case strings.Contains(string(p), "A-start"):
						go func() {
							res, err := s.Execute(context.Background(), []byte("local n = 0 for i = 1, 3e5 do n = n + 1 end return 7"), core.ExecOptions{})
							if err == nil && string(res.Values) != "[7]" {
								err = fmt.Errorf("B returned %s", res.Values)
							}
							bDone <- err
						}()
					case strings.Contains(string(p), "A-done"):
						cancel()
					}
				})
				if path == "queued" {
					// Input ahead of A, so that A waits in the queue.
					if err := s.Send([]byte("local t = os.clock() while os.clock() - t < 0.02 do end")); err != nil {
						t.Fatal(err)
					}
				}
				// A gives B 100 ms to queue behind it.
				a := "print('A-start') local t = os.clock() while os.clock() - t < 0.1 do end print('A-done')"
				if _, err := s.Execute(ctx, []byte(a), core.ExecOptions{}); err != nil && core.CodeOf(err) != core.ErrTimeout {
					t.Fatalf("A: %v", err)
				}
				select {
				case err := <-bDone:
					if err != nil {
						t.Fatalf("run %d: B, which nobody cancelled: %v", i, err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("B did not return")
				}
				cancel()
			}
		})
	}
}
