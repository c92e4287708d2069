package core

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// DefaultSessionBuffer bounds the output a session keeps for readers: past
// it the oldest output is dropped and the next read starts with
// DroppedMarker. Writers (the Lua code) never block on a slow reader.
const DefaultSessionBuffer = 4 << 20

// DroppedMarker starts a read after older output was dropped; %d is the
// number of bytes dropped.
const DroppedMarker = "[bioxen: %d bytes of older output dropped]\n"

// InterruptGrace is how long Interrupt waits for an engine's own interrupt
// to stop the chunk before cancelling it outright (which may cost the state).
const InterruptGrace = 500 * time.Millisecond

// Session is an interactive session on a persistent VM, driven like the
// standalone interpreter's interactive mode (`lua -i`) without its terminal:
// input arrives as text in pieces, each complete line is added to the chunk
// being typed, a complete chunk runs (an expression prints its values), an
// incomplete one waits for more lines, an error is written to the error
// stream and the session carries on. Output holds only what the Lua code
// wrote: no banner, no prompt, no echo. All methods are safe for concurrent
// use; chunks run one at a time on a goroutine of the session's own.
type Session struct {
	vm *VM

	mu       sync.Mutex
	changed  *sync.Cond // signalled when output arrives or the session goes idle
	queue    []sessionItem
	partial  []byte // input after the last newline of the latest Send
	pending  []byte // lines of the chunk being typed
	unread   int    // bytes of REPL input sent and not yet read (queued, or the rest of the running input)
	busy     bool   // input queued or a chunk running
	running  bool   // a chunk is running (on the loop or inline in Execute)
	closed   bool
	cur      *sessionRun               // the running item, nil when none
	stopped  bool                      // Interrupt stopped the running item: drop the rest of its input
	errLast  byte                      // the last byte written to Stderr by REPL input
	held     piece                     // an incomplete UTF-8 character ending the latest write (see whole)
	listener func(Stream, []byte) bool // false: not taken, buffer it (see SetGatedListener)
	log      outputLog
	kick     chan struct{}
	done     chan struct{}
}

type sessionItem struct {
	input    []byte       // REPL input (complete lines)
	code     []byte       // or a whole chunk to run (Execute)
	opts     ExecOptions  // for code
	reply    chan execOut // for code
	deadline time.Time    // for code with a timeout: the call's end, queue wait included
}

type execOut struct {
	res *Result
	err error
}

// sessionRun is one running item. Stops name the run they are meant for
// (it is also the VM's owner token: see VM.interruptFor), so that a stop
// that comes as the run ends never reaches the next one.
type sessionRun struct {
	cancel context.CancelFunc
	reply  chan execOut // the Execute it runs, nil for input
}

// startRunLocked makes run the running item.
func (s *Session) startRunLocked(ctx context.Context, reply chan execOut) (context.Context, *sessionRun) {
	run := &sessionRun{reply: reply}
	ctx, run.cancel = context.WithCancel(context.WithValue(ctx, ownerKey{}, run))
	s.running, s.busy, s.cur, s.stopped = true, true, run, false
	return ctx, run
}

