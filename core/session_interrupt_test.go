package core_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"libbioxen/core"
)

// readUntil reads a session's output until it contains want (or fails the
// test after 20 s), and returns all it read.
func readUntil(t *testing.T, s *core.Session, want string) string {
	t.Helper()
	var got bytes.Buffer
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(got.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the session's output after 20 s; got %q", want, got.String())
		}
		out, err := s.Read(core.Stdout|core.Stderr, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		got.Write(out)
	}
	return got.String()
}

func openSession(t *testing.T, o core.Options) (*core.VM, *core.Session) {
	t.Helper()
	vm, err := core.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	s, err := vm.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return vm, s
}

// An Execute queued behind running input is answered when the session is
// interrupted or closed (Interrupt dropped it from the queue unanswered, and
// its caller waited forever).
func TestQueuedExecuteIsAnsweredOnInterruptAndClose(t *testing.T) {
	for _, o := range engines(t) {
		for _, how := range []string{"interrupt", "close"} {
			t.Run(o.Engine+"/"+how, func(t *testing.T) {
				_, s := openSession(t, o)
				if err := s.Send([]byte("print('spinning') while true do end\n")); err != nil {
					t.Fatal(err)
				}
				readUntil(t, s, "spinning")
				done := make(chan error, 1)
				go func() {
					_, err := s.Execute(context.Background(), []byte("return 1"), core.ExecOptions{})
					done <- err
				}()
				// The spinning input never ends: the Execute queues behind it.
				// A read that finds no output gives its goroutine the time.
				if out, _ := s.Read(core.Stdout|core.Stderr, 200*time.Millisecond); len(out) > 0 {
					t.Fatalf("unexpected output %q", out)
				}
				stop := s.Interrupt
				if how == "close" {
					stop = func() { s.Close() }
				}
				limit := time.After(30 * time.Second)
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					stop()
					select {
					case err := <-done:
						if err != nil && core.CodeOf(err) != core.ErrTimeout && core.CodeOf(err) != core.ErrClosed {
							t.Errorf("queued Execute: %v", err)
						}
						return
					case <-limit:
						t.Fatalf("a queued Execute never returned after %s", how)
					case <-tick.C:
					}
				}
			})
		}
	}
}

// Interrupting a session whose input waits for another caller's call on
// the VM cancels that input and leaves the other call alone (the engine's
// interrupt went to whatever chunk ran).
func TestSessionInterruptLeavesOtherCallersAlone(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			vm, s := openSession(t, o)
			other, err := vm.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if err := other.Send([]byte("print('other started') local t = os.clock() while os.clock() - t < 1.5 do end print('other done')\n")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, other, "other started")
			if err := s.Send([]byte("print('mine ran')\n")); err != nil {
				t.Fatal(err)
			}
			// The input is picked up at once and waits for the VM; a read
			// that finds no output gives the session's goroutine the time.
			if out, _ := s.Read(core.Stdout|core.Stderr, 200*time.Millisecond); len(out) > 0 {
				t.Fatalf("unexpected output %q", out)
			}
			// Interrupt until this session's input is gone: reported
			// interrupted, or dropped from the queue before it was picked up.
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			var mine string
			for s.Busy() && !strings.Contains(mine, "interrupted") && !strings.Contains(mine, "mine ran") {
				s.Interrupt()
				out, err := s.Read(core.Stdout|core.Stderr, 20*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				mine += string(out)
				<-tick.C
			}
			got := readUntil(t, other, "other done")
			if strings.Contains(got, "interrupted") {
				t.Errorf("another session's interrupt stopped this chunk: %q", got)
			}
		})
	}
}

