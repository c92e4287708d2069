package gotests

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"libbioxen/core"
)

func openSession(t *testing.T, opts core.Options) (*core.VM, *core.Session) {
	t.Helper()
	opts.Persistent = true
	vm := open(t, opts)
	s, err := vm.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return vm, s
}

// settle waits until the session has processed everything sent so far.
func settle(t *testing.T, s *core.Session) {
	t.Helper()
	if idle, err := s.Wait(10 * time.Second); !idle || err != nil {
		t.Fatal("session did not become idle:", err)
	}
}

func readAll(t *testing.T, s *core.Session, streams core.Stream) string {
	t.Helper()
	settle(t, s)
	out, err := s.Read(streams, 0)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestSessionREPL(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			_, s := openSession(t, ec.opts)
			steps := []struct{ input, stdout, stderr string }{
				{"x = 42\nprint('Value:', x)\n", "Value:\t42\n", ""},
				{"x + 1", "43\n", ""},
				{"=x * 2", "84\n", ""},
				{"for i = 1, 3 do", "", ""},
				{"  io.write(i, ' ')", "", ""},
				{"end", "1 2 3 ", ""},
				{"error('oops')", "", "stdin:1: oops"},
				{"print(x)", "42\n", ""},
				{"local t = {1, 2}; return #t, 'two'", "2\ttwo\n", ""},
				{"x = = 1", "", "stdin:1:"},
			}
			for _, st := range steps {
				if err := s.Send([]byte(st.input)); err != nil {
					t.Fatal(err)
				}
				settle(t, s)
				if got := readAll(t, s, core.Stdout); got != st.stdout {
					t.Errorf("after %q: stdout %q, want %q", st.input, got, st.stdout)
				}
				if got := readAll(t, s, core.Stderr); !strings.HasPrefix(got, st.stderr) || (st.stderr == "" && got != "") {
					t.Errorf("after %q: stderr %q, want prefix %q", st.input, got, st.stderr)
				}
			}
		})
	}
}

func TestSessionSharesStateWithExec(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			vm, s := openSession(t, ec.opts)
			s.Send([]byte("shared = 'from session'"))
			settle(t, s)
			res := run(t, vm, "return shared")
			if string(res.Stdout) != "from session\n" {
				t.Errorf("exec saw %q", res.Stdout)
			}
			run(t, vm, "other = 7")
			s.Send([]byte("print(other)"))
			if got := readAll(t, s, core.Stdout|core.Stderr); got != "7\n" {
				t.Errorf("session saw %q", got)
			}
		})
	}
}

func TestSessionInterleavedAndListener(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			_, s := openSession(t, ec.opts)
			s.Send([]byte("io.write('a') io.stderr:write('b') io.write('c')"))
			if got := readAll(t, s, core.Stdout|core.Stderr); got != "abc" {
				t.Errorf("interleaved %q", got)
			}
			var mu sync.Mutex
			var got []string
			s.SetListener(func(st core.Stream, p []byte) {
				mu.Lock()
				got = append(got, string(p))
				mu.Unlock()
			})
			s.Send([]byte("for i = 1, 3 do print(i) end"))
			settle(t, s)
			s.SetListener(nil)
			mu.Lock()
			joined := strings.Join(got, "")
			mu.Unlock()
			if joined != "1\n2\n3\n" {
				t.Errorf("listener got %q", joined)
			}
			if rest := readAll(t, s, core.Stdout|core.Stderr); rest != "" {
				t.Errorf("buffer also got %q", rest)
			}
		})
	}
}

func TestSessionInterruptKeepsState(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			_, s := openSession(t, ec.opts)
			s.Send([]byte("kept = 'yes'"))
			settle(t, s)
			s.Send([]byte("print('start') while true do end"))
			if out, _ := s.Read(core.Stdout, 10*time.Second); string(out) != "start\n" {
				t.Fatalf("before interrupt: %q", out)
			}
			s.Interrupt()
			settle(t, s)
			// Said once: the embedded engine's "stdin:1: interrupted!" was
			// followed by the session's own "interrupted".
			if errOut := readAll(t, s, core.Stderr); strings.Count(errOut, "interrupted") != 1 {
				t.Errorf("stderr after interrupt: %q", errOut)
			}
			s.Send([]byte("print(kept)"))
			if got := readAll(t, s, core.Stdout); got != "yes\n" {
				t.Errorf("state after interrupt: %q", got)
			}
		})
	}
}

