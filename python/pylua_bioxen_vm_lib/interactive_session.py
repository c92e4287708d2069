"""Interactive sessions: a persistent Lua VM driven like ``lua -i``.

Input is text sent in pieces (:meth:`InteractiveSession.send_input` returns at
once); every complete line joins the chunk being typed; a complete chunk runs
in the core (a line that is an expression, or ``=expr``, prints its values);
an incomplete one (``for i = 1, 3 do``) waits for more lines; an error goes to
the session's stderr and the session carries on with its state. Output holds
only what the Lua code wrote: no banner, prompt, echo, escape codes or CRLF.

Reading: :meth:`read_output` returns what was produced so far (stdout and
stderr interleaved in the order written, or one stream), waiting up to
``timeout`` for the first output and returning early when the session is
idle; :meth:`execute_interactive` runs a chunk and returns its complete
result, so no caller ever needs to sleep. :meth:`attach` streams output to a
callback instead. Output nobody reads is kept up to 4 MiB per session; past
that the oldest is dropped and the next read starts with
``[bioxen: N bytes of older output dropped]``.

Output callbacks run on a core thread while the chunk that wrote the output
waits for them. A callback must therefore not call back into the same session
or its VM with a call that waits for the VM (``execute_interactive``,
``wait``, ``terminate``, the VM's ``execute_string``, ``stop``, ``close``
...): such a call raises ReentrantCallError instead of deadlocking. It may
use ``send_input``, ``interrupt``, ``is_busy``, ``has_pending_input`` and
``detach``, and any other VM; hand other work to another thread (without
waiting for that thread in the callback).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import math
import threading
import time
import weakref
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

from . import _ffi, _packages
from . import exceptions as exc
from .vm import (
    AsyncCallOrder,
    BasicLuaVM,
    Code,
    ExecResult,
    _delivering,
    check_not_delivering,
    close_from_finalizer,
    code_bytes,
    delivering_for,
    encode_code,
    on_exec_done,
    pending_calls,
    result_from,
    timeout_ms,
    wait_ms,
)

logger = logging.getLogger("pylua_bioxen_vm_lib.session")

# What one stream_output iterator keeps that its consumer has not taken yet
# (characters), as the core keeps for read_output: past it the oldest is
# dropped.
STREAM_BUFFER_CHARS = 4 << 20


class _OutputStream:
    """The output waiting for one ``stream_output`` iterator: filled on the
    core's thread, drained on the iterator's event loop. It is bounded like
    the core's own buffer (the core does not wait for this consumer, so a
    slow or abandoned one would otherwise collect everything a chunk
    prints): past STREAM_BUFFER_CHARS the oldest text is dropped and the
    next item starts with ``[bioxen: N bytes of older output dropped]``.
    One wake-up is scheduled on the loop per batch, not one per write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._parts: collections.deque[str] = collections.deque()
        self._size = 0
        self._dropped = 0  # bytes (UTF-8) dropped since the last get
        self._ended = False
        self._wake_scheduled = False
        self._wake = asyncio.Event()  # set and cleared on the loop only

    def put(self, text: str) -> None:
        """Add output (any thread)."""
        with self._lock:
            if self._ended:
                return
            self._parts.append(text)
            self._size += len(text)
            while self._size > STREAM_BUFFER_CHARS and len(self._parts) > 1:
                old = self._parts.popleft()
                self._size -= len(old)
                self._dropped += len(old.encode("utf-8", "surrogatepass"))
            self._schedule_wake_locked()

    def end(self) -> None:
        """No more output: get returns None once the rest is taken (any thread)."""
        with self._lock:
            self._ended = True
            self._schedule_wake_locked()

    def _schedule_wake_locked(self) -> None:
        if self._wake_scheduled:
            return
        self._wake_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self._wake.set)

    async def get(self) -> Optional[str]:
        """The output written since the last get, or None at the end (on the loop)."""
        while True:
            with self._lock:
                self._wake.clear()
                self._wake_scheduled = False
                if self._parts or self._dropped:
                    text = "".join(self._parts)
                    if self._dropped:
                        text = f"[bioxen: {self._dropped} bytes of older output dropped]\n" + text
                    self._parts.clear()
                    self._size = self._dropped = 0
                    return text
                if self._ended:
                    return None
            await self._wake.wait()


# wait() waits in slices of this many milliseconds (so a KeyboardInterrupt
# is seen between them, and no value the core cannot count is ever sent).
_WAIT_SLICE_MS = 1000

