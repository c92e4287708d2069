"""Regressions of the Python layer found by review: close() racing a call,
wait() without a timeout, colliding table keys, edge-value timeouts and
limits, NUL bytes in script paths, hangs at interpreter exit and output
callbacks that call back into their own VM."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Iterator, List

import pylua_bioxen_vm_lib
import pytest
from pylua_bioxen_vm_lib import (
    BasicLuaVM,
    InteractiveSession,
    LuaBoolKey,
    LuaOpaque,
    LuaTableKey,
    VMManager,
    _ffi,
    create_vm,
)
from pylua_bioxen_vm_lib.exceptions import (
    ArgumentTypeError,
    InvalidArgumentError,
    LuaVMError,
    ReentrantCallError,
    SessionStateError,
    VMClosedError,
)

# Generous bound for anything that must simply not hang.
HANG = 60.0
# Lua that keeps a chunk busy for about `seconds` of CPU time, portably.
BUSY = "local t0 = os.clock() while os.clock() - t0 < {seconds} do end"


@pytest.fixture
def session(engine: tuple) -> Iterator[InteractiveSession]:
    kind, executable = engine
    with VMManager() as manager:
        yield manager.create_interactive_vm("reg", engine=kind, lua_executable=executable, auto_attach=False)


def run_script(source: str) -> subprocess.CompletedProcess:
    """Run Python source in a fresh interpreter that imports this package."""
    env = dict(os.environ)
    package_root = str(Path(pylua_bioxen_vm_lib.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )


# -- 1. close() racing a call on another thread ---------------------------------
def test_close_racing_calls_leaks_no_engine_and_fails_typed():
    gc.collect()
    before = _ffi.live_handles()
    leaked: List[str] = []
    wrong: List[BaseException] = []
    for i in range(150):
        vm = create_vm(f"race{i}")
        vm.start()
        stop = threading.Event()

        def worker(vm: BasicLuaVM = vm, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                try:
                    vm.execute_string("return 1")
                except VMClosedError:
                    return
                except BaseException as err:  # anything else is a defect
                    wrong.append(err)
                    return

        thread = threading.Thread(target=worker)
        thread.start()
        vm.close()
        # After close() returned no call can start the VM again.
        with pytest.raises(VMClosedError):
            vm.execute_string("return 1")
        stop.set()
        thread.join(HANG)
        assert not thread.is_alive()
        if vm._handle or vm.is_running():
            leaked.append(vm.vm_id)
    assert not wrong, wrong
    assert not leaked, f"{len(leaked)} closed VMs kept an engine: {leaked[:5]}"
    gc.collect()
    assert _ffi.live_handles() <= before


# -- 2. InteractiveSession.wait() without a timeout ----------------------------
def test_wait_without_timeout_waits_until_idle(session):
    session.send_input(BUSY.format(seconds=0.5) + " print('done')")
    assert session.wait() is True
    assert not session.is_busy()
    assert session.read_output(timeout=0) == "done\n"
    session.send_input(BUSY.format(seconds=0.3))
    assert session.wait(timeout=math.inf) is True
    assert not session.is_busy()


def test_wait_timeouts_are_checked(session):
    assert session.wait(timeout=HANG) is True  # idle already
    for bad in (0, -1, math.nan):
        with pytest.raises(InvalidArgumentError):
            session.wait(timeout=bad)


@pytest.mark.parametrize("end", ["terminate", "stop the VM"])
def test_wait_across_the_end_of_the_session_raises(session, end):
    # wait() returned True (idle) when the session ended while it waited,
    # as if the input it dropped had run.
    session.send_input("print('spin') while true do end\nprint('never')")
    assert session.read_output(timeout=HANG) == "spin\n"
    outcome: List[BaseException] = []

    def waiter() -> None:
        try:
            outcome.append(AssertionError(f"wait() returned {session.wait(timeout=HANG)!r}"))
        except BaseException as e:  # noqa: BLE001
            outcome.append(e)

    thread = threading.Thread(target=waiter)
    thread.start()
    if end == "terminate":
        session.terminate()
    else:
        session.vm.stop()
    thread.join(HANG)
    assert len(outcome) == 1 and isinstance(outcome[0], SessionStateError), outcome
    with pytest.raises(SessionStateError):
        session.wait(timeout=HANG)


# -- 3. table keys that Python's dict would merge --------------------------------
def test_boolean_and_number_keys_stay_apart(vm):
    one, zero, both = vm.execute_string(
        "return {[1] = 'a', [true] = 'b'}, {[0] = 'a', [false] = 'b'}, {[true] = 't', [false] = 'f', [1] = 1, [0] = 0}"
    )["values"]
    assert one == {1: "a", LuaBoolKey(True): "b"}
    assert zero == {0: "a", LuaBoolKey(False): "b"}
    assert both == {1: 1, 0: 0, LuaBoolKey(True): "t", LuaBoolKey(False): "f"}
    (half,) = vm.execute_string("return {[0] = 'a', [false] = 'b', [true] = 'c'}")["values"]
    assert half == {0: "a", LuaBoolKey(False): "b", True: "c"}
    # Without a colliding number key, booleans stay plain bools (as before).
    flags, mixed = vm.execute_string("return {[true] = 'yes', [false] = 'no'}, {[true] = 1, [2] = 'two', x = 3}")[
        "values"
    ]
    assert flags == {True: "yes", False: "no"}
    assert all(type(k) is bool for k in flags)
    assert mixed == {True: 1, 2: "two", "x": 3}
    # Common shapes are unchanged.
    seq, rec = vm.execute_string("return {10, 20, 30}, {a = 1, [5] = 'five'}")["values"]
    assert seq == [10, 20, 30]
    assert rec == {"a": 1, 5: "five"}


def test_table_keys_are_distinct_and_keep_their_contents(vm):
    (table,) = vm.execute_string("return {[{1, 2}] = 'a', [{1, 2}] = 'b', [{x = 1}] = 'c', k = 'd'}")["values"]
    assert len(table) == 4
    assert table.pop("k") == "d"
    keys = list(table)
    assert all(isinstance(k, LuaTableKey) and isinstance(k, LuaOpaque) for k in keys)
    assert all(k.type == "table" and str(k) == "<table key>" for k in keys)
    by_value = sorted((repr(k.table), v) for k, v in table.items())
    assert by_value == [("[1, 2]", "a"), ("[1, 2]", "b"), ("{'x': 1}", "c")]
    # Equal only to itself: two keys with the same contents stay two keys.
    first, second = [k for k in keys if k.table == [1, 2]]
    assert first != second and first == first
    assert {first: 1, second: 2}[first] == 1


def test_cyclic_table_keys_stay_apart(vm):
    (outer,) = vm.execute_string("local p, c = {}, {} p.c = c c[c] = 1 c[p] = 2 return p")["values"]
    inner = outer["c"]
    assert sorted(inner.values()) == [1, 2]
    assert all(isinstance(k, LuaTableKey) and k.table == LuaOpaque("table", "<cycle>") for k in inner)


# -- 4. timeouts and limits at edge values ----------------------------------------
@pytest.mark.parametrize("timeout", [18446744073.71, 36893488147.42, 2**64 / 1000 + 0.001, 2**70, math.inf])
def test_huge_timeouts_mean_no_limit(timeout):
    vm = create_vm("huge_timeout")
    try:
        result = vm.execute_string("local x = 0 for i = 1, 1e5 do x = x + i end return x", timeout=timeout)
        assert result["values"] == [5000050000]
    finally:
        vm.close()


@pytest.mark.parametrize("timeout", [1e300, 2**64, math.inf])
def test_huge_waits_for_async_calls_mean_no_limit(timeout):
    # wait_for_vm and wait_for_cluster accept these (as read_output does),
    # but handed them on to Future.result, whose lock cannot wait that long:
    # OverflowError, which wait_for_cluster even reported as a failed call.
    with VMManager() as manager:
        manager.create_vm_cluster("huge_wait", 2)
        manager.broadcast_to_cluster("huge_wait", "return 6 * 7")
        results = manager.wait_for_cluster("huge_wait", timeout=timeout)
        assert [r["values"] for r in results.values()] == [[42], [42]], results
        vm_id = next(iter(results))
        assert manager.wait_for_vm(vm_id, timeout=timeout)["values"] == [42]


@pytest.mark.parametrize("timeout", [math.nan, -1, -math.inf, 0])
def test_bad_timeouts_raise_invalid_argument(timeout):
    vm = create_vm("bad_timeout")
    try:
        with pytest.raises(InvalidArgumentError):
            vm.execute_string("return 1", timeout=timeout)
        with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
            vm.execute_file(__file__, timeout=timeout)
        assert vm.execute_string("return 1")["values"] == [1]
    finally:
        vm.close()


def test_limits_past_int64_are_no_limit_not_wrapped():
    vm = BasicLuaVM("huge_limits", memory_limit=2**64 + 5, max_output_bytes=2**64 + 5, max_source_bytes=2**64 + 5)
    try:
        result = vm.execute_string("local t = {} for i = 1, 1000 do t[i] = ('x'):rep(100) end print('hello') return #t")
        assert result["values"] == [1000]
        assert result["stdout"] == "hello\n1000"
        assert result.truncated is False
    finally:
        vm.close()
    for cpu in (math.inf, 18446744073.71, 2**70):
        with create_vm("huge_cpu", cpu_limit=cpu) as machine:
            assert machine.execute_string(BUSY.format(seconds=0.05) + " return 7")["values"] == [7]


@pytest.mark.parametrize("bad", [math.nan, -0.5, 0])
def test_bad_cpu_limit_raises_invalid_argument(bad):
    with pytest.raises(InvalidArgumentError):
        create_vm("bad_cpu", cpu_limit=bad)


def test_negative_memory_limit_raises_invalid_argument():
    with pytest.raises(InvalidArgumentError):
        create_vm("bad_memory", memory_limit=-1)


def test_read_output_timeout_edges(session):
    assert session.read_output(timeout=math.inf) == ""  # idle: returns at once
    assert session.read_output(timeout=1e300) == ""
    for bad in (math.nan, -1, None):
        with pytest.raises(InvalidArgumentError):
            session.read_output(timeout=bad)


# -- 5. NUL byte in a script path -----------------------------------------------
def test_nul_byte_in_file_path_is_refused(tmp_path):
    script = tmp_path / "a.lua"
    script.write_text("return 'ran a.lua'")
    with create_vm("nul_path") as vm:
        assert vm.execute_file(script)["values"] == ["ran a.lua"]
        for path in (f"{script}\0.does-not-exist", os.fsencode(script) + b"\0x"):
            with pytest.raises(InvalidArgumentError) as info:
                vm.execute_file(path)
            assert isinstance(info.value, ValueError) and "NUL" in str(info.value)


def test_nul_byte_in_lua_executable_is_refused(tmp_path):
    # The core takes the name as a C string: "lua5.4\0anything" ran lua5.4,
    # another program than the one named, without a word.
    for name in ("lua5.4\0garbage", tmp_path / "lua\0x"):
        with pytest.raises(InvalidArgumentError) as info:
            create_vm("nul_exe", lua_executable=name)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError) and "NUL" in str(info.value)


# -- 6. the process exits while a session with a callback is running input --------
LONG_INPUT = "for i = 1, 2000 do local t = os.clock() while os.clock() - t < 0.001 do end print(i) end"


def test_exit_with_a_running_session_callback_does_not_hang():
    proc = run_script(
        f"""
        from pylua_bioxen_vm_lib import VMManager
        m = VMManager()
        s = m.create_interactive_vm("r", auto_attach=False)
        s.attach(lambda text: None)
        s.send_input({LONG_INPUT!r})
        print("script done", flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "script done\n"


def test_exit_after_the_library_hook_does_not_hang():
    # A handler registered before the import runs after the library's hook:
    # what it leaves open is finalized with no close that could block.
    proc = run_script(
        f"""
        import atexit

        def late():
            global m, s
            from pylua_bioxen_vm_lib import VMManager
            m = VMManager()
            s = m.create_interactive_vm("late", auto_attach=False)
            s.attach(lambda text: None)
            s.send_input({LONG_INPUT!r})
            print("late done", flush=True)

        atexit.register(late)
        import pylua_bioxen_vm_lib
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "late done\n"


def test_vms_open_at_exit_are_closed_by_the_hook():
    # Registered before the import, the check runs after the library's hook.
    proc = run_script(
        """
        import atexit
        state = {}
        atexit.register(lambda: print("after", state["vm"].closed, state["ffi"].live_handles(), flush=True))
        from pylua_bioxen_vm_lib import _ffi, create_vm
        vm = create_vm("kept", persistent=True)
        vm.execute_string("x = 1")
        state.update(vm=vm, ffi=_ffi)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "after True 0\n"


# -- 7. an output callback calling back into its own session or VM -----------------
def test_callback_reentry_raises_instead_of_deadlocking():
    # In a subprocess: before the fix every case deadlocked for good.
    proc = run_script(
        """
        import json
        from pylua_bioxen_vm_lib import VMManager, create_vm

        other = create_vm("other")
        calls = {
            "execute_vm_sync": lambda m, s: m.execute_vm_sync("repl", "return 1"),
            "execute_interactive": lambda m, s: s.execute_interactive("return 1"),
            "execute_and_wait": lambda m, s: s.execute_and_wait("return 1"),
            "wait": lambda m, s: s.wait(),
            "terminate": lambda m, s: s.terminate(),
            "vm.close": lambda m, s: s.vm.close(),
            "vm.stop": lambda m, s: s.vm.stop(),
            "vm.execute_file": lambda m, s: s.vm.execute_file(__import__("os").devnull),
            # allowed: calls that do not wait for the VM, and other VMs
            "send_input": lambda m, s: s.send_input("x = 1"),
            "is_busy": lambda m, s: s.is_busy(),
            "other_vm": lambda m, s: other.execute_string("return 2")["values"],
        }
        report = {}
        for name, call in calls.items():
            with VMManager() as m:
                s = m.create_interactive_vm("repl", auto_attach=False)
                seen = {}

                def cb(text, m=m, s=s, call=call, seen=seen):
                    if seen:
                        return
                    seen["in"] = True
                    try:
                        seen["result"] = repr(call(m, s))
                    except Exception as err:
                        seen["error"] = type(err).__name__

                s.attach(cb)
                s.send_input("print('hello')")
                idle = s.wait(timeout=30)
                report[name] = {"idle": idle, **{k: v for k, v in seen.items() if k != "in"}}
                s.detach()
                s.vm.start()  # still usable (the callback raised, nothing closed)
                report[name]["after"] = s.execute_interactive("return 5")["values"]
        other.close()
        print(json.dumps(report))
        """
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for name in ("execute_vm_sync", "execute_interactive", "execute_and_wait", "wait", "terminate"):
        assert report[name] == {"idle": True, "error": "ReentrantCallError", "after": [5]}, name
    for name in ("vm.close", "vm.stop", "vm.execute_file"):
        assert report[name] == {"idle": True, "error": "ReentrantCallError", "after": [5]}, name
    assert report["send_input"]["idle"] is True and "error" not in report["send_input"]
    assert report["is_busy"] == {"idle": True, "result": "True", "after": [5]}
    assert report["other_vm"] == {"idle": True, "result": "[2]", "after": [5]}


def test_reentrant_call_error_is_a_library_error():
    assert issubclass(ReentrantCallError, LuaVMError)
    assert issubclass(ReentrantCallError, RuntimeError)
    assert "ReentrantCallError" in pylua_bioxen_vm_lib.__all__


# -- review: Python API against the spec (2026-11-26) ----------------------------
def test_manager_create_vm_takes_the_specs_positional_order():
    # Spec: VMManager.create_vm(vm_id, networked=False, persistent=False);
    # vm_type came second, so create_vm("v", False, True) failed.
    with VMManager() as manager:
        vm = manager.create_vm("v", False, True)
        assert vm.persistent and not vm.networked
        vm.execute_string("kept = 1")
        assert vm.execute_string("return kept")["values"] == [1]


@pytest.mark.parametrize("make", ["vm", "session"])
def test_copying_or_pickling_is_refused_and_harmless(make):
    import copy
    import pickle

    # A copy shared the handle and closed it when collected.
    with VMManager() as manager:
        obj = manager.create_interactive_vm("c") if make == "session" else manager.create_vm("c", persistent=True)
        for attempt in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(ArgumentTypeError):
                attempt(obj)
        gc.collect()
        if make == "session":
            assert obj.execute_interactive("return 6 * 7")["values"] == [42]
        else:
            assert obj.execute_string("return 6 * 7")["values"] == [42]


def test_wrong_argument_types_are_the_librarys():
    from pylua_bioxen_vm_lib.utils.curator import search_packages
    from pylua_bioxen_vm_lib.xapi_client import XAPIClient

    cases = [
        lambda: create_vm(b"x"),
        lambda: create_vm("x", lua_executable=b"lua5.4"),
        lambda: create_vm("x", lua_executable=5),
        lambda: XAPIClient("http://127.0.0.1:1", b"root", "pw"),
        lambda: search_packages(b"bio"),
        lambda: search_packages("bio", limit="2"),
    ]
    for case in cases:
        with pytest.raises(ArgumentTypeError):
            case()
    with VMManager() as manager, pytest.raises(InvalidArgumentError):
        manager.wait_for_vm("none", math.nan)


def test_debug_mode_is_the_vms_own():
    import logging

    root = logging.getLogger("pylua_bioxen_vm_lib")
    before = root.level
    vm = create_vm("debugged", debug_mode=True)
    try:
        assert logging.getLogger("pylua_bioxen_vm_lib.vm.debugged").level == logging.DEBUG
        assert root.level == before  # it turned the whole library's debug output on for good
    finally:
        vm.close()


def test_closed_vms_do_not_keep_a_logger_each():
    """Each VM logs through logging.getLogger("pylua_bioxen_vm_lib.vm.<id>"),
    which the logging module keeps for good: a service making a VM per
    request with a fresh id grew by a logger (~600 bytes) per VM, without
    bound. Closing a VM forgets its logger unless someone configured it
    (a level, a handler, a filter: debug_mode, or the application's own)."""
    import logging

    registered = logging.Logger.manager.loggerDict
    prefix = "pylua_bioxen_vm_lib.vm.per-request-"
    for i in range(50):
        with create_vm(f"per-request-{i}") as vm:
            vm.execute_string("return 1")
        with create_vm(f"per-request-{i}.part") as vm:  # a dotted id makes placeholders too
            vm.execute_string("return 1")
    assert [name for name in registered if name.startswith(prefix)] == []
    # A logger the application configured stays, with its configuration.
    mine = logging.getLogger(prefix + "kept")
    mine.setLevel(logging.INFO)
    with create_vm("per-request-kept") as vm:
        vm.execute_string("return 1")
    assert registered.get(prefix + "kept") is mine and mine.level == logging.INFO
    # Two live VMs with one id: closing the first leaves the second's logger registered.
    first, second = create_vm("per-request-twin"), create_vm("per-request-twin")
    first.execute_string("return 1")
    second.execute_string("return 1")
    first.close()
    assert registered.get(prefix + "twin") is second._log
    second.close()
    assert prefix + "twin" not in registered
    del registered[prefix + "kept"]


def test_a_logging_handler_that_uses_the_library_gets_an_error_not_a_hang():
    """The core's log lines reach Python's logging from the library's log
    thread while the call that logged waits: a handler that used a VM
    there (opening one logs a line too) waited for itself, and the whole
    process hung. The call now raises InvalidArgumentError in the handler."""
    proc = run_script(
        """
        import logging
        from pylua_bioxen_vm_lib import create_vm
        from pylua_bioxen_vm_lib.exceptions import InvalidArgumentError

        side = create_vm("side")
        errors = []

        class UsesAVM(logging.Handler):
            def emit(self, record):
                if not errors:
                    try:
                        side.execute_string("return 1")
                    except InvalidArgumentError as err:
                        errors.append(str(err))

        core = logging.getLogger("pylua_bioxen_vm_lib.core")
        core.addHandler(UsesAVM())
        core.setLevel(logging.DEBUG)
        with create_vm("main") as vm:  # opening it logs a line
            print(vm.execute_string("return 2")["values"], flush=True)
        print("log callback" in errors[0], flush=True)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[2]\nTrue\n"


@pytest.mark.parametrize("paths", [5, 1.5, object()])
def test_allowed_paths_not_a_path_nor_sequence_is_argument_type_error(paths):
    """allowed_paths=5 raised a bare TypeError ("'int' object is not
    iterable") instead of the library's ArgumentTypeError."""
    with pytest.raises(ArgumentTypeError, match="allowed_paths"):
        BasicLuaVM("bad-paths", allowed_paths=paths)


def test_vmlogger_component_cannot_leave_log_dir(tmp_path):
    """VMLogger(component="../x", log_dir=d, enable_file_logging=True) wrote
    d/../x.log, outside log_dir; "a/b" raised a bare FileNotFoundError and a
    non-str component (5, None) made the logger "pylua_bioxen_vm_lib.5"."""
    from pylua_bioxen_vm_lib import VMLogger

    logs = tmp_path / "logs"
    for component in ("../escaped", "a/b"):
        with pytest.raises(InvalidArgumentError, match="separator"):
            VMLogger(component=component, log_dir=logs, enable_file_logging=True)
    assert not (tmp_path / "escaped.log").exists()
    for bad in (5, None):
        with pytest.raises(ArgumentTypeError):
            VMLogger(component=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        VMLogger(component="")
    assert VMLogger(component="ok", log_dir=logs, enable_file_logging=True).log_file == logs / "ok.log"


@pytest.mark.parametrize("log_dir", [5, 1.5, b"/tmp/logs", ["logs"]])
def test_vmlogger_log_dir_of_the_wrong_type_is_argument_type_error(log_dir):
    """VMLogger(log_dir=5, enable_file_logging=True) raised a bare TypeError
    from pathlib instead of the library's ArgumentTypeError."""
    from pylua_bioxen_vm_lib import VMLogger

    with pytest.raises(ArgumentTypeError, match="log_dir"):
        VMLogger(component="badtype", log_dir=log_dir, enable_file_logging=True)


def test_vmlogger_unusable_log_dir_is_invalid_argument_error(tmp_path):
    """A log_dir that cannot hold the log file raised bare OSErrors
    (FileExistsError, NotADirectoryError, IsADirectoryError,
    PermissionError) or ValueError (a NUL byte); log_dir="" wrote
    <component>.log into the current directory."""
    from pylua_bioxen_vm_lib import VMLogger

    a_file = tmp_path / "file"
    a_file.write_text("x")
    (tmp_path / "dirlog" / "unusable.log").mkdir(parents=True)  # the log file's name is a directory
    for log_dir in (a_file, a_file / "sub", tmp_path / "dirlog", f"{tmp_path}/a\0b", ""):
        with pytest.raises(InvalidArgumentError, match="log"):
            VMLogger(component="unusable", log_dir=log_dir, enable_file_logging=True)
    assert not Path("unusable.log").exists()
    assert not logging.getLogger("pylua_bioxen_vm_lib.unusable").handlers


def test_vmlogger_symlinked_log_dir_adds_one_file_handler(tmp_path):
    """Each VMLogger on a log_dir reached through a symbolic link added
    another FileHandler for the same file (the check compared the resolved
    path with the handler's unresolved one): every line was written once
    per VMLogger, and each kept a file open."""
    from pylua_bioxen_vm_lib import VMLogger

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    for log_dir in (link, link, real):
        log = VMLogger(component="symlinked", log_dir=log_dir, enable_file_logging=True)
    handlers = [h for h in log.logger.handlers if isinstance(h, logging.FileHandler)]
    try:
        assert len(handlers) == 1
        log.warning("one line")
        handlers[0].flush()
        assert (real / "symlinked.log").read_text().count("one line") == 1
    finally:
        for handler in handlers:
            log.logger.removeHandler(handler)
            handler.close()


def test_vmlogger_threads_creating_loggers_add_each_handler_once(tmp_path):
    """VMLoggers made at once on several threads each found no handler yet
    and each added one: a file handler per thread for one log file, or a
    stderr handler per thread in debug mode, so every line was written
    several times (and the extra files stayed open)."""
    proc = run_script(
        f"""
        import logging, sys, threading
        from pylua_bioxen_vm_lib import VMLogger

        sys.setswitchinterval(1e-6)
        root = logging.getLogger("pylua_bioxen_vm_lib")
        duplicated = 0
        for trial in range(20):
            for handler in list(root.handlers):
                root.removeHandler(handler)
            barrier = threading.Barrier(8)

            def make(trial=trial, barrier=barrier):
                barrier.wait()
                VMLogger(component=f"t{{trial}}", log_dir={str(tmp_path)!r}, enable_file_logging=True, debug_mode=True)

            threads = [threading.Thread(target=make) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            files = logging.getLogger(f"pylua_bioxen_vm_lib.t{{trial}}").handlers
            duplicated += len(files) != 1 or len(root.handlers) != 1
        print(duplicated)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "0\n"