// NewSession starts a session on vm, which must be persistent (a session
// keeps its state between inputs; a non-persistent VM wipes it every call).
// Closing the VM closes the session.
func (vm *VM) NewSession() (*Session, error) {
	if !vm.opts.Persistent {
		return nil, Errorf(ErrInvalid, "session", "interactive sessions need a persistent VM")
	}
	if vm.Closed() {
		return nil, Errorf(ErrClosed, "session", "VM is closed")
	}
	s := &Session{vm: vm, kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.changed = sync.NewCond(&s.mu)
	s.log.max = DefaultSessionBuffer
	go s.loop()
	go func() {
		// The session ends with its VM, as bioxen_vm_close ends a VM's
		// sessions: it accepted input whose every line then failed with
		// "VM is closed", Wait said idle, and its goroutine lived on.
		select {
		case <-vm.done:
			s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// vmClosed reports whether the session's VM was closed (the session is
// then closed too, or about to be).
func (s *Session) vmClosed() bool {
	select {
	case <-s.vm.done:
		return true
	default:
		return false
	}
}

// Send queues input and returns at once. A newline ends each line; input
// without a final newline is completed with one, like pressing Enter.
// ErrTooLarge when the chunk being typed, with this input and the input
// sent before it that has not run yet, would be over MaxSourceBytes.
func (s *Session) Send(input []byte) error {
	if bytes.IndexByte(input, 0) >= 0 {
		return Errorf(ErrInvalid, "send", "input contains a NUL byte")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.vmClosed() {
		return Errorf(ErrClosed, "send", "session is closed")
	}
	text := append(append([]byte(nil), s.partial...), input...)
	s.partial = nil
	if len(text) == 0 || text[len(text)-1] != '\n' {
		text = append(text, '\n')
	}
	// The input not read yet may all join the chunk being typed: counted
	// with it, the chunk stays within the limit however fast input comes
	// (input queued behind a running chunk was not counted, so a chunk of
	// any size ran, and the queue grew without bound).
	if len(s.pending)+s.unread+len(text) > s.vm.opts.Limits.MaxSourceBytes {
		return Errorf(ErrTooLarge, "send", "input would make a chunk over the limit of %d bytes (with the input sent before it and not run yet)", s.vm.opts.Limits.MaxSourceBytes)
	}
	s.unread += len(text)
	s.queue = append(s.queue, sessionItem{input: text})
	s.busy = true
	s.wakeLocked()
	return nil
}

// Execute runs code as one chunk after the input queued before it and
// returns the chunk's complete output and status. Its output is streamed to
// an attached listener but not added to what Read returns. eo.Timeout
// bounds the whole call, the wait behind earlier input included: past it a
// chunk still queued leaves the queue without running (ErrTimeout).
func (s *Session) Execute(ctx context.Context, code []byte, eo ExecOptions) (*Result, error) {
	if err := CheckSource(code, s.vm.opts.Limits); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Wrap(ErrTimeout, "execute", "cancelled before it ran", err)
	}
	reply := make(chan execOut, 1)
	if in := eo.Interrupt; in != nil {
		// Trigger interrupts the session while this chunk waits or runs
		// (the chunks ahead of it too, as ^C in a terminal drops the
		// lines typed ahead); see interruptExecute.
		in.set(&stopper{session: s, reply: reply})
		defer in.set(nil)
	}
	s.mu.Lock()
	if s.closed || s.vmClosed() {
		s.mu.Unlock()
		return nil, Errorf(ErrClosed, "execute", "session is closed")
	}
	if !s.running && len(s.queue) == 0 {
		// Idle: run on the caller's goroutine, saving two goroutine
		// hand-offs (which cost tens of µs when the caller is a C thread).
		// The caller's context ending stops the chunk as when queued: the
		// engine's interrupt first, which keeps the state.
		runCtx, run := s.startRunLocked(context.WithoutCancel(ctx), reply)
		s.mu.Unlock()
		stop := context.AfterFunc(ctx, func() { s.interruptRun(run) })
		res, err := s.runChunk(runCtx, sessionItem{code: code, opts: eo})
		stop()
		run.cancel()
		s.finishRun()
		return res, err
	}
	s.enqueueLocked(code, eo, reply)
	s.mu.Unlock()
	return s.await(ctx, reply, eo.Timeout)
}

// Submit queues code as one chunk, like Execute, and returns at once; wait
// blocks until the chunk's outcome (call it once, on any goroutine).
// Chunks submitted one after the other run in that order, after the input
// sent before them. Cancelling ctx stops this chunk only, as for Execute.
// eo.Interrupt is not taken (cancel ctx).
func (s *Session) Submit(ctx context.Context, code []byte, eo ExecOptions) (wait func() (*Result, error), err error) {
	if err := CheckSource(code, s.vm.opts.Limits); err != nil {
		return nil, err
	}
	if eo.Interrupt != nil {
		return nil, Errorf(ErrInvalid, "submit", "Submit takes no Interrupt: cancel its context")
	}
	if err := ctx.Err(); err != nil {
		return nil, Wrap(ErrTimeout, "execute", "cancelled before it ran", err)
	}
	s.mu.Lock()
	if s.closed || s.vmClosed() {
		s.mu.Unlock()
		return nil, Errorf(ErrClosed, "execute", "session is closed")
	}
	reply := s.enqueueLocked(code, eo, make(chan execOut, 1))
	s.mu.Unlock()
	return func() (*Result, error) { return s.await(ctx, reply, eo.Timeout) }, nil
}

// enqueueLocked queues code to run after what is queued (s.mu held).
//
// The timeout bounds the whole call, the wait behind earlier input
// included (it started only when the chunk ran: a call queued behind a 3 s
// chunk with a timeout of 300 ms returned after 3 s, and one made from the
// session's own listener waited forever).
func (s *Session) enqueueLocked(code []byte, eo ExecOptions, reply chan execOut) chan execOut {
	item := sessionItem{code: code, opts: eo, reply: reply}
	if eo.Timeout > 0 {
		item.deadline = time.Now().Add(eo.Timeout)
	}
	s.queue = append(s.queue, item)
	s.busy = true
	s.wakeLocked()
	return reply
}

// await waits for a queued chunk's outcome: its reply, its timeout while
// it is still queued (it then leaves the queue), or ctx.
func (s *Session) await(ctx context.Context, reply chan execOut, timeout time.Duration) (*Result, error) {
	var expired <-chan time.Time
	if timeout > 0 {
		s.mu.Lock()
		var deadline time.Time
		for _, it := range s.queue {
			if it.reply == reply {
				deadline = it.deadline
			}
		}
		s.mu.Unlock()
		if !deadline.IsZero() {
			t := time.NewTimer(max(time.Until(deadline), 0))
			defer t.Stop()
			expired = t.C
		}
	}
	select {
	case out := <-reply:
		return out.res, out.err
	case <-expired:
		if s.leaveQueue(reply) {
			return nil, Errorf(ErrTimeout, "execute", "timed out after %v waiting for the session's earlier input; the chunk did not run", timeout)
		}
		// Running: its own timeout is what was left of the call's.
		out := <-reply
		return out.res, out.err
	case <-ctx.Done():
		// Still queued: leave the queue. Running: stop it (only it; it may
		// also have ended meanwhile, and then its outcome stands).
		if s.leaveQueue(reply) {
			return nil, Wrap(ErrTimeout, "execute", "cancelled before it ran", ctx.Err())
		}
		s.mu.Lock()
		run := s.cur
		s.mu.Unlock()
		if run != nil && run.reply == reply {
			s.interruptRun(run)
		}
		out := <-reply
		return out.res, out.err
	}
}

// leaveQueue takes the chunk answering on reply out of the queue; false
// when it is not there (running, or done).
func (s *Session) leaveQueue(reply chan execOut) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, it := range s.queue {
		if it.reply == reply {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return true
		}
	}
	return false
}

// Read returns the output produced so far on the given streams (Stdout,
// Stderr or both: Stdout|Stderr, interleaved in the order it was written)
// and removes it. When there is none it waits up to timeout for the first
// output, returning early (with nothing) when the session is idle.
func (s *Session) Read(streams Stream, timeout time.Duration) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waitLocked(timeout, func() bool { return s.log.has(streams) || !s.busy || s.closed })
	return s.log.take(streams), nil
}

// Wait blocks until the session is idle (no queued input, no running chunk)
// or timeout passes; it reports whether the session is idle. A session
// closed (or whose VM was closed) before or during the wait is an ErrClosed
// error: the input it dropped will not run.
func (s *Session) Wait(timeout time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idle := s.waitLocked(timeout, func() bool { return !s.busy || s.closed })
	if s.closed || s.vmClosed() {
		return false, Errorf(ErrClosed, "wait", "session is closed")
	}
	return idle, nil
}

// waitLocked waits on s.changed (s.mu held) until done() or timeout, and
// returns done().
func (s *Session) waitLocked(timeout time.Duration, done func() bool) bool {
	if done() || timeout <= 0 {
		return done()
	}
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.changed.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	for !done() && time.Now().Before(deadline) {
		s.changed.Wait()
	}
	return done()
}

// Busy reports whether input is queued or a chunk is running.
func (s *Session) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy
}

// Limits returns the limits of the session's VM.
func (s *Session) Limits() Limits { return s.vm.opts.Limits }

// Pending reports whether an incomplete chunk is waiting for more lines.
func (s *Session) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0
}