OutputCallback = Callable[[str], Any]


def _lua_string(s: str) -> str:
    """A Lua long-bracket-free quoted string literal for s."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_STREAMS = {"both": _ffi.STDOUT | _ffi.STDERR, "stdout": _ffi.STDOUT, "stderr": _ffi.STDERR}


class _Listeners:
    """Routes the core's output callback (one C function for all sessions)
    to the Python session it belongs to, by the userdata key. It holds the
    sessions weakly: a session dropped without terminate() is collected
    (and closed by its __del__) even while attached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 1
        self._sessions: Dict[int, weakref.ref[InteractiveSession]] = {}

    def add(self, session: InteractiveSession) -> int:
        with self._lock:
            key = self._next
            self._next += 1
            self._sessions[key] = weakref.ref(session)
            return key

    def remove(self, key: int) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def get(self, key: int) -> Optional[InteractiveSession]:
        with self._lock:
            ref = self._sessions.get(key)
        return None if ref is None else ref()


_listeners = _Listeners()


@_ffi.OUTPUT_FN
def _on_output(userdata: Optional[int], stream: int, data: Any, length: int) -> None:
    session = _listeners.get(userdata or 0)
    if session is not None:
        session._deliver(stream, ctypes.string_at(data, length))


class InteractiveSession:
    """An interactive session on a persistent VM.

    ``InteractiveSession(session_id, vm_instance=None, lua_executable="lua",
    debug_mode=False)`` — the original's signature. Without ``vm_instance`` a
    persistent :class:`BasicLuaVM` is created (and closed with the session);
    a given VM must be persistent (a session keeps its state between inputs).
    The session starts on first use or with :meth:`start`.
    :meth:`terminate` ends it; a session dropped without it is closed when
    it is garbage collected.
    """

    def __init__(
        self,
        session_id: str,
        vm_instance: Optional[BasicLuaVM] = None,
        lua_executable: str = "lua",
        debug_mode: bool = False,
        *,
        engine: Optional[str] = None,
    ) -> None:
        if vm_instance is None:
            vm_instance = BasicLuaVM(
                session_id, engine=engine, lua_executable=lua_executable, persistent=True, debug_mode=debug_mode
            )
            self._owns_vm = True
        else:
            if not isinstance(vm_instance, BasicLuaVM):
                raise exc.ArgumentTypeError(f"vm_instance must be a BasicLuaVM, not {type(vm_instance).__name__}")
            if not vm_instance.persistent:
                raise exc.SessionStateError(
                    f"VM {vm_instance.vm_id!r} is not persistent; an interactive session needs persistent=True"
                )
            self._owns_vm = False
        self.session_id = session_id
        self.vm = vm_instance
        self.debug_mode = debug_mode
        self.environment = vm_instance.environment or _packages.DEFAULT_ENV
        self._base_paths: Optional[tuple[str, str]] = None
        self._handle = 0
        self._async_order = AsyncCallOrder()  # execute_interactive_async's calls, in order
        self._vm_handle = 0  # the VM engine the session was opened on
        self._closed = False
        self._lock = threading.Lock()
        self._callback: Optional[OutputCallback] = None
        self._attached = False
        self._listener_key = 0
        self._listener_lock = threading.RLock()  # see _sync_listener
        self._listener_set = False  # the core has our listener
        self._late: list[tuple[int, str]] = []  # (stream, text) delivered with no one to take it
        self._late_lock = threading.Lock()
        self.last_activity = time.time()
        self._output_streams: list[_OutputStream] = []
        self._dropping_streams = False  # a thread runs _drop_abandoned_streams

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("attached" if self._attached else "detached")
        return f"<InteractiveSession {self.session_id!r} on {self.vm!r} {state}>"

    # -- lifecycle -------------------------------------------------------
    def start(self) -> InteractiveSession:
        with self._lock:
            self._start_locked()
        return self

    def _start_locked(self) -> int:
        if self._closed:
            raise exc.SessionStateError(f"session {self.session_id!r} is terminated")
        if not self._handle:
            vm_handle = self.vm._running_handle()
            handle = ctypes.c_uint64()
            try:
                status = _ffi.session_open(vm_handle, ctypes.byref(handle))
                if status == _ffi.OK:
                    self._handle = handle.value
                    self._vm_handle = vm_handle
                    with self.vm._lock:
                        self.vm._sessions.add(self)
            except BaseException:  # Ctrl-C as it returned: as in BasicLuaVM._start_locked
                if handle.value and self._handle != handle.value:
                    _ffi.session_close(handle.value)
                raise
            if status != _ffi.OK:
                raise _ffi.error_for(status, f"session {self.session_id!r}")
            logger.debug("session %r started", self.session_id)
        return self._handle

    def _h(self) -> int:
        with self._lock:
            return self._start_locked()

    async def _h_async(self) -> int:
        """_h for a coroutine: starting the session (and its VM) runs in
        the loop's default executor, not in the event loop."""
        handle = self._handle
        if handle and not self._closed:
            return handle
        return await asyncio.get_running_loop().run_in_executor(None, self._h)

    def _check(self, status: int, what: str) -> None:
        if status == _ffi.OK:
            return
        if status in (_ffi.E_BADHANDLE, _ffi.E_CLOSED):
            why = "is terminated" if self.vm._handle == self._vm_handle else "ended when its VM was stopped"
            raise exc.SessionStateError(f"session {self.session_id!r} {why}", code=status)
        raise _ffi.error_for(status, f"session {self.session_id!r}: {what}")

    def is_running(self) -> bool:
        # A session ends with its VM's engine: after vm.stop() (and a later
        # start(), which makes a new engine) it is not running.
        return bool(self._handle) and not self._closed and self.vm._handle == self._vm_handle

    def terminate(self) -> None:
        """Stop the session (and the VM it created). Calling it twice is
        harmless. Raises ReentrantCallError from an output callback of this
        session's VM (it would deadlock)."""
        if _ffi.forked:
            # In a forked child the session is the parent's, and so may be
            # the lock (held by another thread of the parent at fork()).
            self._handle, self._closed = 0, True
            if self._owns_vm:
                self.vm.close()
            return
        check_not_delivering(self.vm, "terminate()")
        handle, already = 0, True
        try:
            with self._lock:
                handle, self._handle = self._handle, 0
                already = self._closed
                self._closed = True
                self._attached, self._callback = False, None
        finally:
            # Also when a Ctrl-C lands right after the handle was taken.
            if handle:
                if self._listener_key:
                    _listeners.remove(self._listener_key)
                _ffi.session_close(handle)
        if self._owns_vm:
            self.vm.close()
        for stream in list(self._output_streams):
            stream.end()
        if not already:
            logger.debug("session %r terminated", self.session_id)

    close = terminate

    def _vm_stopped(self, vm_handle: int) -> None:
        """The VM engine vm_handle was closed (BasicLuaVM.stop): if this
        session was opened on it, it has ended, and so do its
        stream_output iterators (once they have yielded what they hold)."""
        if vm_handle != self._vm_handle:
            return
        for stream in list(self._output_streams):
            stream.end()
        logger.debug("session %r ended with its VM", self.session_id)

    def __copy__(self) -> InteractiveSession:
        raise exc.ArgumentTypeError("an InteractiveSession cannot be copied: it owns a live session")

    def __deepcopy__(self, memo: Any) -> InteractiveSession:
        return self.__copy__()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise exc.ArgumentTypeError("an InteractiveSession cannot be pickled: it owns a live session")

    def __del__(self) -> None:
        # A session dropped without terminate(): close its core session (it
        # holds the VM's Lua state and, for a VM the session did not create,
        # would live as long as the VM). A VM the session created is closed
        # by its own __del__.
        key = getattr(self, "_listener_key", 0)
        if key:
            _listeners.remove(key)
        handle = getattr(self, "_handle", 0)
        if not handle:
            return
        with contextlib.suppress(Exception):
            close_from_finalizer(_ffi.session_close, handle)

    def __enter__(self) -> InteractiveSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

    # -- input -----------------------------------------------------------
    def send_input(self, input_text: Code) -> None:
        """Queue input and return at once. A line without a final newline
        is completed with one, like pressing Enter."""
        data = code_bytes(input_text, "input")
        handle = self._h()
        self._check(_ffi.session_send(handle, data, len(data)), "send_input")
        self.last_activity = time.time()

    send_command = send_input

    # -- output ----------------------------------------------------------
    def read_output(self, timeout: float = 0.1, stream: str = "both") -> str:
        """Output produced so far ("" when none). Waits up to ``timeout``
        seconds for the first output; returns early when the session is idle.
        ``stream`` is "both" (interleaved as written), "stdout" or "stderr".
        ``timeout`` 0 does not wait; ``math.inf`` (or anything over about 292
        years) waits without limit; None, negative or NaN raise
        InvalidArgumentError (a ValueError). From an output callback of this
        session's VM only ``timeout=0`` is allowed (a wait there would hold
        up the chunk it waits for): anything else raises
        ReentrantCallError."""
        if not isinstance(stream, str):
            raise exc.ArgumentTypeError(
                f"stream must be a str ('both', 'stdout' or 'stderr'), not {type(stream).__name__}"
            )
        mask = _STREAMS.get(stream)
        if mask is None:
            raise exc.InvalidArgumentError(f"stream must be 'both', 'stdout' or 'stderr', not {stream!r}")
        ms = wait_ms(timeout)
        if ms:
            check_not_delivering(self.vm, "read_output() with a timeout")
        handle = self._h()
        self._drop_abandoned_streams()
        late = self._take_late(mask)
        if late:
            return late + self._read_once(handle, mask, 0).decode("utf-8", "replace")
        # The core waits in one C call: wait in slices, so that Ctrl-C
        # (KeyboardInterrupt) is seen between them.
        deadline = time.monotonic() + ms / 1000
        while True:
            raw = self._read_once(handle, mask, min(ms, _WAIT_SLICE_MS))
            ms = max(0, math.ceil((deadline - time.monotonic()) * 1000))
            if not raw and ms and not self.is_busy():
                # Gone idle since the slice ended: what it wrote meanwhile
                # is in the buffer.
                raw = self._read_once(handle, mask, 0)
                ms = 0
            if raw or ms == 0:
                # The core never splits a character between reads (or
                # deliveries), so each piece decodes on its own, whatever
                # the stream asked for. A delivery that came while detach()
                # removed the listener during the wait was written before
                # what the core buffered after it: it goes first.
                return self._take_late(mask) + raw.decode("utf-8", "replace")

    def _read_once(self, handle: int, mask: int, ms: int) -> bytes:
        data = ctypes.c_void_p()
        size = ctypes.c_size_t()
        status = _ffi.session_read(handle, mask, ms, ctypes.byref(data), ctypes.byref(size))
        self._check(status, "read_output")
        try:
            return ctypes.string_at(data, size.value) if size.value else b""
        finally:
            _ffi.free(data)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until all input sent so far has run; True when idle, False
        when ``timeout`` seconds passed first. ``timeout`` None (the default)
        or ``math.inf`` waits as long as it takes; 0, negative or NaN raise
        InvalidArgumentError (a ValueError). Raises SessionStateError when
        the session is terminated (or its VM stopped) before or while it
        waits: the input it dropped will not run. Raises ReentrantCallError
        from an output callback of this session's VM (the session cannot
        become idle while its callback waits)."""
        limit = timeout_ms(timeout)  # 0: no limit (None, inf, over ~292 years)
        check_not_delivering(self.vm, "wait()")
        handle = self._h()
        idle = ctypes.c_int()
        # The core waits at most the milliseconds it is given (0: not at all),
        # so wait in slices until idle or past the deadline.
        deadline = None if limit == 0 or timeout is None else time.monotonic() + timeout
        while True:
            ms = _WAIT_SLICE_MS
            if deadline is not None:
                ms = min(ms, max(1, math.ceil((deadline - time.monotonic()) * 1000)))
            self._check(_ffi.session_wait(handle, ms, ctypes.byref(idle)), "wait")
            if idle.value:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def is_busy(self) -> bool:
        busy = ctypes.c_int()
        self._check(_ffi.session_status(self._h(), ctypes.byref(busy), None), "status")
        return bool(busy.value)

    def has_pending_input(self) -> bool:
        """True while an incomplete chunk waits for more lines."""
        pending = ctypes.c_int()
        self._check(_ffi.session_status(self._h(), None, ctypes.byref(pending)), "status")
        return bool(pending.value)

    def execute_interactive(self, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """Run a chunk after the input queued before it and return its
        complete result (the dict of execute_string); blocking, no sleeps.
        Its output is not added to what read_output returns. ``timeout`` as
        for :meth:`BasicLuaVM.execute_string`. Raises ReentrantCallError from
        an output callback of this session's VM (it would deadlock)."""
        data = encode_code(lua_code)
        ms = timeout_ms(timeout)
        check_not_delivering(self.vm, "execute_interactive()")
        out = _ffi.ResultPtr()
        handle = self._h()
        status = _ffi.call_blocking(
            lambda: _ffi.session_execute(handle, data, len(data), ms, _ffi.EXEC_PRINT_RESULTS, ctypes.byref(out)), out
        )
        self._check(status, "execute_interactive")
        self.last_activity = time.time()
        return result_from(out)

    def execute_and_wait(self, command: Code, timeout: float = 5.0) -> str:
        """The original's method: run a command and return its output text."""
        result = self.execute_interactive(command, timeout=timeout)
        return "\n".join(part for part in (result["stdout"], result["stderr"]) if part)

    def interrupt(self) -> None:
        """Stop the running chunk, keeping the session's state (the chunk
        ends with an "interrupted" error on stderr); queued input and the
        rest of the running input are dropped. The running
        ``execute_interactive`` and any queued one raise VMTimeoutError
        ("interrupted") on every engine. Only this session's own chunk is
        ever stopped."""
        self._check(_ffi.session_interrupt(self._h()), "interrupt")

    # -- attach ----------------------------------------------------------
    def attach(self, output_callback: Optional[OutputCallback] = None) -> None:
        """Attach; with a callback, output is streamed to it as it is
        produced (from a core thread, in order) instead of being buffered.

        The callback runs while the chunk that wrote the output waits for it:
        keep it short, and do not call back into this session or its VM with
        a call that waits for the VM (execute_interactive, wait, terminate,
        the VM's execute_string/execute_file/stop/close): such a call would
        deadlock and raises ReentrantCallError instead. send_input,
        interrupt, is_busy, has_pending_input and detach are fine; hand
        anything else to another thread, without waiting for it in the
        callback. An exception the callback raises is logged and dropped."""
        if output_callback is not None and not callable(output_callback):
            raise exc.ArgumentTypeError("output_callback must be callable")
        with self._lock:
            if self._closed:  # not AttachError "already attached": it is terminated
                raise exc.SessionStateError(f"session {self.session_id!r} is terminated")
            if self._attached:
                raise exc.AttachError(f"session {self.session_id!r} is already attached")
            self._start_locked()
            self._attached = True
            self._callback = output_callback
        if output_callback is not None:
            try:
                self._sync_listener()
            except BaseException:
                # Not attached after all (the session was closed meanwhile).
                with self._lock:
                    if self._callback is output_callback:
                        self._attached = False
                        self._callback = None
                raise

    def detach(self) -> None:
        with self._lock:
            if self._closed:
                raise exc.SessionStateError(f"session {self.session_id!r} is terminated")
            if not self._attached:
                raise exc.DetachError(f"session {self.session_id!r} is not attached")
            self._attached = False
            had_callback = self._callback is not None
            self._callback = None
        if had_callback:
            self._sync_listener()

    def is_attached(self) -> bool:
        return self._attached

    def _sync_listener(self) -> None:
        """Make the core's listener match the session's state: set while a
        callback (attach) or a stream_output wants the output, removed
        otherwise. Whatever changes that state calls this after the change.
        The calls are serialized and each one looks at the state again
        after its core call, so the last one leaves the core matching the
        last change: attach and detach racing on two threads could leave an
        attached callback without a listener (its output buffered, the
        callback never called) or a listener after the last detach."""
        with self._listener_lock:
            while True:
                handle = self._handle
                want = self._callback is not None or bool(self._output_streams)
                if not handle or want == self._listener_set:
                    return
                if want:
                    if not self._listener_key:
                        self._listener_key = _listeners.add(self)
                    self._check(_ffi.session_set_listener(handle, _on_output, self._listener_key), "attach")
                else:
                    # Fails only when the session was closed meanwhile.
                    _ffi.session_set_listener(handle, _ffi.OUTPUT_FN(), None)
                self._listener_set = want

    def _drop_abandoned_streams(self) -> None:
        """Forget the stream_output iterators whose event loop was closed
        before they ended (their finally never runs): they kept the core's
        listener, so read_output found nothing, ever again. Not from an
        output callback: removing the listener there could wait for a
        thread that waits for this callback."""
        try:
            if getattr(_delivering, "vm", None) is self.vm:
                return
            dead = [out for out in self._output_streams if out.loop.is_closed()]
            for out in dead:
                with contextlib.suppress(ValueError):  # removed meanwhile
                    self._output_streams.remove(out)
            if dead:
                logger.debug("session %r: dropped %d stream_output iterators of dead loops", self.session_id, len(dead))
            # Also when another thread dropped them and has not removed the
            # listener yet (a no-op when the listener matches).
            self._sync_listener()
        finally:
            self._dropping_streams = False

    def _deliver(self, stream: int, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        if not text:
            return
        callback = self._callback
        # An iterator whose loop is closed takes nothing: its output is kept
        # for read_output (see _drop_abandoned_streams).
        streams = [out for out in self._output_streams if not out.loop.is_closed()]
        if len(streams) != len(self._output_streams) and not self._dropping_streams:
            # And the listener they keep goes, so that output nobody reads
            # is bounded in the core again (not from here: see
            # _drop_abandoned_streams).
            self._dropping_streams = True
            threading.Thread(target=self._drop_abandoned_streams, name="pylua-stream-drop", daemon=True).start()
        if callback is None and not streams:
            # Delivered while detach() (or the end of stream_output) was
            # removing the core's listener: keep it for read_output, which
            # returns it before what the core buffered after it.
            with self._late_lock:
                self._late.append((stream, text))
            return
        if callback is not None:
            try:
                with delivering_for(self.vm):
                    callback(text)
            except Exception:
                logger.exception("output callback of session %r failed", self.session_id)
        for out in streams:
            out.put(text)

    def _take_late(self, mask: int) -> str:
        """The late deliveries (see _deliver) on the streams of mask."""
        with self._late_lock:
            if not self._late:
                return ""
            taken = [text for stream, text in self._late if stream & mask]
            self._late = [(stream, text) for stream, text in self._late if not stream & mask]
        return "".join(taken)

    # -- asyncio ---------------------------------------------------------
    async def execute_interactive_async(self, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """``await`` a chunk in this session: the core runs it and calls back
        when done; no Python thread is used per call. Cancelling the task
        stops this chunk only (taken out of the queue, or interrupted with
        the session's state kept). Raises SessionStateError when the session
        is terminated (or its VM stopped) before or while the chunk runs."""
        data = encode_code(lua_code)
        ms = timeout_ms(timeout)
        async with self._async_order.turn():  # a call waiting for the start is not overtaken
            handle = await self._h_async()
            call = pending_calls.new()
            status = _ffi.session_execute_async(
                handle, data, len(data), ms, _ffi.EXEC_PRINT_RESULTS, on_exec_done, call.key, ctypes.byref(call.handle)
            )
        if status != _ffi.OK:
            pending_calls.drop(call.key)
            self._check(status, "execute_interactive_async")
        try:
            return await call.wait()
        except exc.VMClosedError as err:
            # The session (or its VM) ended while the call waited or ran:
            # SessionStateError, as execute_interactive raises.
            self._check(err.code or _ffi.E_CLOSED, "execute_interactive_async")
            raise

    async def stream_output(self) -> AsyncIterator[str]:
        """``async for text in session.stream_output()``: output as it is
        produced, pushed by the core's callback (no thread per session); each
        item is all the output written since the previous one, at most
        STREAM_BUFFER_CHARS of it (the oldest dropped, see _OutputStream).
        Ends when the session is terminated, when its VM is stopped or
        closed, or when the loop stops iterating."""
        stream = _OutputStream(asyncio.get_running_loop())
        await self._h_async()
        self._output_streams.append(stream)
        if self.vm._handle != self._vm_handle:  # the VM stopped meanwhile: see _vm_stopped
            stream.end()
        try:
            self._sync_listener()
            # Output produced before the listener was set is in the buffer.
            earlier = self.read_output(timeout=0)
            if earlier:
                yield earlier
            while True:
                text = await stream.get()
                if text is None:
                    return
                yield text
        finally:
            with contextlib.suppress(ValueError):  # dropped by _drop_abandoned_streams
                self._output_streams.remove(stream)
            self._sync_listener()

    # -- environments ----------------------------------------------------
    def set_environment(self, env_name: str) -> None:
        """Bind a package environment: its package.path/cpath go in front of
        the VM's own, so ``require`` finds what was installed there. Names
        are letters, digits, '_', '.', '-'; an unknown name raises
        EnvironmentNotFoundError. "default" is always accepted."""
        _packages.check_env_name(env_name)
        paths = _packages.env_paths(env_name, self.vm.engine, self.vm.lua_executable)
        if paths is None:
            if env_name != _packages.DEFAULT_ENV:
                known = ", ".join(sorted(_packages.call("envs") or [])) or "none"
                raise exc.EnvironmentNotFoundError(f"unknown environment {env_name!r} (known: {known})")
            paths = {"path": "", "cpath": ""}
        if self._base_paths is None:
            base = self.execute_interactive("return package.path, package.cpath")["values"]
            self._base_paths = (str(base[0]), str(base[1]))
        path = ";".join(p for p in (paths["path"], self._base_paths[0]) if p)
        cpath = ";".join(p for p in (paths["cpath"], self._base_paths[1]) if p)
        result = self.execute_interactive(f"package.path = {_lua_string(path)}\npackage.cpath = {_lua_string(cpath)}")
        if not result["success"]:
            raise exc.SessionStateError(f"binding environment {env_name!r} failed: {result['error']}")
        self.environment = env_name

    def details(self) -> Dict[str, Any]:
        return {
            "session_id": self.session_id,
            "attached": self._attached,
            "running": self.is_running(),
            "engine": self.vm.engine,
            "environment": self.environment,
            "last_activity": self.last_activity,
        }


def check_id(value: Any, name: str = "session_id") -> None:
    """ArgumentTypeError for an id that is no str: a lookup with an
    unhashable one raised a plain TypeError, outside the library's errors."""
    if not isinstance(value, str):
        raise exc.ArgumentTypeError(f"{name} must be a str, not {type(value).__name__}")


class SessionManager:
    """Keeps interactive sessions by id (``VMManager.session_manager``).
    An id that is no str raises ArgumentTypeError."""

    def __init__(self, debug_mode: bool = False) -> None:
        self.debug_mode = debug_mode
        self._sessions: Dict[str, InteractiveSession] = {}
        self._lock = threading.RLock()
        # Called with the session after terminate_session: the VMManager
        # that owns this manager closes the VM it made for the session.
        self._on_terminated: Optional[Callable[[InteractiveSession], None]] = None

    def create_session(
        self, session_id: str, vm_instance: Optional[BasicLuaVM] = None, **kwargs: Any
    ) -> InteractiveSession:
        check_id(session_id)
        with self._lock:
            if session_id in self._sessions:
                raise exc.SessionAlreadyExistsError(f"session {session_id!r} already exists")
            session = InteractiveSession(session_id, vm_instance, **kwargs)
            self._sessions[session_id] = session
        return session

    def add_session(self, session: InteractiveSession) -> None:
        check_id(session.session_id)
        with self._lock:
            if session.session_id in self._sessions:
                raise exc.SessionAlreadyExistsError(f"session {session.session_id!r} already exists")
            self._sessions[session.session_id] = session

    def get_session(self, session_id: str) -> InteractiveSession:
        check_id(session_id)
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise exc.SessionNotFoundError(f"no session with id {session_id!r}")
        return session

    def has_session(self, session_id: str) -> bool:
        check_id(session_id)
        with self._lock:
            return session_id in self._sessions

    def remove_session(self, session_id: str) -> Optional[InteractiveSession]:
        check_id(session_id)
        with self._lock:
            return self._sessions.pop(session_id, None)

    def list_sessions(self) -> Dict[str, Dict[str, Any]]:
        """``{session_id: {attached, running, last_activity, ...}}``."""
        return {s.session_id: s.details() for s in self.sessions()}

    def sessions(self) -> List[InteractiveSession]:
        """The registered sessions, now."""
        with self._lock:
            return list(self._sessions.values())

    def terminate_session(self, session_id: str) -> None:
        """Terminate a session and forget it. From an output callback of its
        VM it raises ReentrantCallError and keeps it (closing it there
        would deadlock)."""
        check_id(session_id)
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise exc.SessionNotFoundError(f"no session with id {session_id!r}")
            # Checked before the session is forgotten: it stayed open, out
            # of the manager's reach.
            check_not_delivering(session.vm, "terminate_session()")
            del self._sessions[session_id]
        session.terminate()
        if self._on_terminated is not None:
            self._on_terminated(session)

    def cleanup_all(self) -> None:
        """Terminate every session; from an output callback of one of their
        VMs it raises ReentrantCallError and changes nothing."""
        with self._lock:
            for session in self._sessions.values():
                check_not_delivering(session.vm, "cleanup_all()")
            taken = self.take_all()
        for session in taken:
            session.terminate()

    def take_all(self) -> List[InteractiveSession]:
        """Unregister every session and return them (to terminate)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        return sessions
