"""ctypes declarations of libbioxen's C ABI (include/bioxen.h).

This module is private. It finds the shared library, declares every function
with explicit argument and result types, turns status codes into exceptions
and routes the core's log lines into the ``logging`` module. ctypes releases
the GIL around every call, so Lua code runs without holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import os
import signal
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint64,
    c_void_p,
)
from ctypes.util import find_library
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Type

from . import exceptions as exc

logger = logging.getLogger("pylua_bioxen_vm_lib")

# Status codes (bioxen.h).
OK = 0
ERROR = 1
E_INVALID = 2
E_BADHANDLE = 3
E_TIMEOUT = 4
E_LUA_NOT_FOUND = 5
E_FILE_NOT_FOUND = 6
E_ENGINE = 7
E_TOOLARGE = 8
E_UNSUPPORTED = 9
E_NOMEM = 10
E_RANGE = 11
E_CLOSED = 12
E_AUTH = 13
E_CONNECTION = 14
E_HOSTKEY = 15
E_CPU = 16

EXEC_PRINT_RESULTS = 1

_EXCEPTIONS: Dict[int, Type[exc.LuaVMError]] = {
    E_INVALID: exc.InvalidArgumentError,
    E_BADHANDLE: exc.VMClosedError,
    E_CLOSED: exc.VMClosedError,
    E_TIMEOUT: exc.VMTimeoutError,
    E_LUA_NOT_FOUND: exc.LuaNotFoundError,
    E_FILE_NOT_FOUND: exc.LuaFileNotFoundError,
    E_ENGINE: exc.LuaProcessError,
    E_TOOLARGE: exc.CodeTooLargeError,
    E_UNSUPPORTED: exc.FeatureNotAvailableError,
    E_NOMEM: exc.LuaMemoryError,
    E_AUTH: exc.VMAuthenticationError,
    E_CONNECTION: exc.XCPngConnectionError,
    E_HOSTKEY: exc.HostKeyError,
    E_CPU: exc.CPULimitError,
}


class VMOptions(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("engine", c_char_p),
        ("interpreter", c_char_p),
        ("name", c_char_p),
        ("persistent", c_int),
        ("max_source_bytes", c_int64),
        ("max_output_bytes", c_int64),
        ("package_path", c_char_p),
        ("package_cpath", c_char_p),
        ("trusted", c_int),
        ("allowed_paths", c_char_p),
        ("config_json", c_char_p),
        ("module_roots", c_char_p),
        ("max_memory_bytes", c_int64),
        ("cpu_limit_ms", c_int64),
    ]


class Result(Structure):
    _fields_ = [
        ("stdout_data", c_void_p),
        ("stdout_len", c_size_t),
        ("stderr_data", c_void_p),
        ("stderr_len", c_size_t),
        ("values_json", c_void_p),
        ("values_len", c_size_t),
        ("error_message", c_void_p),
        ("error_len", c_size_t),
        ("return_code", c_int),
        ("success", c_int),
        ("truncated", c_int),
    ]


# The pointer type is made once and used everywhere: ctypes caches
# POINTER(Result), but importing ctypes in a subinterpreter clears that cache
# (Python 3.11), and a fresh POINTER(Result) is then a different type from
# the one in the declarations below (ctypes.ArgumentError on every call).
ResultPtr = POINTER(Result)

LOG_FN = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
OUTPUT_FN = CFUNCTYPE(None, c_void_p, c_int, POINTER(ctypes.c_char), c_size_t)
DONE_FN = CFUNCTYPE(None, c_void_p, c_int, ResultPtr, c_char_p)

STDOUT = 1
STDERR = 2


def _in_subinterpreter() -> bool:
    """True in a subinterpreter (the private module that says so is
    _interpreters from Python 3.13, _xxsubinterpreters before)."""
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        return bool(mod.get_current() != mod.get_main())
    return False


if _in_subinterpreter():
    # ctypes' pointer types and the library's process-wide settings (the
    # log callback, the per-thread Ctrl-C pipe) are shared by every
    # interpreter: a copy of this package in a subinterpreter broke the main
    # interpreter's calls (ctypes.ArgumentError) and crashed the process
    # once the subinterpreter was destroyed (its log callback was called).
    raise ImportError("pylua_bioxen_vm_lib cannot be used in a subinterpreter; use it from the main interpreter")


def _find_library() -> str:
    env = os.environ.get("PYLUA_BIOXEN_LIB")
    if env:
        return env
    here = Path(__file__).resolve().parent / "libbioxen.so"
    if here.exists():
        return str(here)
    found = find_library("bioxen")
    if found:
        return found
    raise ImportError(
        "libbioxen.so was not found: it belongs inside the pylua_bioxen_vm_lib package "
        f"({here}); build it with `make build` or install the package with `pip install ./python`, "
        "or point PYLUA_BIOXEN_LIB at it"
    )


# The library is found at import (a missing one is an ImportError then) but
# loaded at the first call. Loading starts the Go runtime, whose threads a
# fork() does not copy: a program that imports this package at the top and
# uses it only in processes forked later (multiprocessing's default "fork"
# start method on Linux before Python 3.14: a Pool of workers each running
# Lua) must not have loaded it in the parent (see os.fork() below).
LIB_PATH = _find_library()
lib: Optional[ctypes.CDLL] = None
_load_lock = threading.Lock()
_loading = False  # set before the library is loaded (see _after_fork_in_child)
_specs: Dict[str, tuple] = {}  # Python name: (C name, argtypes, restype)


def _load() -> None:
    """Load the library and put its declared functions in place of the
    stubs (at most once; every thread's first call waits for it)."""
    global lib
    with _load_lock:
        if lib is not None:
            return
        if forked:  # a stub kept from before the fork: refuse as the rest do
            _refuse_in_child()
        global _loading
        _loading = True  # from here a fork copies a started runtime
        loaded = ctypes.CDLL(LIB_PATH)
        module = globals()
        for pyname, (cname, argtypes, restype) in _specs.items():
            fn = getattr(loaded, cname)
            fn.argtypes = argtypes
            fn.restype = restype
            module[pyname] = fn
        lib = loaded
        # The core only logs rare events (VM open/close, state replacement,
        # restarts), so it sends everything and Python's logging filters.
        set_core_log_level(logging.DEBUG)


def _declare(pyname: str, name: str, argtypes: list, restype: object) -> Callable:
    """A stub for the C function name, replaced by it at the first call of
    any function of the library."""
    _specs[pyname] = (name, argtypes, restype)

    def stub(*args: Any) -> Any:
        _load()
        return globals()[pyname](*args)

    stub.__name__ = pyname
    return stub


version = _declare("version", "bioxen_version", [], c_char_p)
version_number = _declare("version_number", "bioxen_version_number", [], c_int)
errmsg = _declare("errmsg", "bioxen_errmsg", [], c_char_p)
errstr = _declare("errstr", "bioxen_errstr", [c_int], c_char_p)
vm_open = _declare("vm_open", "bioxen_vm_open", [POINTER(VMOptions), POINTER(c_uint64)], c_int)
vm_close = _declare("vm_close", "bioxen_vm_close", [c_uint64], c_int)
vm_exec = _declare(
    "vm_exec",
    "bioxen_vm_exec",
    [c_uint64, c_char_p, c_size_t, c_int64, c_int, POINTER(ResultPtr)],
    c_int,
)
vm_exec_file = _declare("vm_exec_file", "bioxen_vm_exec_file", [c_uint64, c_char_p, c_int64, POINTER(ResultPtr)], c_int)
result_free = _declare("result_free", "bioxen_result_free", [ResultPtr], None)
vm_exec_async = _declare(
    "vm_exec_async",
    "bioxen_vm_exec_async_v2",
    [c_uint64, c_char_p, c_size_t, c_int64, c_int, DONE_FN, c_void_p, POINTER(c_uint64)],
    c_int,
)
call_interrupt = _declare("call_interrupt", "bioxen_call_interrupt", [c_uint64], c_int)
free = _declare("free", "bioxen_free", [c_void_p], None)
session_open = _declare("session_open", "bioxen_session_open", [c_uint64, POINTER(c_uint64)], c_int)
session_close = _declare("session_close", "bioxen_session_close", [c_uint64], c_int)
session_send = _declare("session_send", "bioxen_session_send", [c_uint64, c_char_p, c_size_t], c_int)
session_read = _declare(
    "session_read", "bioxen_session_read", [c_uint64, c_int, c_int64, POINTER(c_void_p), POINTER(c_size_t)], c_int
)
session_execute = _declare(
    "session_execute",
    "bioxen_session_execute",
    [c_uint64, c_char_p, c_size_t, c_int64, c_int, POINTER(ResultPtr)],
    c_int,
)
session_execute_async = _declare(
    "session_execute_async",
    "bioxen_session_execute_async_v2",
    [c_uint64, c_char_p, c_size_t, c_int64, c_int, DONE_FN, c_void_p, POINTER(c_uint64)],
    c_int,
)
session_wait = _declare("session_wait", "bioxen_session_wait", [c_uint64, c_int64, POINTER(c_int)], c_int)
session_status = _declare("session_status", "bioxen_session_status", [c_uint64, POINTER(c_int), POINTER(c_int)], c_int)
session_interrupt = _declare("session_interrupt", "bioxen_session_interrupt", [c_uint64], c_int)
session_set_listener = _declare(
    "session_set_listener", "bioxen_session_set_listener", [c_uint64, OUTPUT_FN, c_void_p], c_int
)
set_log_callback = _declare("set_log_callback", "bioxen_set_log_callback", [LOG_FN, c_void_p, c_int], c_int)
live_handles = _declare("live_handles", "bioxen_live_handles", [], c_int)
set_interrupt_fd = _declare("set_interrupt_fd", "bioxen_set_interrupt_fd", [c_int], c_int)
vm_install_package = _declare(
    "vm_install_package",
    "bioxen_vm_install_package",
    [c_uint64, c_char_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)],
    c_int,
)
remote = _declare("remote", "bioxen_remote", [c_char_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)], c_int)
packages = _declare("packages", "bioxen_packages", [c_char_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)], c_int)