// After an interrupt the rest of the same input's lines does not run.
func TestInterruptDropsTheRestOfTheInput(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			_, s := openSession(t, o)
			if err := s.Send([]byte("print('spinning') while true do end\nx = 'after'\nprint('after')\n")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, s, "spinning")
			s.Interrupt()
			if idle, err := s.Wait(30 * time.Second); !idle || err != nil {
				t.Fatal("the session did not go idle after the interrupt:", err)
			}
			out, _ := s.Read(core.Stdout|core.Stderr, 0)
			if strings.Contains(string(out), "after") {
				t.Errorf("the rest of the input ran after the interrupt: %q", out)
			}
			res, err := s.Execute(context.Background(), []byte("return x == nil"), core.ExecOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Values) != "[true]" {
				t.Errorf("x = 'after' ran after the interrupt: %s", res.Values)
			}
		})
	}
}

// An Execute that Interrupt stops fails with ErrTimeout "interrupted" on
// every engine, and one that Close stops with ErrClosed. On lua5.x the
// driver's SIGINT hook ended the chunk with a Lua error, which came back as
// a failed Result, while the embedded engine and LuaJIT returned
// ErrTimeout; the session keeps its state either way.
func TestInterruptedExecuteFailsAlikeOnEveryEngine(t *testing.T) {
	all := engines(t)
	for _, interp := range []string{"lua5.1", "luajit"} {
		if _, err := exec.LookPath(interp); err == nil {
			all = append(all, core.Options{Engine: "process", Interpreter: interp, Persistent: true})
		}
	}
	for _, o := range all {
		for _, how := range []string{"interrupt", "close"} {
			t.Run(o.Engine+"/"+o.Interpreter+"/"+how, func(t *testing.T) {
				_, s := openSession(t, o)
				if _, err := s.Execute(context.Background(), []byte("kept = 42"), core.ExecOptions{}); err != nil {
					t.Fatal(err)
				}
				started := make(chan struct{})
				var once sync.Once
				s.SetListener(func(core.Stream, []byte) { once.Do(func() { close(started) }) })
				done := make(chan error, 1)
				go func() {
					res, err := s.Execute(context.Background(), []byte("print('spinning') local n = 0 while true do n = n + 1 end"), core.ExecOptions{})
					if err == nil {
						t.Errorf("the stopped chunk returned a result: %+v", res)
					}
					done <- err
				}()
				select {
				case <-started:
				case <-time.After(20 * time.Second):
					t.Fatal("the chunk did not start")
				}
				want := core.ErrTimeout
				if how == "close" {
					want = core.ErrClosed
					s.Close()
				} else {
					s.Interrupt()
				}
				var stopErr error
				select {
				case stopErr = <-done:
					if err := stopErr; core.CodeOf(err) != want {
						t.Fatalf("got %v (code %v), want code %v", err, core.CodeOf(err), want)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("the stopped Execute did not return")
				}
				if how == "close" {
					return
				}
				// LuaJIT's compiled loop does not see the interrupt: after
				// the grace period its interpreter is killed, and the error
				// says the state is lost.
				want42 := !strings.Contains(stopErr.Error(), "a new one starts")
				res, err := s.Execute(context.Background(), []byte("return kept or 'lost'"), core.ExecOptions{})
				if err != nil || (want42 && string(res.Values) != "[42]") || (!want42 && string(res.Values) != `["lost"]`) {
					t.Fatalf("after the interrupt (%v): %v %+v", stopErr, err, res)
				}
			})
		}
	}
}

// A character written in two pieces reaches Read and a listener whole: a
// read between the pieces got its first bytes alone, and the Python layer,
// decoding each read (per stream mask), turned them into U+FFFD. Bytes that
// a chunk leaves incomplete come out when it ends. (A write to the other
// stream in between sends them on: the order of the writes comes first.)
func TestOutputNeverSplitsACharacter(t *testing.T) {
	const code = `io.stderr:write('x') io.write('a\226') for i = 1, 2e6 do end io.write('\130\172b\n') io.write('\226')` + "\n"
	for _, o := range engines(t) {
		t.Run(o.Engine+"/read", func(t *testing.T) {
			_, s := openSession(t, o)
			if err := s.Send([]byte(code)); err != nil {
				t.Fatal(err)
			}
			var pieces []string
			for deadline := time.Now().Add(20 * time.Second); s.Busy() || len(pieces) == 0; {
				if time.Now().After(deadline) {
					t.Fatalf("no end of output after 20 s; got %q", pieces)
				}
				piece, err := s.Read(core.Stdout, 200*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				if len(piece) > 0 {
					pieces = append(pieces, string(piece))
				}
			}
			if piece, _ := s.Read(core.Stdout, 0); len(piece) > 0 {
				pieces = append(pieces, string(piece))
			}
			if strings.Join(pieces, "") != "a€b\n\xe2" {
				t.Fatalf("stdout %q", pieces)
			}
			// Only the final byte, which the chunk never completed, may
			// be invalid.
			pieces[len(pieces)-1] = strings.TrimSuffix(pieces[len(pieces)-1], "\xe2")
			for _, p := range pieces {
				if !utf8.ValidString(p) {
					t.Fatalf("a read split a character: %q", pieces)
				}
			}
			if e, _ := s.Read(core.Stderr, 0); string(e) != "x" {
				t.Fatalf("stderr %q", e)
			}
		})
		t.Run(o.Engine+"/listener", func(t *testing.T) {
			_, s := openSession(t, o)
			var mu sync.Mutex
			var pieces []string
			s.SetListener(func(st core.Stream, p []byte) {
				if st == core.Stdout {
					mu.Lock()
					pieces = append(pieces, string(p))
					mu.Unlock()
				}
			})
			if _, err := s.Execute(context.Background(), []byte(code), core.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(pieces, "") != "a€b\n\xe2" {
				t.Fatalf("pieces %q", pieces)
			}
			pieces[len(pieces)-1] = strings.TrimSuffix(pieces[len(pieces)-1], "\xe2")
			for _, p := range pieces {
				if !utf8.ValidString(p) {
					t.Fatalf("a listener call split a character: %q", pieces)
				}
			}
		})
	}
}

// A listener slower than the chunk's output does not make the chunk
// unstoppable: on the process engine the frame pipe stayed full, the
// engine applied frames (calling the listener) without end, and neither
// the timeout, nor Interrupt, nor Close was ever looked at (found by
// review; the chunk ran on for minutes).
func TestSlowListenerDoesNotBlockStops(t *testing.T) {
	all := engines(t)
	if _, err := exec.LookPath("luajit"); err == nil {
		all = append(all, core.Options{Engine: "process", Interpreter: "luajit", Persistent: true})
	}
	for _, o := range all {
		for _, how := range []string{"timeout", "interrupt", "close"} {
			t.Run(o.Engine+"/"+o.Interpreter+"/"+how, func(t *testing.T) {
				_, s := openSession(t, o)
				started := make(chan struct{})
				var once sync.Once
				s.SetListener(func(core.Stream, []byte) {
					once.Do(func() { close(started) })
					time.Sleep(5 * time.Millisecond) // a slow consumer, not a wait for output
				})
				if _, err := s.Execute(context.Background(), []byte("kept = 42"), core.ExecOptions{}); err != nil {
					t.Fatal(err)
				}
				eo := core.ExecOptions{}
				if how == "timeout" {
					eo.Timeout = time.Second
				}
				done := make(chan error, 1)
				go func() {
					_, err := s.Execute(context.Background(), []byte("while true do print('x') end"), eo)
					done <- err
				}()
				<-started
				switch how {
				case "interrupt":
					s.Interrupt()
				case "close":
					closed := make(chan struct{})
					go func() { s.Close(); close(closed) }()
					select {
					case <-closed:
					case <-time.After(20 * time.Second):
						t.Fatal("Close did not return within 20 s")
					}
				}
				select {
				case err := <-done:
					if core.CodeOf(err) != core.ErrTimeout && core.CodeOf(err) != core.ErrClosed {
						t.Fatalf("got %v", err)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("the chunk was not stopped within 20 s")
				}
				if how == "close" || o.Interpreter == "luajit" {
					return // closed; LuaJIT's compiled loop may not see SIGINT
				}
				// The pipe full of output ahead of the chunk's end no
				// longer drains at the listener's speed past the grace
				// (which killed the interpreter: its state was lost).
				s.SetListener(nil)
				res, err := s.Execute(context.Background(), []byte("return kept"), core.ExecOptions{})
				if err != nil || string(res.Values) != "[42]" {
					t.Fatalf("the state was lost: %v %+v", err, res)
				}
			})
		}
	}
}

// A write ending in part of a character does not wait behind later output
// of the other stream: the bytes held back went out at the end of the
// input, after the error that followed them (found by review). An
// interrupted line's error ends with a newline on every engine.
func TestHeldBytesKeepTheOrderOfWrites(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			_, s := openSession(t, o)
			if err := s.Send([]byte("io.write('A\\226\\130') error('boom')\nio.write('Z\\n')\n")); err != nil {
				t.Fatal(err)
			}
			if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
				t.Fatalf("not idle: %v", err)
			}
			out, _ := s.Read(core.Stdout|core.Stderr, 0)
			if !bytes.HasPrefix(out, []byte("A\xe2\x82stdin:1: boom")) || !bytes.Contains(out, []byte("\nZ\n")) {
				t.Fatalf("output %q", out)
			}
			if err := s.Send([]byte("print('spin') while true do end\n")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, s, "spin")
			s.Interrupt()
			if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
				t.Fatalf("not idle: %v", err)
			}
			if err := s.Send([]byte("print('next')\n")); err != nil {
				t.Fatal(err)
			}
			if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
				t.Fatalf("not idle: %v", err)
			}
			got := readUntil(t, s, "next")
			if !strings.Contains(got, "\nnext\n") || strings.Count(got, "interrupted") != 1 {
				t.Fatalf("after the interrupt %q", got)
			}
		})
	}
}