// SetListener streams output to fn as it is produced (fn nil: back to
// buffering for Read). While a listener is set, output goes to it and not
// to the buffer. fn runs on the session's goroutine, on pieces of at most
// MaxOutputPiece bytes (plus a character held back, see whole); p is only
// valid during the call.
func (s *Session) SetListener(fn func(Stream, []byte)) {
	if fn == nil {
		s.SetGatedListener(nil)
		return
	}
	s.SetGatedListener(func(st Stream, p []byte) bool { fn(st, p); return true })
}

// SetGatedListener is SetListener with a listener that may decline output
// by returning false (it was being removed when the output came): REPL
// input's output is then buffered for Read as if no listener were set, so
// that none is lost.
func (s *Session) SetGatedListener(fn func(Stream, []byte) bool) {
	s.mu.Lock()
	s.listener = fn
	s.mu.Unlock()
}

// ownerKey marks the context of a session's run (value *sessionRun) and of
// an interruptible call (*stopper), so that the VM knows whose call holds it
// (VM.owner) and an interrupt reaches that call only.
type ownerKey struct{}

// Interrupt stops the running chunk, keeping the session's state: the chunk
// ends with an "interrupted" error on the error stream. Queued input is
// dropped too, as a terminal's ^C would, and the rest of the running
// input's lines; a queued Execute fails with an "interrupted" ErrTimeout.
// It returns at once.
func (s *Session) Interrupt() {
	s.mu.Lock()
	s.dropQueueLocked(Errorf(ErrTimeout, "execute", "interrupted: the session was interrupted before this chunk ran"))
	s.pending = nil
	run := s.cur
	s.mu.Unlock()
	s.interruptRun(run)
}