# -- os.fork() -------------------------------------------------------------------
# The Go runtime inside the library does not survive fork(): its threads stay
# in the parent, so in the child a call into the core hangs (a call on an
# inherited embedded VM at once, any call once the parent had calls running).
# And the VMs the child inherits are the parent's: closing one there (at
# exit, by the garbage collector) killed the parent's interpreter process.
# In a forked child every function of the library is therefore replaced:
# the ones that release something do nothing (the resources are the
# parent's), every other one raises ForkedProcessError before reaching the
# core. This costs nothing in the parent.
_RELEASERS = frozenset({"vm_close", "session_close", "result_free", "free", "call_interrupt", "set_log_callback"})
forked = False


def _refuse_in_child(*_args: Any) -> int:
    raise exc.ForkedProcessError(
        "pylua_bioxen_vm_lib cannot be used in a process made by os.fork() from one that had loaded it: "
        "the Go runtime of libbioxen does not survive a fork, and the VMs inherited are the parent's. "
        "Use multiprocessing's 'spawn' or 'forkserver' start method, or exec a new program."
    )


def _release_in_child(*_args: Any) -> int:
    return OK


def _set_listener_in_child(handle: int, fn: Any, userdata: Any) -> int:
    if fn:  # setting a listener; removing one (a NULL function) is a release
        return _refuse_in_child()
    return OK