// Wait on a session closed before or while it waits is ErrClosed, not
// "idle": the input it dropped never ran (it reported idle).
func TestWaitOnClosedSession(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			_, s := openSession(t, o)
			if err := s.Send([]byte("print('spin') while true do end\nprint('never')\n")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, s, "spin")
			type waited struct {
				idle bool
				err  error
			}
			done := make(chan waited, 1)
			go func() {
				idle, err := s.Wait(20 * time.Second)
				done <- waited{idle, err}
			}()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			w := <-done
			if w.idle || core.CodeOf(w.err) != core.ErrClosed {
				t.Fatalf("Wait across Close: idle %v, error %v; want ErrClosed", w.idle, w.err)
			}
			if idle, err := s.Wait(time.Second); idle || core.CodeOf(err) != core.ErrClosed {
				t.Fatalf("Wait after Close: idle %v, error %v; want ErrClosed", idle, err)
			}
		})
	}
}

// An Execute's timeout counts the wait behind earlier input: queued behind
// a chunk of seconds with a timeout of 200 ms it returned after the chunk
// and ran anyway (found by review, red team: from the session's own
// listener it waited forever).
func TestExecuteTimeoutCoversTheQueue(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			_, s := openSession(t, o)
			if err := s.Send([]byte("print('busy') local t = os.clock() while os.clock() - t < 1.5 do end\n")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, s, "busy")
			start := time.Now()
			_, err := s.Execute(context.Background(), []byte("ran = true"), core.ExecOptions{Timeout: 200 * time.Millisecond})
			if core.CodeOf(err) != core.ErrTimeout || time.Since(start) > time.Second {
				t.Fatalf("after %v: %v", time.Since(start), err)
			}
			if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
				t.Fatalf("not idle: %v", err)
			}
			res, err := s.Execute(context.Background(), []byte("return ran"), core.ExecOptions{Timeout: 5 * time.Second})
			if err != nil || string(res.Values) != "[null]" {
				t.Fatalf("the timed-out chunk ran: %v %v", err, res)
			}
		})
	}
}

