"""Ctrl-C during a blocking call from the main thread.

Python runs signal handlers in the main thread only, between its calls into
C; a chunk running in one C call used to make Ctrl-C wait for its end. Now
the library watches Python's signal wakeup fd during the call: SIGINT stops
the chunk, the VM keeps its state and KeyboardInterrupt is raised.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pylua_bioxen_vm_lib import VMManager, create_vm
from pylua_bioxen_vm_lib.exceptions import VMTimeoutError
from pylua_bioxen_vm_lib.vm import BasicLuaVM

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread only"
)


@pytest.fixture
def trusted_vm(engine: tuple) -> Iterator[BasicLuaVM]:
    # Trusted: the chunk says it started by creating a file.
    kind, executable = engine
    machine = create_vm("ctrl_c", engine=kind, lua_executable=executable, persistent=True, sandbox=False)
    machine.execute_string("kept = 42")
    yield machine
    machine.close()


def press_ctrl_c_when(marker: Path) -> threading.Thread:
    """Send this process one SIGINT once the chunk has created marker."""

    def press() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.005)  # polling for the chunk to start, not waiting for output
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def spin(marker: Path) -> str:
    return f"io.open({str(marker)!r}, 'w'):close() local n = 0 while true do n = n + 1 end"


def check_state(vm: BasicLuaVM, engine: tuple) -> None:
    values = vm.execute_string("return kept")["values"]
    if engine[1] == "luajit":
        # A compiled LuaJIT loop does not see the interrupt: after 500 ms
        # the interpreter is replaced and the state is lost.
        assert values in ([42], [None])
    else:
        assert values == [42]


@pytest.mark.parametrize("call", ["execute_string", "execute_file"])
def test_ctrl_c_stops_the_chunk_and_keeps_the_vm(trusted_vm, engine, tmp_path, call):
    marker = tmp_path / "started"
    run: Callable[[], object]
    if call == "execute_string":

        def run() -> object:
            return trusted_vm.execute_string(spin(marker), timeout=120)
    else:
        script = tmp_path / "spin.lua"
        script.write_text(spin(marker))

        def run() -> object:
            return trusted_vm.execute_file(script, timeout=120)

    presser = press_ctrl_c_when(marker)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run()
    presser.join()
    assert time.monotonic() - started < 60  # not the 120 s timeout
    check_state(trusted_vm, engine)
    # The wakeup fd was Python's own again after the call.
    assert signal.set_wakeup_fd(-1) == -1


def test_ctrl_c_stops_execute_interactive(engine, tmp_path):
    kind, executable = engine
    marker = tmp_path / "started"
    with VMManager() as manager:
        session = manager.create_interactive_vm(
            "ctrl_c", engine=kind, lua_executable=executable, sandbox=False, auto_attach=False
        )
        session.execute_interactive("kept = 42")
        presser = press_ctrl_c_when(marker)
        with pytest.raises(KeyboardInterrupt):
            session.execute_interactive(spin(marker), timeout=120)
        presser.join()
        values = session.execute_interactive("return kept")["values"]
        assert values == [42] or (executable == "luajit" and values == [None])


def test_a_handler_that_does_not_raise_gets_the_interrupted_error(tmp_path):
    # With a SIGINT handler of the program's own that does not raise, the
    # call ends with the library's error instead.
    vm = create_vm("ctrl_c_handler", persistent=True, sandbox=False)
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        marker = tmp_path / "started"
        presser = press_ctrl_c_when(marker)
        with pytest.raises(VMTimeoutError, match="interrupted"):
            vm.execute_string(spin(marker), timeout=120)
        presser.join()
    finally:
        signal.signal(signal.SIGINT, previous)
        vm.close()
    assert seen == [signal.SIGINT]


def test_a_running_asyncio_loop_keeps_its_wakeup_fd():
    # Inside a running loop the wakeup fd is the loop's: a blocking call
    # leaves it alone (and Ctrl-C then waits for the chunk).
    vm = create_vm("ctrl_c_asyncio")

    async def main() -> tuple:
        # A loop with a signal handler of its own owns the wakeup fd.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, lambda: None)
        ours = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(ours)
        result = vm.execute_string("return 1 + 1")
        after = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(after)
        return ours, after, result["values"]

    try:
        loop_fd, after, values = asyncio.run(main())
    finally:
        vm.close()
    assert loop_fd != -1 and after == loop_fd and values == [2]


def test_other_threads_make_the_plain_call():
    vm = create_vm("ctrl_c_thread")
    out = []
    thread = threading.Thread(target=lambda: out.append(vm.execute_string("return 6 * 7")["values"]))
    thread.start()
    thread.join()
    vm.close()
    assert out == [[42]]


# -- cancelling an asyncio task stops its chunk ------------------------------
# The chunk of a cancelled execute_async ran on, holding the VM: the next
# call waited for it forever.
def test_cancelled_execute_async_stops_the_chunk(engine):
    kind, executable = engine
    vm = create_vm("cancel", engine=kind, lua_executable=executable, persistent=True)

    async def main() -> list:
        await vm.execute_async("kept = 42")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(vm.execute_async("local n = 0 while true do n = n + 1 end"), 0.2)
        return (await asyncio.wait_for(vm.execute_async("return kept"), 60))["values"]

    try:
        values = asyncio.run(main())
    finally:
        vm.close()
    assert values == [42] or (executable == "luajit" and values == [None])


def test_cancelled_execute_interactive_async_stops_only_its_chunk(engine, tmp_path):
    kind, executable = engine
    marker = tmp_path / "started"
    with VMManager() as manager:
        session = manager.create_interactive_vm(
            "cancel", engine=kind, lua_executable=executable, sandbox=False, auto_attach=False
        )

        async def main() -> tuple:
            await session.execute_interactive_async("kept = 42")
            spinning = asyncio.ensure_future(session.execute_interactive_async(spin(marker)))
            deadline = time.monotonic() + 60
            while not marker.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)  # polling for the chunk to start
            # Both queue behind the running chunk (in either order).
            queued = asyncio.ensure_future(session.execute_interactive_async("hit = true return kept + 1"))
            behind = asyncio.ensure_future(session.execute_interactive_async("return kept + 2"))
            await asyncio.sleep(0)
            queued.cancel()  # it leaves the queue: its chunk never runs
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(spinning, 0.2)  # running: interrupted
            after = (await asyncio.wait_for(behind, 60))["values"]
            hit = (await session.execute_interactive_async("return hit == nil"))["values"]
            return after, hit

        after, hit = asyncio.run(main())
        if executable == "luajit" and after != [44]:
            return  # the compiled loop ignored the interrupt: the state went with the interpreter
        assert after == [44]
        assert hit == [True], "the cancelled chunk ran"


def test_a_subinterpreter_cannot_import_the_package():
    # ctypes types and the library's process-wide settings are shared by
    # all interpreters: a copy in a subinterpreter replaced the main
    # interpreter's Ctrl-C pipe and log callback, broke its calls and
    # crashed the process when destroyed. The import is refused instead.
    si = pytest.importorskip("_xxsubinterpreters")
    from pylua_bioxen_vm_lib import _ffi

    vm = create_vm("ctrl_c_main")
    try:
        vm.execute_string("return 1")
        w = _ffi._wakeup_w
        assert w is not None
        interp = si.create()
        try:
            with pytest.raises(si.RunFailedError, match="subinterpreter"):
                si.run_string(interp, "import pylua_bioxen_vm_lib\n")
        finally:
            si.destroy(interp)
        os.write(w, b"\x11")  # the main interpreter's pipe is still read (no EPIPE)
        assert vm.execute_string("return 3")["values"] == [3]
    finally:
        vm.close()
