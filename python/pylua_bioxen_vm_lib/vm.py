"""Basic Lua VMs: the embedded engine (default) and the process engine."""

from __future__ import annotations

import asyncio
import atexit
import collections
import collections.abc
import contextlib
import ctypes
import logging
import math
import os
import sys
import threading
import weakref
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Sequence, Union

from . import _ffi, _packages
from . import exceptions as exc
from .values import decode

logger = logging.getLogger("pylua_bioxen_vm_lib.vm")

ENGINES = ("embedded", "process", "xcpng")
DEFAULT_LUA_EXECUTABLE = "lua"

Code = Union[str, bytes]

INT64_MAX = 2**63 - 1
# The longest time the core can represent: it counts nanoseconds in an int64
# (Go's time.Duration), so more milliseconds than this would wrap around.
# About 292 years; a timeout this long is treated as no timeout at all.
MAX_TIMEOUT_MS = INT64_MAX // 1_000_000


class ExecResult(Dict[str, Any]):
    """The result of one call, a dict with the original library's keys.

    ``stdout``/``stderr`` (str, stripped like the original's) decode the
    chunk's bytes as UTF-8, replacing invalid bytes with U+FFFD; the exact
    bytes are on ``stdout_bytes``/``stderr_bytes``. ``return_code`` is 0 on
    success, 1 after a Lua error and n after ``os.exit(n)``; ``success`` is
    ``return_code == 0``. ``values`` holds the chunk's returned values as
    Python objects (see :mod:`pylua_bioxen_vm_lib.values`) and ``error`` the
    Lua error message without traceback (None on success).
    """

    stdout_bytes: bytes
    stderr_bytes: bytes
    truncated: bool

    def __repr__(self) -> str:
        return f"ExecResult({dict.__repr__(self)})"


def result_from(ptr: ctypes._Pointer[_ffi.Result]) -> ExecResult:
    """Turn a C result into an ExecResult and free the C result."""
    try:
        r = ptr.contents
        n_out, n_err, n_val, n_msg = r.stdout_len, r.stderr_len, r.values_len, r.error_len
        # One copy of the block holding all four buffers (see bioxen.h).
        block = ctypes.string_at(r.stdout_data, n_out + n_err + n_val + n_msg + 4)
        rc, success, truncated = r.return_code, bool(r.success), bool(r.truncated)
    finally:
        _ffi.result_free(ptr)
    out = block[:n_out]
    i = n_out + 1
    err = block[i : i + n_err]
    i += n_err + 1
    values = decode(block[i : i + n_val])
    i += n_val + 1
    message = block[i : i + n_msg]
    res = ExecResult(
        stdout=out.decode("utf-8", "replace").strip(),
        stderr=err.decode("utf-8", "replace").strip(),
        return_code=rc,
        success=success,
        values=values,
        error=message.decode("utf-8", "replace") if message else None,
    )
    res.stdout_bytes = out
    res.stderr_bytes = err
    res.truncated = truncated
    return res


class _PendingCall:
    """One async call (bioxen_vm_exec_async_v2, a session's
    bioxen_session_execute_async_v2) waiting for its callback."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[ExecResult] = self.loop.create_future()
        self.handle = ctypes.c_uint64()  # the call handle (bioxen_call), for cancelling

    async def wait(self) -> ExecResult:
        """The call's result. Cancelling the awaiting task (``task.cancel()``,
        ``asyncio.wait_for``'s timeout) stops the chunk as Ctrl-C stops a
        blocking call: the VM keeps its state and is free for the next call;
        the chunk's own outcome is dropped."""
        try:
            return await self.future
        except asyncio.CancelledError:
            _ffi.call_interrupt(self.handle.value)  # BIOXEN_E_BADHANDLE once finished: harmless
            raise