// An Interrupt that lands while a line of an incomplete chunk is being
// read drops that chunk, as ^C does in `lua -i` (the line's read put it
// back once the Interrupt had cleared it: the next input completed the
// interrupted chunk and ran it).
func TestInterruptDropsTheChunkBeingTyped(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			_, s := openSession(t, o)
			// Thousands of lines of one unfinished block: each line reads
			// the chunk so far again, so the input runs long enough for the
			// Interrupt to come while one of its lines is being read.
			in := "do ran = true\n" + strings.Repeat("local x = 1\n", 4000)
			if err := s.Send([]byte(in)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for !s.Pending() {
				if time.Now().After(deadline) {
					t.Fatal("the block never became pending")
				}
				runtime.Gosched()
			}
			s.Interrupt()
			if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
				t.Fatalf("Wait = %v, %v", idle, err)
			}
			if s.Pending() {
				t.Fatal("the interrupted chunk is still pending")
			}
			if err := s.Send([]byte("end\nprint(ran)\n")); err != nil {
				t.Fatal(err)
			}
			got := readUntil(t, s, "nil\n")
			if !strings.Contains(got, "'end'") || strings.Contains(got, "true") {
				t.Fatalf("after the interrupt, %q: want a syntax error near 'end', then nil", got)
			}
		})
	}
}

