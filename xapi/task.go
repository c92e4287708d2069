package xapi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"libbioxen/core"
	"libbioxen/xapi/internal/wire"
)

// The interval between task.get_status polls while a task runs: it
// starts short (a clone on a thin SR takes well under a second) and
// doubles up to taskPollMax.
const (
	taskPollMin = 25 * time.Millisecond
	taskPollMax = time.Second
)

// asyncGrace is how long past the caller's deadline (or cancellation) an
// Async.* call waits for its answer, the task's ref. XAPI makes the task
// before it answers: an answer cut off on a slow network left a task,
// and what it made, that nobody knew of. XAPI answers such a call at
// once; a server that does not answer at all costs the caller this much
// past its deadline.
const asyncGrace = 5 * time.Second

// runTask runs method as an XAPI task (Async.<method>) and waits for it
// within ctx, returning its result (a ref for VM.clone and VM.copy). A
// synchronous call that ctx cuts off goes on in XAPI, which does not stop
// a call whose client went away: a VM.clone or VM.copy still made its VM,
// which nobody knew of. A task stays known: when ctx ends first, runTask
// waits for the task to end, within cleanupContext(ctx), and hands a
// successful result to undo (which removes what the task made, within
// the context it is given), then returns ctx's error. The task is
// destroyed in every case (within the same context when cut off).
func (c *Client) runTask(ctx context.Context, undo func(context.Context, string), method string, args ...any) (string, error) {
	if ctx.Err() != nil {
		return "", ctxEnded(ctx, "xapi "+method, "before the task started")
	}
	actx, stop := graceContext(ctx, asyncGrace)
	task, err := c.callString(actx, "Async."+method, args...)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctxEnded(ctx, "xapi "+method, "while the task started")
		}
		return "", err
	}
	if err := checkRef("xapi Async."+method, "task", task); err != nil {
		return "", err
	}
	res, ended, err := c.waitTask(ctx, task, method)
	if ended {
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if ctx.Err() != nil {
			dctx, cancel = c.cleanupContext(ctx)
		}
		defer cancel()
		c.destroyTask(dctx, task)
		return res, err
	}
	// The task was not seen to end: ctx ended, or a poll failed (a
	// connection reset, a CallTimeout) while the task ran on. Either way
	// it may still make its VM, so it is waited for and undone, not
	// destroyed while pending and forgotten. The wait, undo and
	// task.destroy share one cleanup context: each taking a
	// CleanupTimeout of its own let a server that never ends the task and
	// never answers task.destroy hold the caller for twice CleanupTimeout
	// past its deadline.
	cctx, cancel := c.cleanupContext(ctx)
	defer cancel()
	if r, ended, werr := c.waitTask(cctx, task, method); !ended {
		core.Logf(core.LevelWarn, "xapi: the %s task %s was not seen to end within the cleanup timeout (%v): what it makes is left",
			method, c.quoteServer(task), werr)
	} else if werr == nil && undo != nil && checkRef("", "", r) == nil {
		undo(cctx, r)
	}
	c.destroyTask(cctx, task)
	return "", err
}

// waitTask polls task until it ends: its result on success, its
// error_info as a *Failure (as the synchronous call would have failed) on
// failure. ended says whether the task was seen to end; it is false when
// ctx ended first or a poll failed.
func (c *Client) waitTask(ctx context.Context, task, method string) (_ string, ended bool, _ error) {
	op := "xapi " + method
	wait := taskPollMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		status, err := c.callString(ctx, "task.get_status", task)
		if err != nil {
			return "", false, err
		}
		switch status {
		case "pending", "cancelling":
		case "success":
			doc, err := c.callString(ctx, "task.get_result", task)
			if err != nil {
				return "", false, err
			}
			// Redacted before a decoding error clips what it quotes
			// (clipping first could cut the password in two).
			v, err := wire.Decoder{Redact: c.redact}.DecodeValue(doc)
			if err != nil {
				return "", true, core.Wrap(core.ErrEngine, op, "the task's result is not an XML-RPC value", c.serverError(err))
			}
			return AsString(v), true, nil
		case "failure":
			v, err := c.Call(ctx, "task.get_error_info", task)
			if err != nil {
				return "", true, err
			}
			return "", true, c.failure(op, v)
		case "cancelled":
			return "", true, core.Errorf(core.ErrEngine, op, "the task %s was cancelled", c.quoteServer(task))
		default:
			return "", false, core.Errorf(core.ErrEngine, op, "the task %s has an unknown status %s", c.quoteServer(task), c.quoteServer(status))
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			return "", false, ctxEnded(ctx, op, "while the task ran")
		}
		wait = min(2*wait, taskPollMax)
	}
}

// ctxEnded is the error of a call on ctx, which ended (when: "while the
// task ran"), classified as transportError classifies a call's.
func ctxEnded(ctx context.Context, op, when string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return core.Wrap(core.ErrGeneric, op, "call cancelled "+when, context.Canceled)
	}
	return core.Wrap(core.ErrTimeout, op, "the call's deadline passed "+when, ctx.Err())
}

// graceContext is a context that outlives ctx by grace: it ends grace
// after ctx ends (its deadline or a cancellation), or when stop is called.
// A call made on it is not sent again once ctx has ended (pastGrace).
func graceContext(ctx context.Context, grace time.Duration) (_ context.Context, stop func()) {
	gctx, cancel := context.WithCancel(context.WithValue(context.WithoutCancel(ctx), graceParent{}, ctx))
	var (
		mu    sync.Mutex
		timer *time.Timer
	)
	unwatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if gctx.Err() == nil {
			timer = time.AfterFunc(grace, cancel)
		}
	})
	return gctx, func() {
		unwatch()
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
	}
}

// graceParent is the key of the context a graceContext outlives.
type graceParent struct{}

// pastGrace reports whether ctx is a graceContext whose caller's context
// has ended: Call then sends its call no more (a new login after
// SESSION_INVALID, a redirect after HOST_IS_SLAVE): the first attempt
// did not run, and one after the caller's deadline would start work that
// nobody waits for.
func pastGrace(ctx context.Context) bool {
	parent, _ := ctx.Value(graceParent{}).(context.Context)
	return parent != nil && parent.Err() != nil
}

// destroyTask removes a finished task's record, within ctx; XAPI would
// keep it for a while otherwise. A failure is only logged.
func (c *Client) destroyTask(ctx context.Context, task string) {
	if _, err := c.Call(ctx, "task.destroy", task); err != nil && !IsFailure(err, "HANDLE_INVALID") {
		core.Logf(core.LevelWarn, "xapi: task.destroy %s failed: %v", c.quoteServer(task), err)
	}
}

// checkRef refuses what a server sent as a reference when it is not one,
// or is far longer than XAPI's ("OpaqueRef:" and a UUID, 46 bytes): a
// task's ref goes with every poll and a VM's with every later call (a
// 200 MiB one was uploaded again each time).
func checkRef(op, what, ref string) error {
	if len(ref) > maxRefLen {
		return core.Errorf(core.ErrEngine, op, "XAPI returned a %s reference of %d bytes (a reference is ~46)", what, len(ref))
	}
	if !strings.HasPrefix(ref, "OpaqueRef:") || IsNullRef(ref) {
		return core.Errorf(core.ErrEngine, op, "XAPI returned no %s reference", what)
	}
	return nil
}