class _PendingCalls:
    """Futures keyed by the userdata integer handed to the C callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 1
        self._calls: Dict[int, _PendingCall] = {}

    def new(self) -> _PendingCall:
        with self._lock:
            key = self._next
            self._next += 1
            call = _PendingCall(key)
            self._calls[key] = call
        return call

    def drop(self, key: int) -> Optional[_PendingCall]:
        with self._lock:
            return self._calls.pop(key, None)


pending_calls = _PendingCalls()


class AsyncCallOrder:
    """Hands a VM's or a session's async calls to the core in the order they
    were made. The core queues calls in the order they reach it; a call that
    must first wait (for the engine to start, in an executor thread) would
    let a later call overtake it ("0,2,3,4,1,5," for six calls). So each
    call issues its chunk inside ``turn()``, which waits until the call made
    before it on the same loop has issued its own: a chain of futures, one
    per event loop (a call from another loop, in another thread, neither
    waits for this loop's calls nor cuts their chain). Cancelling a waiting
    call does not break the chain."""

    def __init__(self) -> None:
        # Each loop's last call; only that loop's thread changes its entry.
        self._tails: Dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        before = self._tails.get(loop)
        if before is not None and before.done():
            before = None
        issued: asyncio.Future[None] = loop.create_future()
        self._tails[loop] = issued
        for other in [other for other in list(self._tails) if other.is_closed()]:
            self._tails.pop(other, None)  # closed with a call in line: its chain is gone
        try:
            if before is not None:
                await asyncio.shield(before)  # cancelling this call does not cancel the one before
            yield
        finally:
            if before is not None and not before.done():
                # Cancelled while waiting: the next call still waits for the
                # one before this one (released now, it overtook that one).
                before.add_done_callback(lambda _: self._release(loop, issued))
            else:
                self._release(loop, issued)

    def _release(self, loop: asyncio.AbstractEventLoop, issued: asyncio.Future[None]) -> None:
        issued.set_result(None)
        if self._tails.get(loop) is issued:
            del self._tails[loop]  # holds no loop once its chain is through


def _settle(future: asyncio.Future[ExecResult], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


@_ffi.DONE_FN
def on_exec_done(userdata: Optional[int], status: int, result: Any, message: bytes) -> None:
    call = pending_calls.drop(userdata or 0)
    if call is None:
        if result:
            _ffi.result_free(result)
        return
    outcome: Any
    if status == _ffi.OK:
        outcome = result_from(result)
    else:
        cls = _ffi.exception_class(status)
        outcome = cls(message.decode("utf-8", "replace"), code=status)
    with contextlib.suppress(RuntimeError):  # the loop may be closed
        call.loop.call_soon_threadsafe(_settle, call.future, outcome)


def code_bytes(code: Any, what: str = "Lua code") -> bytes:
    """str (UTF-8; surrogate escapes give their bytes back), bytes,
    bytearray or memoryview -> bytes. ArgumentTypeError for another type;
    InvalidArgumentError for a str with a lone surrogate, which has no
    UTF-8 form (a bare UnicodeEncodeError is no LuaVMError)."""
    if isinstance(code, str):
        try:
            return code.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as err:
            raise exc.InvalidArgumentError(
                f"{what} is not valid UTF-8: {err.object[err.start]!r} at offset {err.start} is a lone surrogate",
                code=_ffi.E_INVALID,
            ) from None
    if isinstance(code, (bytes, bytearray, memoryview)):
        return bytes(code)
    raise exc.ArgumentTypeError(f"{what} must be str or bytes, not {type(code).__name__}")


def encode_code(code: Any) -> bytes:
    data = code_bytes(code)
    if not data.strip():
        raise exc.InvalidArgumentError("Lua code is empty", code=_ffi.E_INVALID)
    _reject_nul(data, "Lua code")
    return data


def _reject_nul(data: bytes, what: str) -> None:
    """InvalidArgumentError (a ValueError) when data holds a NUL byte."""
    if b"\x00" in data:
        raise exc.InvalidArgumentError(f"{what} contains a NUL byte at offset {data.index(0)}", code=_ffi.E_INVALID)


def _check_memory_limit(limit: Optional[int]) -> int:
    """memory_limit -> bioxen_vm_options.max_memory_bytes (0 default, -1 none).

    None keeps the default (1 GiB); 0 and any limit of 2**63 bytes or more
    (past what the core's int64 can hold) mean no limit; a negative limit
    raises InvalidArgumentError (a ValueError)."""
    if limit is None:
        return 0
    n = _byte_count(limit, "memory_limit", "a number of bytes, 0 for no limit, or None")
    return -1 if n == 0 or limit > INT64_MAX else n


def _allowed_dirs(paths: Any) -> List[str]:
    """allowed_paths -> absolute directory names. One path (str, bytes or
    os.PathLike) is one directory, not a sequence of one-letter names; a
    relative path is made absolute against the current directory now. The
    core takes the list ':'-separated, so a path with ':' (which it would
    split into other directories) or a NUL byte raises
    InvalidArgumentError."""
    if paths is None:
        return []
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    elif not isinstance(paths, collections.abc.Iterable):
        # A bare TypeError ("'int' object is not iterable") is no LuaVMError.
        raise exc.ArgumentTypeError(f"allowed_paths must be a path or a sequence of paths, not {type(paths).__name__}")
    out = []
    for p in paths:
        if not isinstance(p, (str, bytes, os.PathLike)):
            raise exc.ArgumentTypeError(f"allowed_paths must hold paths, not {type(p).__name__}")
        if not os.fspath(p):
            # os.path.abspath("") is the current directory: an unset
            # setting read as "" opened all of it to sandboxed code.
            raise exc.InvalidArgumentError("allowed_paths holds an empty path (name a directory)", code=_ffi.E_INVALID)
        path = os.path.abspath(os.fsdecode(p))
        _reject_nul(os.fsencode(path), f"allowed path {path!r}")
        if ":" in path:
            raise exc.InvalidArgumentError(
                f"allowed path {path!r} contains ':', which separates directories in the core's list",
                code=_ffi.E_INVALID,
            )
        out.append(path)
    return out


def _byte_count(value: Optional[int], name: str, what: str = "a number of bytes or None") -> int:
    """max_output_bytes/max_source_bytes -> int64 for the core (0: default);
    values past the int64 range are clamped to its maximum instead of
    wrapping around. A non-int raises ArgumentTypeError ("name must be
    what"), a negative number InvalidArgumentError."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise exc.ArgumentTypeError(f"{name} must be {what}, not {type(value).__name__}")
    if value < 0:
        raise exc.InvalidArgumentError(f"{name} must not be negative, got {value!r}")
    return min(value, INT64_MAX)


def _seconds(value: Any, name: str) -> None:
    """Check a number of seconds: TypeError for a non-number, and
    InvalidArgumentError (a ValueError) for NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise exc.ArgumentTypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if isinstance(value, float) and math.isnan(value):
        raise exc.InvalidArgumentError(f"{name} must be a number of seconds, not NaN")


def timeout_ms(timeout: Optional[float], name: str = "timeout") -> int:
    """Seconds -> the milliseconds of the C API, where 0 means no limit.

    None, ``math.inf`` and any time too long for the core to count (over
    MAX_TIMEOUT_MS, about 292 years) give 0: no limit. A timeout must
    otherwise be positive: 0, a negative number or NaN raises
    InvalidArgumentError (a ValueError); a non-number raises TypeError. A
    positive timeout under a millisecond counts as one millisecond."""
    if timeout is None:
        return 0
    _seconds(timeout, name)
    if timeout <= 0:
        raise exc.InvalidArgumentError(f"{name} must be positive, got {timeout!r}")
    ms = timeout * 1000
    if ms > MAX_TIMEOUT_MS:  # inf too
        return 0
    return max(1, int(round(ms)))


def finite_seconds(value: Any, name: str = "timeout") -> float:
    """A positive, finite number of seconds, for the core's remote calls
    (XAPI, SSH), which otherwise take 0 or less as their 5-minute default
    and cannot encode NaN or infinity: ArgumentTypeError for a non-number,
    InvalidArgumentError for anything else out of range."""
    _seconds(value, name)
    if not value > 0 or value * 1000 > MAX_TIMEOUT_MS:
        raise exc.InvalidArgumentError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def wait_ms(timeout: Optional[float], name: str = "timeout") -> int:
    """Seconds -> milliseconds for a C call that waits (where 0 means do not
    wait): 0 and positive numbers are accepted, anything over MAX_TIMEOUT_MS
    (``math.inf`` too) is clamped to it; None, a negative number or NaN
    raises InvalidArgumentError, another non-number TypeError."""
    if timeout is None:
        raise exc.InvalidArgumentError(f"{name} must be a number of seconds >= 0, not None")
    _seconds(timeout, name)
    if timeout < 0:
        raise exc.InvalidArgumentError(f"{name} must be a number of seconds >= 0, got {timeout!r}")
    ms = timeout * 1000
    if ms > MAX_TIMEOUT_MS:
        return MAX_TIMEOUT_MS
    return int(ms)


# -- output callbacks must not call back into their own VM -------------------
# An output callback runs on the core's thread that runs the chunk, while the
# chunk holds its VM: a call into the same VM (or session) that waits for the
# VM would wait forever. The thread marks which VM it delivers for, so such a
# call raises ReentrantCallError instead.
_delivering = threading.local()


@contextlib.contextmanager
def delivering_for(vm: BasicLuaVM) -> Iterator[None]:
    """Mark the calling thread as running an output callback of ``vm``."""
    outer = getattr(_delivering, "vm", None)
    _delivering.vm = vm
    try:
        yield
    finally:
        _delivering.vm = outer


def check_not_delivering(vm: BasicLuaVM, what: str) -> None:
    """Raise ReentrantCallError when the calling thread is running an output
    callback of ``vm`` (a blocking call into ``vm`` would deadlock)."""
    if getattr(_delivering, "vm", None) is vm:
        raise exc.ReentrantCallError(
            f"{what} was called from an output callback of VM {vm.vm_id!r}: it would wait for the chunk "
            "that is waiting for the callback (a deadlock). Call it from another thread or after the "
            "callback returns; in a callback only send_input, interrupt, is_busy, has_pending_input and "
            "detach may be used on the same session."
        )


# -- per-VM loggers -----------------------------------------------------------
# A VM logs through logging.getLogger("pylua_bioxen_vm_lib.vm.<id>"), which
# the logging module keeps for good: a VM made per request with a fresh id
# left a logger behind each time. The last VM of an id to go forgets its
# logger, unless someone configured it (a level, a handler, a filter).
_loggers_lock = threading.Lock()
_logger_users: Dict[str, int] = {}
# Names released by __del__, which takes no lock (the garbage collector may
# run it on a thread inside vm_logger); the next vm_logger or release
# handles them.
_loggers_dropped: collections.deque[str] = collections.deque()


def vm_logger(name: str) -> logging.Logger:
    """logging.getLogger(name), counted as held by one more VM."""
    with _loggers_lock:
        _drain_dropped_locked()
        _logger_users[name] = _logger_users.get(name, 0) + 1
    return logging.getLogger(name)


def release_vm_logger(name: str) -> None:
    """A VM holding logger name is closed: forget the logger when no VM
    holds it any more and nobody configured it."""
    with _loggers_lock:
        _drain_dropped_locked()
        _release_locked(name)


def _drain_dropped_locked() -> None:
    while _loggers_dropped:
        _release_locked(_loggers_dropped.popleft())


def _release_locked(name: str) -> None:
    users = _logger_users.get(name, 0) - 1
    if users > 0:
        _logger_users[name] = users
        return
    _logger_users.pop(name, None)
    loggers = logging.Logger.manager.loggerDict
    with getattr(logging, "_lock", None) or contextlib.nullcontext():
        log = loggers.get(name)
        if not isinstance(log, logging.Logger) or log.level or log.handlers or log.filters or not log.propagate:
            return
        below = name + "."
        if any(other.startswith(below) for other in loggers):
            return  # a logger below has it as its parent
        del loggers[name]
        # The placeholders getLogger made for the parts of a dotted id.
        parent = name.rpartition(".")[0]
        while isinstance(loggers.get(parent), logging.PlaceHolder):
            holder = loggers[parent]
            assert isinstance(holder, logging.PlaceHolder)
            holder.loggerMap.pop(log, None)
            if holder.loggerMap:
                break
            del loggers[parent]
            parent = parent.rpartition(".")[0]


# -- shutdown ---------------------------------------------------------------
# VMs holding an engine handle, so that they can be closed at interpreter exit
# while the core's threads can still call into Python (output callbacks and
# async completions need the GIL, which threads other than the main one cannot
# take once the interpreter is finalizing: a close that waits for such a
# thread would never return).
_live_lock = threading.Lock()
_live_vms: weakref.WeakSet[BasicLuaVM] = weakref.WeakSet()


def _track(vm: BasicLuaVM) -> None:
    with _live_lock:
        _live_vms.add(vm)


def live_vms() -> List[BasicLuaVM]:
    """The VMs that hold an engine handle now."""
    with _live_lock:
        return [vm for vm in list(_live_vms) if vm._handle]


def close_all_at_exit() -> None:
    """atexit hook: close every VM still holding an engine handle (and so
    its sessions) before the interpreter starts finalizing. Nothing in a
    forked child: the VMs there are the parent's."""
    if _ffi.forked:
        return
    for vm in live_vms():
        try:
            vm.close()
        except Exception as err:  # exit must go on
            logger.debug("closing VM %r at exit failed: %s", vm.vm_id, err)


atexit.register(close_all_at_exit)


def close_from_finalizer(close: Any, handle: int) -> None:
    """Close a handle for a __del__: at once, except on a core thread (one
    that runs an output callback or an async completion), where the object
    can die when the callback drops its last reference. Closing there
    would wait for the chunk that waits for this very callback (a session
    closed from its own delivery never returned; a VM waited CloseGrace),
    so the close runs on a new thread instead. Nothing while the
    interpreter finalizes: the process is exiting, and the atexit hook
    closed every VM open at that time already."""
    if sys.is_finalizing():
        return
    if isinstance(threading.current_thread(), threading._DummyThread):
        threading.Thread(target=close, args=(handle,), name="pylua-close", daemon=True).start()
        return
    close(handle)


def resolve_engine(engine: Optional[str], lua_executable: Optional[str]) -> str:
    """Pick the engine: explicit ``engine`` wins; otherwise a ``lua_executable``
    other than the default "lua" asks for the process engine; otherwise the
    embedded engine."""
    if engine is not None:
        if engine not in ENGINES:
            raise exc.InvalidArgumentError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
        return engine
    if lua_executable and lua_executable != DEFAULT_LUA_EXECUTABLE:
        return "process"
    return "embedded"


class BasicLuaVM:
    """A Lua VM on this machine.

    ``engine="embedded"`` (the default) runs gopher-lua, a Lua 5.1
    interpreter inside this process: no Lua installation needed.
    ``engine="process"`` runs ``lua_executable`` (``"lua5.4"``, ``"luajit"``,
    a path ...) as a child process. Without ``engine``, passing a
    ``lua_executable`` other than ``"lua"`` selects the process engine.

    With ``persistent=False`` (the default) every call starts from a clean
    Lua environment, as each call of the original library was a new
    process; with ``persistent=True`` globals survive across calls.

    ``sandbox=True`` (the default) runs code in the allow-listed environment
    of docs/sandbox.md: no shell, no process control, files only under
    ``allowed_paths`` (a directory or a list of them, made absolute when
    the VM is created; a path with ':' raises InvalidArgumentError) and the
    package environment (read-only use);
    ``sandbox=False`` is for trusted code and gives the whole standard
    library.

    Limits (docs/sandbox.md): ``memory_limit`` bounds the memory of the VM in
    bytes (default 1 GiB; 0, or 2**63 and more, for none; negative raises
    InvalidArgumentError): the embedded engine accounts what its Lua state
    holds, the process engine sets the interpreter's address-space limit;
    past it a call raises LuaMemoryError and the VM's Lua state is reset.
    ``cpu_limit`` bounds the CPU time of each call in seconds (default none;
    ``math.inf`` or more than about 292 years is none too; 0, negative or NaN
    raise InvalidArgumentError), independent of the wall-clock ``timeout`` of
    a call: past it the call raises CPULimitError (a VMTimeoutError). Neither
    can be caught or escaped by the Lua code. ``max_output_bytes`` and
    ``max_source_bytes`` past 2**63 - 1 are clamped to it.

    The ``timeout`` of a call is in seconds: None (the default),
    ``math.inf`` or more than about 292 years mean no timeout; 0, negative or
    NaN raise InvalidArgumentError (a ValueError).

    The VM starts on first use (or with :meth:`start`); :meth:`stop` stops it
    (``start()`` starts it again, with a clean state); :meth:`close` and
    leaving a ``with`` block stop it for good. VMs still open when the
    interpreter exits are closed by an ``atexit`` hook (so later ``atexit``
    handlers find them closed). Methods are thread-safe; calls on one VM run
    one at a time.
    """

    vm_type = "basic"

    def __init__(
        self,
        vm_id: str = "default",
        *,
        engine: Optional[str] = None,
        lua_executable: str = DEFAULT_LUA_EXECUTABLE,
        persistent: bool = False,
        debug_mode: bool = False,
        networked: bool = False,
        max_output_bytes: Optional[int] = None,
        max_source_bytes: Optional[int] = None,
        environment: Optional[str] = None,
        sandbox: bool = True,
        allowed_paths: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
        memory_limit: Optional[int] = None,
        cpu_limit: Optional[float] = None,
    ) -> None:
        if not isinstance(vm_id, str):
            raise exc.ArgumentTypeError(f"vm_id must be a non-empty string, not {type(vm_id).__name__}")
        if not vm_id:
            raise exc.InvalidArgumentError("vm_id must be a non-empty string, not ''")
        if lua_executable is not None and not isinstance(lua_executable, (str, os.PathLike)):
            raise exc.ArgumentTypeError(f"lua_executable must be a str or a path, not {type(lua_executable).__name__}")
        if isinstance(lua_executable, os.PathLike):
            lua_executable = os.fspath(lua_executable)
            if not isinstance(lua_executable, str):
                raise exc.ArgumentTypeError("lua_executable must be a str or a str path, not a bytes path")
        if lua_executable:
            # The core takes a C string: what follows a NUL named no program.
            _reject_nul(os.fsencode(lua_executable), f"lua_executable {lua_executable!r}")
        self.vm_id = vm_id
        self.name = vm_id
        self.engine = resolve_engine(engine, lua_executable)
        self.lua_executable = lua_executable or DEFAULT_LUA_EXECUTABLE
        self.persistent = bool(persistent)
        self.debug_mode = bool(debug_mode)
        self.networked = bool(networked)
        self.environment = _packages.check_env_name(environment) if environment is not None else None
        self.sandbox = bool(sandbox)
        self.allowed_paths = _allowed_dirs(allowed_paths)
        self._max_output = _byte_count(max_output_bytes, "max_output_bytes")
        self._max_source = _byte_count(max_source_bytes, "max_source_bytes")
        self._memory = _check_memory_limit(memory_limit)
        self.memory_limit = memory_limit
        self.cpu_limit = cpu_limit
        self._cpu_ms = timeout_ms(cpu_limit, "cpu_limit")
        self._handle = 0
        self._closed = False
        self._lock = threading.Lock()
        # execute_async hands its chunks to the core in call order.
        self._async_order = AsyncCallOrder()
        # The InteractiveSessions opened on this VM: stopping its engine
        # ends them, and stop() ends their stream_output iterators.
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._log = vm_logger(f"pylua_bioxen_vm_lib.vm.{vm_id}")
        self._log_held = True  # released by close() or __del__

    def __repr__(self) -> str:
        if not hasattr(self, "_closed"):  # its __init__ raised
            return f"<{type(self).__name__} (not made)>"
        state = "closed" if self._closed else ("running" if self._handle else "stopped")
        return f"<{type(self).__name__} {self.vm_id!r} engine={self.engine!r} persistent={self.persistent} {state}>"

    # -- lifecycle -------------------------------------------------------
    def start(self) -> BasicLuaVM:
        """Start the engine (a no-op when running). Raises LuaNotFoundError
        when the process engine's interpreter is missing."""
        with self._lock:
            self._start_locked()
        return self

    def _start_locked(self) -> int:
        if self._closed:
            raise exc.VMClosedError(f"VM {self.vm_id!r} is closed")
        if self._handle:
            return self._handle
        opts = _ffi.VMOptions()
        opts.size = ctypes.sizeof(_ffi.VMOptions)
        opts.engine = self.engine.encode()
        opts.interpreter = os.fsencode(self.lua_executable)
        opts.name = self.vm_id.encode("utf-8", "replace")
        opts.persistent = 1 if self.persistent else 0
        opts.max_output_bytes = self._max_output
        opts.max_source_bytes = self._max_source
        opts.max_memory_bytes = self._memory
        opts.cpu_limit_ms = self._cpu_ms
        # `require` sees a package environment: the one named, else the
        # default environment when it exists. (Not in an XCP-ng VM, whose
        # packages are installed in the guest: install_package.)
        env = self.environment or _packages.DEFAULT_ENV
        paths = None if self.engine == "xcpng" else _packages.env_paths(env, self.engine, self.lua_executable)
        if paths is None and self.environment is not None:
            raise exc.EnvironmentNotFoundError(f"no package environment {self.environment!r}")
        if paths:
            opts.package_path = paths["path"].encode()
            opts.package_cpath = paths["cpath"].encode()
        opts.trusted = 0 if self.sandbox else 1
        # Sandboxed require may load modules from any package environment
        # (set_environment binds one at run time).
        roots = str(_packages.home() / "envs")
        if ":" in roots:
            # The core splits module_roots at ':': "/srv/a:b" let sandboxed
            # require load from all of /srv/a.
            raise exc.InvalidArgumentError(
                f"the package home {str(_packages.home())!r} holds ':', which the sandbox's module roots cannot "
                "hold (set PYLUA_BIOXEN_HOME to a path without ':')"
            )
        opts.module_roots = roots.encode()
        config = self._engine_config()
        if config:
            opts.config_json = config
        if self.allowed_paths:
            opts.allowed_paths = os.fsencode(":".join(self.allowed_paths))
        handle = ctypes.c_uint64()
        _track(self)
        try:
            status = _ffi.vm_open(ctypes.byref(opts), ctypes.byref(handle))
            if status == _ffi.OK:
                self._handle = handle.value
        except BaseException:
            # Ctrl-C during a long start (an XCP-ng VM's boot, an
            # interpreter's start) raises KeyboardInterrupt as vm_open
            # returns: close what it opened instead of leaking it.
            if handle.value and self._handle != handle.value:
                _ffi.vm_close(handle.value)
            raise
        _ffi.check(status, f"VM {self.vm_id!r}")
        self._log.debug("started (%s engine)", self.engine)
        return self._handle

    def _engine_config(self) -> Optional[bytes]:
        """Engine-specific configuration (JSON) for bioxen_vm_open."""
        return None

    def _running_handle(self) -> int:
        with self._lock:
            return self._start_locked()

    async def _running_handle_async(self) -> int:
        """_running_handle for a coroutine: starting the engine (an
        interpreter process, an XCP-ng VM's boot) runs in the loop's default
        executor, so that the event loop is not held up meanwhile."""
        handle = self._handle
        if handle and not self._closed:
            return handle
        return await asyncio.get_running_loop().run_in_executor(None, self._running_handle)

    def stop(self) -> None:
        """Stop the engine; its Lua state is gone. Calling it twice is harmless.
        A call running on another thread ends with VMClosedError (or
        completes first, as the core decides)."""
        if _ffi.forked:
            # The engine is the parent's, and so may be the lock: another
            # thread of the parent may have held it at fork().
            self._handle = 0
            return
        check_not_delivering(self, "stop()")
        handle = 0
        sessions: List[Any] = []
        try:
            with self._lock:
                handle, self._handle = self._handle, 0
                sessions = list(self._sessions)
        finally:
            # Also when a Ctrl-C lands right after the handle was taken: the
            # handle is closed, not leaked.
            if handle:
                try:
                    _ffi.check(_ffi.vm_close(handle), f"VM {self.vm_id!r}")
                    self._log.debug("stopped")
                finally:
                    # Their core sessions ended with the engine: so do
                    # their stream_output iterators (they waited forever).
                    for session in sessions:
                        session._vm_stopped(handle)

    def close(self) -> None:
        """Stop the VM for good; later calls raise VMClosedError.

        Atomic with respect to starting: once the VM is marked closed (under
        the lock that starting takes) no call can start a new engine, so a
        call racing close() on another thread either completes before the
        engine is closed or raises VMClosedError; the lock is not held while
        the engine closes."""
        if _ffi.forked:  # see stop()
            self._closed = True
            self.stop()
            return
        check_not_delivering(self, "close()")
        with self._lock:
            self._closed = True
            release, self._log_held = self._log_held, False
        try:
            self.stop()
        finally:
            if release:
                release_vm_logger(self._log.name)

    cleanup = close

    @property
    def closed(self) -> bool:
        return self._closed

    def is_running(self) -> bool:
        return bool(self._handle) and not self._closed

    def __enter__(self) -> BasicLuaVM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __copy__(self) -> BasicLuaVM:
        raise exc.ArgumentTypeError(f"{type(self).__name__} cannot be copied: it owns a live engine (make another VM)")

    def __deepcopy__(self, memo: Any) -> BasicLuaVM:
        return self.__copy__()

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise exc.ArgumentTypeError(f"{type(self).__name__} cannot be pickled: it owns a live engine")

    def __del__(self) -> None:
        if getattr(self, "_log_held", False):
            self._log_held = False
            _loggers_dropped.append(self._log.name)  # no lock here: see _loggers_dropped
        handle = getattr(self, "_handle", 0)
        if not handle:
            return
        with contextlib.suppress(Exception):
            # Not while finalizing: closing may wait for a core thread that
            # is blocked calling into Python (an output callback), which it
            # can no longer do; the process is exiting, leave the handle to it.
            close_from_finalizer(_ffi.vm_close, handle)

    # -- execution -------------------------------------------------------
    def execute_string(self, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """Run a chunk of Lua source. Values it returns are printed to stdout
        the way the Lua 5.4 REPL prints them (``return 2 + 2`` gives "4") and
        are also in ``result["values"]``."""
        return self._execute(lua_code, timeout, print_results=True)

    def _execute(self, lua_code: Code, timeout: Optional[float], *, print_results: bool) -> ExecResult:
        data = encode_code(lua_code)
        ms = timeout_ms(timeout)
        check_not_delivering(self, "execute_string()")
        handle = self._running_handle()
        out = _ffi.ResultPtr()
        flags = _ffi.EXEC_PRINT_RESULTS if print_results else 0
        status = _ffi.call_blocking(lambda: _ffi.vm_exec(handle, data, len(data), ms, flags, ctypes.byref(out)), out)
        if status != _ffi.OK:
            raise self._error(status)
        return result_from(out)

    execute_temp_script = execute_string

    async def execute_async(self, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """``await vm.execute_async(code)``: run a chunk without blocking the
        event loop. The core runs it and calls back when done; no Python
        thread is used per call. A VM's chunks run one at a time, in the
        order the calls were made. Cancelling the task (``asyncio.wait_for``'s
        timeout too) stops the chunk, and the VM keeps its state, as after
        Ctrl-C."""
        data = encode_code(lua_code)
        ms = timeout_ms(timeout)
        async with self._async_order.turn():
            handle = await self._running_handle_async()
            future = pending_calls.new()
            flags = _ffi.EXEC_PRINT_RESULTS
            out = ctypes.byref(future.handle)
            status = _ffi.vm_exec_async(handle, data, len(data), ms, flags, on_exec_done, future.key, out)
        if status != _ffi.OK:
            pending_calls.drop(future.key)
            raise self._error(status)
        return await future.wait()

    def execute_file(self, file_path: Union[str, os.PathLike[str]], timeout: Optional[float] = None) -> ExecResult:
        """Run a Lua script file, like ``lua file``: a #! first line is
        skipped and returned values are not printed (but are in "values").
        A path with a NUL byte raises InvalidArgumentError (a ValueError, as
        ``open()`` raises)."""
        if not isinstance(file_path, (str, bytes, os.PathLike)):
            raise exc.ArgumentTypeError(f"file_path must be a path, not {type(file_path).__name__}")
        path = os.fsencode(file_path)
        _reject_nul(path, f"file path {file_path!r}")
        ms = timeout_ms(timeout)
        check_not_delivering(self, "execute_file()")
        handle = self._running_handle()
        out = _ffi.ResultPtr()
        status = _ffi.call_blocking(lambda: _ffi.vm_exec_file(handle, path, ms, ctypes.byref(out)), out)
        if status != _ffi.OK:
            raise self._error(status)
        return result_from(out)

    def _error(self, status: int) -> exc.LuaVMError:
        err = _ffi.error_for(status, f"VM {self.vm_id!r}")
        if status in (_ffi.E_BADHANDLE, _ffi.E_CLOSED):
            err = exc.VMClosedError(f"VM {self.vm_id!r} is stopped or closed", code=status)
        return err

    def get_info(self) -> Dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "vm_type": self.vm_type,
            "engine": self.engine,
            "lua_executable": self.lua_executable,
            "persistent": self.persistent,
            "sandbox": self.sandbox,
            "networked": self.networked,
            "running": self.is_running(),
            "closed": self._closed,
        }