// interruptExecute is an Interrupt's Trigger for the Execute answering on
// reply: the session's Interrupt while that Execute is queued or runs,
// nothing before or after (the session may run someone else's input
// then). hard (a second Trigger) cancels the Execute's chunk outright. It
// reports whether it acted.
func (s *Session) interruptExecute(reply chan execOut, hard bool) bool {
	s.mu.Lock()
	run := s.cur
	mine := run != nil && run.reply == reply
	queued := false
	for _, it := range s.queue {
		queued = queued || it.reply == reply
	}
	switch {
	case hard && mine:
		s.stopped = true
		s.mu.Unlock()
		run.cancel()
		return true
	case !mine && !queued:
		s.mu.Unlock()
		return false
	}
	s.dropQueueLocked(Errorf(ErrTimeout, "execute", "interrupted: the session was interrupted before this chunk ran"))
	s.pending = nil
	s.mu.Unlock()
	s.interruptRun(run)
	return true
}

// dropQueueLocked empties the queue, answering each queued Execute with err.
func (s *Session) dropQueueLocked(err error) {
	for _, it := range s.queue {
		if it.reply != nil {
			it.reply <- execOut{err: err}
		}
		s.unread -= len(it.input)
	}
	s.queue = s.queue[:0]
}

// interruptRun stops run (VM.stopCall) if it is still the running item
// (nothing for nil or a run that has ended) and leaves the queue alone.
func (s *Session) interruptRun(run *sessionRun) {
	if run == nil {
		return
	}
	s.mu.Lock()
	if s.cur != run {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	s.vm.stopCall(run, run.cancel)
}

// Close interrupts a running chunk and stops the session; queued input is
// dropped and a queued Execute fails with ErrClosed. The VM stays open.
// Closing twice is harmless.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.dropQueueLocked(Errorf(ErrClosed, "execute", "session closed"))
	s.pending = nil
	s.wakeLocked()
	s.changed.Broadcast()
	run := s.cur
	s.mu.Unlock()
	s.interruptRun(run)
	<-s.done
	return nil
}