// Closing a VM closes its sessions, in Go as in C (the session took input
// whose every line failed with "VM is closed", Wait said it was idle, and
// its goroutine lived on until the session itself was closed).
func TestSessionEndsWithItsVM(t *testing.T) {
	for _, o := range engines(t) {
		for _, running := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/running=%v", o.Engine, running), func(t *testing.T) {
				vm, s := openSession(t, o)
				waited := make(chan error, 1)
				if running {
					if err := s.Send([]byte("print('spinning') while true do end\n")); err != nil {
						t.Fatal(err)
					}
					readUntil(t, s, "spinning")
					go func() {
						_, err := s.Wait(30 * time.Second)
						waited <- err
					}()
				}
				if err := vm.Close(); err != nil {
					t.Fatal(err)
				}
				if running {
					if err := <-waited; core.CodeOf(err) != core.ErrClosed {
						t.Fatalf("Wait during the close: %v", err)
					}
				}
				if err := s.Send([]byte("print(1)")); core.CodeOf(err) != core.ErrClosed {
					t.Fatalf("Send: %v", err)
				}
				if _, err := s.Wait(time.Second); core.CodeOf(err) != core.ErrClosed {
					t.Fatalf("Wait: %v", err)
				}
				if _, err := s.Execute(context.Background(), []byte("return 1"), core.ExecOptions{}); core.CodeOf(err) != core.ErrClosed {
					t.Fatalf("Execute: %v", err)
				}
			})
		}
	}
}

// The chunk being typed stays within MaxSourceBytes however fast input
// comes: input queued behind a running chunk is counted with it (it was
// not, so a chunk of any size ran, and the queue grew without bound).
func TestSendCountsQueuedInputAgainstTheSourceLimit(t *testing.T) {
	for _, o := range engines(t) {
		t.Run(o.Engine, func(t *testing.T) {
			o.Limits.MaxSourceBytes = 1000
			_, s := openSession(t, o)
			if err := s.Send([]byte("print('spinning') while true do end\n")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, s, "spinning")
			// The spinning input holds the loop: what follows stays queued.
			if err := s.Send([]byte("do\n")); err != nil {
				t.Fatal(err)
			}
			line := []byte("x = 1 --" + strings.Repeat("a", 91) + "\n") // 100 bytes
			sent := 3
			var err error
			for i := 0; i < 20 && err == nil; i++ {
				if err = s.Send(line); err == nil {
					sent += len(line)
				}
			}
			if core.CodeOf(err) != core.ErrTooLarge || sent > 1000 {
				t.Fatalf("%d bytes queued, then %v; want ErrTooLarge past 1000", sent, err)
			}
			// Interrupting drops the queue: the room is back.
			s.Interrupt()
			if idle, err := s.Wait(20 * time.Second); !idle || err != nil {
				t.Fatalf("Wait = %v, %v", idle, err)
			}
			for i := 0; i < 9; i++ {
				if err := s.Send(line); err != nil {
					t.Fatalf("line %d after the interrupt: %v", i, err)
				}
			}
			if err := s.Send([]byte("print('typed')")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, s, "typed")
		})
	}
}