def _after_fork_in_child() -> None:
    global forked, _load_lock
    _load_lock = threading.Lock()  # another thread of the parent may have held it
    if not _loading:
        # Never loaded in the parent: the child loads its own at its first
        # call, and works.
        return
    forked = True
    module = globals()
    for name in _specs:  # the library's functions (or stubs, if loading was under way)
        module[name] = _release_in_child if name in _RELEASERS else _refuse_in_child
    module["session_set_listener"] = _set_listener_in_child


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- Ctrl-C during a blocking call ---------------------------------------------
# Python runs signal handlers in the main thread only, and only between its
# calls into C, so Ctrl-C during a long chunk would wait for the chunk to end.
# During a blocking call from the main thread, Python's signal wakeup fd is
# the write end of a pipe whose read end the library watches
# (bioxen_set_interrupt_fd): SIGINT stops the chunk (the VM keeps its state)
# and the KeyboardInterrupt is raised as the call returns.
_wakeup_w: Optional[int] = None  # the pipe's write end, once set up
_wakeup_failed = False


def _wakeup_fd() -> Optional[int]:
    """The write end of the interrupt pipe, set up on first use (main thread
    only); None where it cannot be: in a subinterpreter (whose copy of this
    module must not replace the main interpreter's pipe: the library's
    setting is per OS thread), without pipes, or when the library refused."""
    global _wakeup_w, _wakeup_failed
    if _wakeup_w is None and not _wakeup_failed:
        try:
            old = signal.set_wakeup_fd(-1)
        except ValueError:  # not the main interpreter's main thread
            _wakeup_failed = True
            return None
        if old != -1:
            signal.set_wakeup_fd(old)
        try:
            r, w = os.pipe()
        except OSError as err:
            logger.debug("no interrupt pipe, Ctrl-C waits for blocking calls: %s", err)
            _wakeup_failed = True
            return None
        os.set_blocking(w, False)
        if set_interrupt_fd(r) != OK:
            logger.debug("bioxen_set_interrupt_fd failed, Ctrl-C waits for blocking calls: %s", errmsg())
            os.close(r)
            os.close(w)
            _wakeup_failed = True
            return None
        os.close(r)  # the library reads its own duplicate
        _wakeup_w = w
    return _wakeup_w