// finishRun marks the end of a chunk and hands queued input to the loop.
func (s *Session) finishRun() {
	s.mu.Lock()
	s.running, s.cur = false, nil
	s.busy = len(s.queue) > 0
	if s.busy {
		s.wakeLocked()
	}
	s.changed.Broadcast()
	s.mu.Unlock()
}

func (s *Session) wakeLocked() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Session) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for (len(s.queue) == 0 || s.running) && !s.closed {
			s.busy = s.running || len(s.queue) > 0
			s.changed.Broadcast()
			s.mu.Unlock()
			<-s.kick
			s.mu.Lock()
		}
		if s.closed {
			s.dropQueueLocked(Errorf(ErrClosed, "execute", "session closed"))
			s.busy = false
			s.changed.Broadcast()
			s.mu.Unlock()
			return
		}
		item := s.queue[0]
		s.queue = s.queue[1:]
		if !item.deadline.IsZero() {
			// What is left of the call's timeout (Execute takes it out of
			// the queue once it is all spent).
			item.opts.Timeout = max(time.Until(item.deadline), time.Millisecond)
		}
		ctx, run := s.startRunLocked(context.Background(), item.reply)
		s.mu.Unlock()

		if item.reply != nil {
			res, err := s.runChunk(ctx, item)
			item.reply <- execOut{res, err}
		} else {
			s.runInput(ctx, item.input)
		}
		run.cancel()
		s.finishRun()
	}
}

// MaxOutputPiece is the most output one listener call gets (besides the
// rest of a character held back from the piece before, see whole): a
// longer write is handed on in pieces, so that each copy made of it for a
// listener stays small however much the Lua code writes at once.
const MaxOutputPiece = 64 << 10

// inPieces calls fn with p in pieces of at most MaxOutputPiece bytes.
func inPieces(p []byte, fn func([]byte)) {
	for len(p) > MaxOutputPiece {
		fn(p[:MaxOutputPiece])
		p = p[MaxOutputPiece:]
	}
	fn(p)
}

// emit delivers output to the listener (a copy of p) or the buffer (which
// copies p into its own storage), whole characters only (see whole), in
// pieces of at most MaxOutputPiece bytes.
func (s *Session) emit(stream Stream, p []byte) {
	inPieces(p, func(p []byte) { s.emitPiece(stream, p) })
}

func (s *Session) emitPiece(stream Stream, p []byte) {
	s.mu.Lock()
	out := s.whole(stream, p)
	fn := s.listener
	if fn == nil {
		for _, pc := range out {
			s.log.add(pc.stream, pc.p)
		}
		s.changed.Broadcast()
	}
	s.mu.Unlock()
	if fn != nil {
		for i, pc := range out {
			if !fn(pc.stream, append([]byte(nil), pc.p...)) {
				s.bufferDeclined(out[i:])
				return
			}
		}
	}
}

// bufferDeclined adds output a listener declined to the buffer.
func (s *Session) bufferDeclined(out []piece) {
	s.mu.Lock()
	for _, pc := range out {
		s.log.add(pc.stream, pc.p)
	}
	s.changed.Broadcast()
	s.mu.Unlock()
}

// piece is output of one stream.
type piece struct {
	stream Stream
	p      []byte
}

// whole returns what to deliver for a write of p: the bytes held back from
// the previous write first, then p, except p's ending if it is an
// incomplete UTF-8 character, which is held back in turn. Read and a
// listener so never get a character in two pieces (decoding each piece
// apart garbled it, and a reader that changes streams between reads cannot
// join them). Held bytes go out with the next write: joined to it when it
// is on the same stream (the rest of the character), as they are before it
// otherwise, so that the order of the writes is kept; or at the end of the
// line or chunk (flushHeld). Invalid UTF-8 is passed on as it is. s.mu is
// held.
func (s *Session) whole(stream Stream, p []byte) []piece {
	var out []piece
	if h := s.held; len(h.p) > 0 {
		s.held = piece{}
		if h.stream == stream {
			p = append(h.p, p...)
		} else {
			out = append(out, h)
		}
	}
	if n := incompleteTail(p); n > 0 {
		s.held = piece{stream, append([]byte(nil), p[len(p)-n:]...)}
		p = p[:len(p)-n]
	}
	if len(p) > 0 {
		out = append(out, piece{stream, p})
	}
	return out
}