// An interrupt inside a pcall or xpcall of the line: on the embedded
// engine it still ends the line, named as the line (it said "=(close):1:
// interrupted!", the frame of its upvalue closer, and xpcall "error in
// error handling"; found by review).
func TestSessionInterruptInsidePcall(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			_, s := openSession(t, ec.opts)
			s.Send([]byte("kept = 'yes'"))
			settle(t, s)
			for _, line := range []string{
				"print('start') pcall(function() while true do end end)",
				"print('start') xpcall(function() while true do end end, function(m) return m end)",
			} {
				s.Send([]byte(line))
				if out, _ := s.Read(core.Stdout, 10*time.Second); string(out) != "start\n" {
					t.Fatalf("before interrupt: %q", out)
				}
				s.Interrupt()
				settle(t, s)
				// On the process engine, as in lua -i, the pcall catches
				// the interrupt and the line ends normally (LuaJIT's
				// compiled loop ignores it, and is killed after 500 ms);
				// the embedded engine's interrupt cannot be caught.
				errOut := readAll(t, s, core.Stderr)
				if strings.Contains(errOut, "(close)") || strings.Contains(errOut, "error in error handling") ||
					(ec.name == "embedded" && !strings.HasPrefix(errOut, "stdin:1: interrupted!\n")) {
					t.Errorf("%s: stderr after interrupt: %q", line, errOut)
				}
			}
			s.Send([]byte("print(kept)"))
			if got := readAll(t, s, core.Stdout); got != "yes\n" && ec.name != "luajit" {
				t.Errorf("state after interrupt: %q", got)
			}
		})
	}
}

// A line stopped by a limit says the limit's message only: the embedded
// engine first wrote "stdin:1: interrupted!" and a traceback, as for an
// interrupt (found by review).
func TestSessionLimitStopIsNoInterrupt(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			opts := ec.opts
			opts.Limits.MaxCPUTime = 200 * time.Millisecond
			_, s := openSession(t, opts)
			s.Send([]byte("while true do end"))
			settle(t, s)
			if errOut := readAll(t, s, core.Stderr); strings.Contains(errOut, "interrupted") || !strings.Contains(errOut, "CPU") {
				t.Errorf("stderr after the CPU budget: %q", errOut)
			}
		})
	}
}

func TestSessionExecute(t *testing.T) {
	for _, ec := range engines(t) {
		t.Run(ec.name, func(t *testing.T) {
			_, s := openSession(t, ec.opts)
			s.Send([]byte("y = 5"))
			res, err := s.Execute(context.Background(), []byte("print(y * 2) return y"), core.ExecOptions{PrintResults: true})
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Stdout) != "10\n5\n" || !res.Success {
				t.Errorf("execute: %q %v", res.Stdout, res.Success)
			}
			if rest := readAll(t, s, core.Stdout|core.Stderr); rest != "" {
				t.Errorf("Execute output leaked into the buffer: %q", rest)
			}
			_, err = s.Execute(context.Background(), []byte("while true do end"), core.ExecOptions{Timeout: 100 * time.Millisecond})
			if core.CodeOf(err) != core.ErrTimeout {
				t.Errorf("timeout: %v", err)
			}
		})
	}
}

func TestSessionNeedsPersistentVM(t *testing.T) {
	vm := open(t, core.Options{})
	if _, err := vm.NewSession(); core.CodeOf(err) != core.ErrInvalid {
		t.Errorf("session on a non-persistent VM: %v", err)
	}
}

func TestManySessionsConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		_, s := openSession(t, core.Options{})
		wg.Add(1)
		go func(i int, s *core.Session) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				s.Send([]byte("n = (n or 0) + 1"))
			}
			s.Send([]byte("print(n)"))
			if got := readAll(t, s, core.Stdout); got != "20\n" {
				t.Errorf("session %d: %q", i, got)
			}
		}(i, s)
	}
	wg.Wait()
}