def call_blocking(fn: Callable[[], int], out: Any) -> int:
    """Run ``fn()``, a blocking call that may fill ``out`` (a
    ``ResultPtr``), and return its status, with Ctrl-C able to stop
    it when called from the main thread. If an exception (the
    KeyboardInterrupt) is raised as the call returns, a result it handed
    out is freed. Another thread, a running asyncio loop (which may own
    the wakeup fd and then must see every signal; its tasks use
    execute_async, whose cancellation stops the chunk) or a wakeup fd set
    by someone else makes the plain call."""
    if threading.current_thread() is not threading.main_thread() or asyncio._get_running_loop() is not None:
        return fn()
    w = _wakeup_fd()
    if w is None:
        return fn()
    old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    if old != -1:
        signal.set_wakeup_fd(old)
        return fn()
    try:
        try:
            status = fn()
        finally:
            signal.set_wakeup_fd(-1)
        return status
    except BaseException:
        if out:
            result_free(out)
        raise


def exception_class(status: int) -> Type[exc.LuaVMError]:
    return _EXCEPTIONS.get(status, exc.LuaVMError)


def error_for(status: int, context: str = "") -> exc.LuaVMError:
    """The exception for a failed call; reads this thread's message."""
    raw = errmsg() or b""
    message = raw.decode("utf-8", "replace") or (errstr(status) or b"").decode()
    if context:
        message = f"{context}: {message}"
    return exception_class(status)(message, code=status)


def check(status: int, context: str = "") -> None:
    if status != OK:
        raise error_for(status, context)


# Core log lines go to the "pylua_bioxen_vm_lib.core" logger.
core_logger = logging.getLogger("pylua_bioxen_vm_lib.core")


@LOG_FN
def _on_log(_userdata: Optional[int], level: int, message: bytes) -> None:
    with contextlib.suppress(Exception):  # a logging handler must never unwind into Go
        core_logger.log(level, message.decode("utf-8", "replace"))


def json_call(fn: Callable, request: dict, context: str) -> Any:
    """Call a JSON-request function of the C ABI (bioxen_packages,
    bioxen_remote) and return the response's "result"."""
    import json

    for key, value in request.items():
        # A bytes or other non-JSON argument (a package name, a password):
        # the library's type error, naming it, not json's.
        if value is not None and not isinstance(value, (str, bool, int, float, list, dict)):
            from .exceptions import ArgumentTypeError

            raise ArgumentTypeError(f"{context}: {key} must be a str, not {type(value).__name__}")
    data = json.dumps(request).encode()
    out = c_void_p()
    size = c_size_t()
    status = fn(data, len(data), ctypes.byref(out), ctypes.byref(size))
    if status != OK:
        raise error_for(status, context)
    try:
        return json.loads(ctypes.string_at(out, size.value))["result"]
    finally:
        free(out)


def set_core_log_level(level: int) -> None:
    """Ask the core for log lines at level and above."""
    set_log_callback(_on_log, None, level)