// incompleteTail is the length of the valid but incomplete UTF-8 sequence
// that ends p (0 if none).
func incompleteTail(p []byte) int {
	for i := len(p) - 1; i >= 0 && i > len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if utf8.FullRune(p[i:]) {
				return 0
			}
			return len(p) - i
		}
	}
	return 0
}

// flushHeld delivers the bytes whole held back when the line or chunk that
// wrote them ended without completing them: to the listener, or (toLog:
// REPL input's output) to the buffer when there is none.
func (s *Session) flushHeld(toLog bool) {
	s.mu.Lock()
	h := s.held
	s.held = piece{}
	fn := s.listener
	if len(h.p) > 0 && fn == nil && toLog {
		s.log.add(h.stream, h.p)
		s.changed.Broadcast()
	}
	s.mu.Unlock()
	if len(h.p) > 0 && fn != nil && !fn(h.stream, h.p) && toLog {
		s.bufferDeclined([]piece{h})
	}
}

func (s *Session) runChunk(ctx context.Context, item sessionItem) (*Result, error) {
	req := &Request{Code: item.code, ChunkName: "=input", PrintResults: item.opts.PrintResults,
		Output: func(st Stream, p []byte) { s.emitListenerOnly(st, p) }}
	defer s.flushHeld(false)
	in, ok := s.vm.engine.(Interrupter)
	if item.opts.Timeout <= 0 || !ok {
		return s.stoppedOutcome(s.vm.run(ctx, req, item.opts.Timeout))
	}
	// A session keeps its state across a timeout: at the deadline the chunk
	// is interrupted (the engine keeps the Lua state) and only if it does
	// not stop within InterruptGrace is it cancelled outright.
	run, _ := ctx.Value(ownerKey{}).(*sessionRun)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var fired atomic.Bool
	interrupt := time.AfterFunc(item.opts.Timeout, func() {
		fired.Store(true)
		if !s.vm.interruptFor(run, in) {
			cancel() // still waiting for the VM: give up waiting
		}
	})
	hard := time.AfterFunc(item.opts.Timeout+InterruptGrace, cancel)
	res, err := s.vm.run(ctx, req, 0)
	interrupt.Stop()
	hard.Stop()
	if fired.Load() {
		msg := "timed out after " + item.opts.Timeout.String() + ": the chunk was interrupted; the session keeps its state"
		if err != nil {
			msg = "timed out after " + item.opts.Timeout.String() + ": " + err.Error()
		}
		return nil, Errorf(ErrTimeout, "execute", "%s", msg)
	}
	return s.stoppedOutcome(res, err)
}

// stoppedOutcome gives a chunk that Interrupt or Close stopped one outcome
// on every engine: ErrTimeout "interrupted" (ErrClosed after Close). Engines
// end such a chunk differently: the embedded engine with a cancellation
// error, the process engine on lua5.x with a Lua error "interrupted!" that
// its SIGINT hook raised. A chunk that ended well before the stop took
// effect keeps its result, as does an error that is not the stop's (the VM
// closed under it, say). The engine's own error says whether the state was
// kept (an interpreter that had to be killed loses it).
func (s *Session) stoppedOutcome(res *Result, err error) (*Result, error) {
	s.mu.Lock()
	stopped, closed := s.stopped, s.closed
	s.mu.Unlock()
	if !stopped || (err == nil && res != nil && res.Success) || (err != nil && CodeOf(err) != ErrTimeout) {
		return res, err
	}
	if closed {
		return nil, Errorf(ErrClosed, "execute", "the session was closed while the chunk ran")
	}
	if err != nil {
		return nil, Wrap(ErrTimeout, "execute", "interrupted", err)
	}
	return nil, Errorf(ErrTimeout, "execute", "interrupted: the chunk was stopped; the session keeps its state")
}

// emitListenerOnly delivers an Execute's output to the listener only (its
// result has all of it), as emit does.
func (s *Session) emitListenerOnly(stream Stream, p []byte) {
	inPieces(p, func(p []byte) { s.listenerPiece(stream, p) })
}

func (s *Session) listenerPiece(stream Stream, p []byte) {
	s.mu.Lock()
	out := s.whole(stream, p)
	fn := s.listener
	s.mu.Unlock()
	if fn != nil {
		for _, pc := range out {
			fn(pc.stream, pc.p)
		}
	}
}

// runInput feeds complete lines to the REPL one at a time.
func (s *Session) runInput(ctx context.Context, input []byte) {
	said := false // the engine wrote its own "interrupted!" error for this line
	out := func(st Stream, p []byte) {
		if st == Stderr && len(p) > 0 {
			s.mu.Lock()
			s.errLast = p[len(p)-1]
			s.mu.Unlock()
			said = said || bytes.Contains(p, []byte("interrupted!"))
		}
		s.emit(st, p)
	}
	defer s.flushHeld(true)
	defer func() {
		s.mu.Lock()
		s.unread -= len(input) // dropped, when the input was interrupted
		s.mu.Unlock()
	}()
	for len(input) > 0 {
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if stopped {
			return // interrupted: the rest of this input is dropped
		}
		i := bytes.IndexByte(input, '\n')
		line := input[:i+1]
		input = input[i+1:]
		s.mu.Lock()
		chunk := append(s.pending, line...)
		s.mu.Unlock()
		if len(bytes.TrimSpace(chunk)) == 0 {
			s.mu.Lock()
			s.pending = nil
			s.unread -= len(line)
			s.mu.Unlock()
			continue
		}
		said = false
		res, err := s.vm.run(ctx, &Request{Code: chunk, ChunkName: "=stdin", REPL: true, PrintResults: true, Output: out}, 0)
		s.flushHeld(true) // the line's output ends here
		s.mu.Lock()
		s.unread -= len(line) // in the chunk being typed, or run
		if err == nil && res.Incomplete {
			// Not after an Interrupt that came while the line ran: it
			// dropped the chunk being typed, which this would bring back
			// for the next input to complete.
			if !s.stopped {
				s.pending = chunk
			}
			s.mu.Unlock()
			continue
		}
		s.pending = nil
		s.mu.Unlock()
		if err != nil {
			msg := err.Error()
			if CodeOf(err) == ErrTimeout {
				msg = "interrupted"
			}
			s.mu.Lock()
			if s.errLast != 0 && s.errLast != '\n' {
				msg = "\n" + msg // after the engine's unterminated message
			}
			s.mu.Unlock()
			switch {
			case CodeOf(err) != ErrTimeout || !said:
				out(Stderr, []byte(msg+"\n"))
			case msg[0] == '\n':
				out(Stderr, []byte("\n")) // end the engine's own message, and say it once
			}
			if ctx.Err() != nil {
				return // interrupted: the rest of this input is dropped
			}
			continue
		}
		if !res.Success && len(res.Stderr) > 0 && res.Stderr[len(res.Stderr)-1] != '\n' {
			out(Stderr, []byte("\n"))
		}
	}
}

// outputLog is the bounded, ordered output of a session. The bytes of all
// streams lie in one buffer, in the order written; runs say which stream
// each stretch belongs to. Consecutive writes to one stream share a run,
// and every run past the first freeRuns counts runOverhead bytes against
// max besides its data, so that output alternating between the streams a
// byte at a time cannot hold more memory than max allows.
type outputLog struct {
	data    []byte   // data[head:] is the kept output
	head    int      // bytes of data already dropped or taken
	runs    []outRun // runs[rhead:] describe data[head:], oldest first
	rhead   int      // runs already dropped
	size    int      // cost(), kept up to date
	max     int
	dropped int64
}

type outRun struct {
	stream Stream
	n      int
}

const (
	// runOverhead is what one run is charged: its outRun and slack.
	runOverhead = 32
	// freeRuns is how many runs are not charged (a small constant).
	freeRuns = 64
)

// cost is what the kept output counts against max.
func (l *outputLog) cost() int {
	c := len(l.data) - l.head
	if n := len(l.runs) - l.rhead; n > freeRuns {
		c += (n - freeRuns) * runOverhead
	}
	return c
}

func (l *outputLog) add(stream Stream, p []byte) {
	if len(p) == 0 {
		return
	}
	if len(p) >= l.max {
		// The whole budget or more: keep p's tail only.
		l.drop(l.cost())
		l.dropped += int64(len(p) - l.max)
		p = p[len(p)-l.max:]
		n := charStart(p)
		l.dropped += int64(n)
		p = p[n:]
		if len(p) == 0 {
			return
		}
	}
	if n := len(l.runs); n > l.rhead && l.runs[n-1].stream == stream {
		l.runs[n-1].n += len(p)
	} else {
		l.runs = append(l.runs, outRun{stream, len(p)})
	}
	l.data = append(l.data, p...)
	if over := l.cost() - l.max; over > 0 {
		l.drop(over)
	}
	l.compact()
	l.size = l.cost()
}

// drop discards the oldest output until the cost went down by over.
func (l *outputLog) drop(over int) {
	for over > 0 && l.rhead < len(l.runs) {
		r := &l.runs[l.rhead]
		if over >= r.n {
			// The whole run, and its overhead.
			before := l.cost()
			l.head += r.n
			l.dropped += int64(r.n)
			l.rhead++
			over -= before - l.cost()
			continue
		}
		r.n -= over
		l.head += over
		l.dropped += int64(over)
		over = 0
		// Whole characters only: the rest of one the cut went through
		// goes too (a read began with its stray bytes).
		n := charStart(l.data[l.head : l.head+r.n])
		r.n -= n
		l.head += n
		l.dropped += int64(n)
		if r.n == 0 {
			l.rhead++
		}
	}
	if l.rhead == len(l.runs) {
		l.reset()
	}
}

// charStart is how many bytes p starts with that continue a UTF-8
// character cut just before p (at most utf8.UTFMax-1).
func charStart(p []byte) int {
	n := 0
	for n < len(p) && n < utf8.UTFMax-1 && !utf8.RuneStart(p[n]) {
		n++
	}
	return n
}

// compact moves the kept output to the front once the dropped part is the
// larger one, so memory stays within about twice the budget.
func (l *outputLog) compact() {
	if l.head > 4096 && l.head > len(l.data)/2 {
		n := copy(l.data, l.data[l.head:])
		l.data = l.data[:n]
		l.head = 0
	}
	if l.rhead > 256 && l.rhead > len(l.runs)/2 {
		n := copy(l.runs, l.runs[l.rhead:])
		l.runs = l.runs[:n]
		l.rhead = 0
	}
}

// reset empties the log (the dropped count stays).
func (l *outputLog) reset() {
	l.data, l.head, l.runs, l.rhead = l.data[:0], 0, l.runs[:0], 0
	if cap(l.data) > 2*l.max+4096 {
		l.data = nil
	}
	if cap(l.runs) > 1024 {
		l.runs = nil
	}
	l.size = 0
}

func (l *outputLog) has(streams Stream) bool {
	for _, r := range l.runs[l.rhead:] {
		if r.stream&streams != 0 {
			return true
		}
	}
	return false
}

// take removes and returns the output of streams, in the order written,
// after the dropped-output marker if output was dropped.
func (l *outputLog) take(streams Stream) []byte {
	var out []byte
	if l.dropped > 0 {
		out = fmt.Appendf(out, DroppedMarker, l.dropped)
		l.dropped = 0
	}
	if !l.has(streams) {
		return out
	}
	var kept []outRun
	var keptData []byte
	off := l.head
	for _, r := range l.runs[l.rhead:] {
		b := l.data[off : off+r.n]
		off += r.n
		if r.stream&streams != 0 {
			out = append(out, b...)
			continue
		}
		if n := len(kept); n > 0 && kept[n-1].stream == r.stream {
			kept[n-1].n += r.n
		} else {
			kept = append(kept, r)
		}
		keptData = append(keptData, b...)
	}
	l.reset()
	l.data = append(l.data, keptData...)
	l.runs = append(l.runs, kept...)
	l.size = l.cost()
	return out
}
