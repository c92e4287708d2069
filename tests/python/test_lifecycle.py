"""Object lifecycle across threads, the garbage collector and os.fork()."""

from __future__ import annotations

import asyncio
import gc
import operator
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import List

import pytest
from pylua_bioxen_vm_lib import (
    BasicLuaVM,
    ForkedProcessError,
    InteractiveSession,
    ReentrantCallError,
    SessionStateError,
    VMManager,
    _ffi,
)
from pylua_bioxen_vm_lib.vm import close_all_at_exit

needs_lua54 = pytest.mark.skipif(shutil.which("lua5.4") is None, reason="lua5.4 is not installed")


def _wait_child(pid: int, limit: float) -> int:
    """The child's exit code; kills it (and fails) when it has not exited
    within limit seconds (the old code hung there)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung calling into the library")


@needs_lua54
def test_forked_child_refuses_the_library_and_leaves_the_parents_vms_alone() -> None:
    """A forked child's calls hung (embedded VM) or drove the parent's
    interpreter (process VM), and closing the inherited VMs there (at exit,
    by the garbage collector) killed the parent's interpreter: the parent's
    persistent VM lost its globals. Now the child gets ForkedProcessError
    and closing does nothing."""
    proc = BasicLuaVM("parent_proc", engine="process", lua_executable="lua5.4", persistent=True)
    embedded = BasicLuaVM("parent_embedded", persistent=True)
    try:
        proc.execute_string("x = 41")
        embedded.execute_string("y = 1")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                for machine in (proc, embedded, BasicLuaVM("child_new")):
                    try:
                        machine.execute_string("return 1", timeout=1)
                        code |= 1
                    except ForkedProcessError:
                        pass
                proc.close()
                close_all_at_exit()  # what interpreter exit runs
            except BaseException:
                code |= 2
            os._exit(code)
        assert _wait_child(pid, 20) == 0
        assert proc.execute_string("return x + 1")["values"] == [42]
        assert embedded.execute_string("return y")["values"] == [1]
    finally:
        proc.close()
        embedded.close()


@pytest.mark.parametrize("attached", [False, True], ids=["detached", "attached"])
def test_a_dropped_session_is_closed_and_does_not_keep_its_vm(engine: tuple, attached: bool) -> None:
    """A session dropped without terminate() kept its core session open as
    long as its VM lived; attached with a callback, the listener registry
    kept the session, and so its VM (and a process-engine VM's interpreter),
    alive until the interpreter exited."""
    kind, executable = engine
    before = _ffi.live_handles()
    vm = BasicLuaVM("dropped", engine=kind, lua_executable=executable, persistent=True)
    seen: List[str] = []
    session = InteractiveSession("dropped", vm)
    if attached:
        session.attach(seen.append)
    session.send_input("print('x')")
    assert session.wait(10)
    assert _ffi.live_handles() == before + 2  # the VM and the session
    del session
    gc.collect()
    assert _ffi.live_handles() == before + 1  # the VM only
    assert vm.execute_string("return 1")["values"] == [1]
    vm_ref = weakref.ref(vm)
    del vm
    gc.collect()
    assert vm_ref() is None
    assert _ffi.live_handles() == before


def test_attach_racing_detach_keeps_the_listener_of_the_last_attach(monkeypatch: pytest.MonkeyPatch) -> None:
    """detach() removed the core's listener after releasing the session's
    lock: an attach() on another thread in between set its listener first,
    and detach's removal then left the session attached with a callback
    that was never called (its output went to the buffer)."""
    session = InteractiveSession("race")
    try:
        seen: List[str] = []
        session.attach(seen.append)
        real = _ffi.session_set_listener

        def set_listener(handle: int, fn: object, userdata: object) -> int:
            if not fn and not session.is_attached():
                # Between detach's state change and its core call, another
                # thread attaches (run here, so that the order is fixed).
                monkeypatch.setattr(_ffi, "session_set_listener", real)
                session.attach(seen.append)
            return int(real(handle, fn, userdata))

        monkeypatch.setattr(_ffi, "session_set_listener", set_listener)
        session.detach()
        assert session.is_attached()
        session.send_input("print('to the callback')")
        assert session.wait(10)
        assert "".join(seen) == "to the callback\n"
        assert session.read_output(timeout=0) == ""
    finally:
        session.terminate()


def test_a_failed_attach_leaves_the_session_detached() -> None:
    """attach(callback) on a session whose VM was closed raised
    SessionStateError but left the session marked attached (is_attached()
    True, the next attach an AttachError)."""
    vm = BasicLuaVM("attach_closed", persistent=True)
    session = InteractiveSession("attach_closed", vm).start()
    vm.close()
    with pytest.raises(SessionStateError):
        session.attach(lambda text: None)
    assert not session.is_attached()
    with pytest.raises(SessionStateError):
        session.attach(lambda text: None)
    session.terminate()


@pytest.mark.parametrize("kind", ["vm", "session"])
def test_an_async_call_starts_the_vm_off_the_event_loop(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The first execute_async / execute_interactive_async started the VM
    (an interpreter process, an XCP-ng VM's boot) in the event loop's
    thread: every other task waited for it. Here the start waits for
    another task to run; held up in the loop it would never see it."""
    real = _ffi.vm_open
    loop_ran = threading.Event()

    def vm_open(opts: object, handle: object) -> int:
        assert loop_ran.wait(10), "the event loop was held up while the VM started"
        return int(real(opts, handle))

    monkeypatch.setattr(_ffi, "vm_open", vm_open)

    async def tick() -> None:
        loop_ran.set()

    async def main() -> List[object]:
        ticker = asyncio.ensure_future(tick())
        if kind == "vm":
            with BasicLuaVM("async_start") as vm:
                result = await vm.execute_async("return 1")
        else:
            with InteractiveSession("async_start") as session:
                result = await session.execute_interactive_async("return 1")
        await ticker
        return list(result["values"])

    assert asyncio.run(main()) == [1]


def _wait_live_handles(count: int) -> None:
    deadline = time.monotonic() + 10
    while _ffi.live_handles() != count:
        assert time.monotonic() < deadline, f"live handles: {_ffi.live_handles()}, expected {count}"
        time.sleep(0.01)


@pytest.mark.parametrize("owns_vm", [False, True], ids=["shared_vm", "own_vm"])
def test_a_session_dropped_by_its_own_callback_is_closed_without_deadlock(engine: tuple, owns_vm: bool) -> None:
    """When an output callback drops the last reference to its session, the
    session dies on the core thread that delivers its output: closing it
    there waited for the chunk waiting for that very callback, for ever (and
    its VM no longer ran anything). The close runs on another thread."""
    kind, executable = engine
    before = _ffi.live_handles()
    vm = None if owns_vm else BasicLuaVM("shared", engine=kind, lua_executable=executable, persistent=True)
    holder = {}
    delivered = threading.Event()

    def callback(text: str) -> None:
        holder.clear()  # the last reference
        delivered.set()

    if vm is None:
        session = InteractiveSession("own", engine=kind, lua_executable=executable)
    else:
        session = InteractiveSession("shared", vm)
    session.attach(callback)
    session.send_input("print('a') print('b')")
    holder["session"] = session
    del session
    assert delivered.wait(10)
    if vm is not None:
        assert vm.execute_string("return 1", timeout=10)["values"] == [1]
        _wait_live_handles(before + 1)
        vm.close()
    _wait_live_handles(before)


@pytest.mark.parametrize(
    "call",
    [
        "remove_vm",
        "terminate_vm_session",
        "shutdown_all",
        "session_manager.terminate_session",
        "session_manager.cleanup_all",
    ],
)
def test_a_manager_call_refused_in_a_callback_changes_nothing(call: str) -> None:
    """remove_vm (and terminate_vm_session, shutdown_all) from an output
    callback of the VM raised ReentrantCallError only after the manager had
    forgotten the VM and its session: both stayed open, out of the
    manager's reach (its shutdown_all no longer closed them). The session
    manager's terminate_session and cleanup_all forgot the session so."""
    before = _ffi.live_handles()
    manager = VMManager()
    session = manager.create_interactive_vm("cb", auto_attach=False)
    errors: List[BaseException] = []
    delivered = threading.Event()

    def callback(text: str) -> None:
        try:
            method = operator.attrgetter(call)(manager)
            method(*(() if call.endswith(("shutdown_all", "cleanup_all")) else ("cb",)))
        except BaseException as err:
            errors.append(err)
        delivered.set()

    session.attach(callback)
    session.send_input("print(1)")
    assert delivered.wait(10)
    assert [type(e) for e in errors] == [ReentrantCallError]
    assert manager.list_vms() == ["cb"]
    assert list(manager.list_sessions()) == ["cb"]
    assert session.execute_interactive("return 2")["values"] == [2]
    manager.shutdown_all()
    assert _ffi.live_handles() == before


@needs_lua54
@pytest.mark.parametrize("what", ["vm", "session"])
def test_ctrl_c_during_a_slow_start_leaks_no_engine(tmp_path: Path, what: str) -> None:
    """Ctrl-C while a VM starts (an XCP-ng VM boots, an interpreter starts)
    raised KeyboardInterrupt as bioxen_vm_open returned, before the handle
    was kept: the engine (here a lua5.4 process; there a guest VM) stayed
    open, out of reach, until the process exited."""
    slow = tmp_path / "slow-lua"
    slow.write_text(f'#!/bin/sh\nsleep 0.5\nexec {shutil.which("lua5.4")} "$@"\n')
    slow.chmod(0o755)
    before = _ffi.live_handles()
    vm = BasicLuaVM("slow_start", engine="process", lua_executable=str(slow), persistent=True)
    start = vm.start if what == "vm" else InteractiveSession("slow_start", vm).start
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            start()
    finally:
        timer.join()
    assert _ffi.live_handles() == before
    assert vm.execute_string("return 1")["values"] == [1]
    vm.close()
    assert _ffi.live_handles() == before


def test_closing_in_a_forked_child_takes_no_lock_held_at_fork() -> None:
    """A lock of a VM or session held by another thread of the parent at
    fork() (a call starting the VM, an XCP-ng boot) stays held for ever in
    the child: close(), terminate() and the exit hook waited on it there."""
    session = InteractiveSession("fork_locked")
    session.start()
    vm = BasicLuaVM("fork_locked_vm").start()
    locks = [session._lock, session.vm._lock, vm._lock]
    for lock in locks:  # as another thread in a call that holds them
        lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                vm.close()
                session.terminate()
                close_all_at_exit()  # what interpreter exit runs
            except BaseException:
                code = 1
            os._exit(code)
    finally:
        for lock in locks:
            lock.release()
    assert _wait_child(pid, 20) == 0
    assert session.execute_interactive("return 3")["values"] == [3]
    assert vm.execute_string("return 4")["values"] == [4]
    session.terminate()
    vm.close()


def test_xcpng_first_inputs_on_two_threads_share_one_session(monkeypatch):
    """Two threads' first send_input made two sessions (one thread's input
    went to a session nobody read). The session's start is held until the
    second thread has had its chance; no XCP-ng host is involved."""
    from pylua_bioxen_vm_lib import xcp_ng_integration as xi

    made: List[object] = []
    in_start, release = threading.Event(), threading.Event()

    class FakeSession:
        def __init__(self, *args: object) -> None:
            made.append(self)
            self.running = False

        def start(self) -> None:
            if len(made) == 1:
                in_start.set()
                release.wait(10)
            self.running = True

        def is_running(self) -> bool:
            return self.running

    monkeypatch.setattr(xi, "InteractiveSession", FakeSession)
    config = {"xcp_host": "h", "xcp_username": "u", "xcp_password": "p", "template_name": "t"}
    vm = xi.XCPngVM("two_threads", config)
    got: List[object] = []
    t1 = threading.Thread(target=lambda: got.append(vm._ensure_session()))
    t1.start()
    assert in_start.wait(10)
    t2 = threading.Thread(target=lambda: got.append(vm._ensure_session()))
    t2.start()
    t2.join(0.5)  # the old code made a second session here, at once
    release.set()
    t1.join(10)
    t2.join(10)
    assert len(made) == 1 and got == [made[0], made[0]]


def test_shutdown_all_racing_create_interactive_vm_leaves_nothing_dangling(monkeypatch):
    """A session created while shutdown_all ran stayed listed with its VM
    closed: the sessions were taken outside the lock that
    create_interactive_vm holds. A creation on another thread, started as
    shutdown_all takes the sessions, now either lands after it, whole, or
    not at all."""
    manager = VMManager()
    manager.create_interactive_vm("before", auto_attach=False)
    sm = manager.session_manager
    original = sm.take_all
    creator: List[threading.Thread] = []

    def take_all() -> list:
        t = threading.Thread(target=lambda: manager.create_interactive_vm("during", auto_attach=False))
        t.start()
        creator.append(t)
        t.join(0.2)  # the old code let it register here, between the steps
        return original()

    monkeypatch.setattr(sm, "take_all", take_all)
    manager.shutdown_all()
    creator[0].join(10)
    for sid in sm.list_sessions():
        assert sid in manager.vms, sid
        assert manager.execute_vm_sync(sid, "return 1 + 1")["stdout"] == "2"
    assert "before" not in sm.list_sessions()
    monkeypatch.undo()
    manager.shutdown_all()


def test_session_is_not_running_once_its_vm_stopped():
    """A session ends with its VM's engine: is_running() said True after
    vm.stop() (and after a later start(), which makes a new engine), and
    input then failed with "is terminated"."""
    vm = BasicLuaVM("stopped_under_session", persistent=True)
    session = InteractiveSession("s", vm).start()
    session.send_input("x = 1")
    assert session.wait(10) and session.is_running()
    vm.stop()
    assert not session.is_running()
    vm.start()
    assert vm.is_running() and not session.is_running()
    with pytest.raises(SessionStateError, match="ended when its VM was stopped"):
        session.send_input("print(x)")
    session.terminate()
    vm.close()


def test_fork_pool_works_when_the_parent_only_imported_the_package(tmp_path: Path) -> None:
    """Loading libbioxen.so starts the Go runtime, which a fork does not
    copy. It was loaded at import, so a script importing the package at the
    top and running Lua in a fork-started multiprocessing.Pool (Linux's
    default before Python 3.14) got ForkedProcessError in every worker. It
    is loaded at the first call now: the workers load their own."""
    script = tmp_path / "pool.py"
    script.write_text(
        "import multiprocessing as mp\n"
        "import pylua_bioxen_vm_lib as lib\n"
        "from pylua_bioxen_vm_lib import _ffi, create_vm\n"
        "def work(n):\n"
        "    return create_vm(f'w{n}').execute_string(f'return {n} * 2')['values'][0]\n"
        "if __name__ == '__main__':\n"
        "    assert _ffi.lib is None, 'loaded at import'\n"
        "    with mp.get_context('fork').Pool(2) as pool:\n"
        "        print(pool.map(work, range(4)))\n"
        "    print(create_vm('parent').execute_string('return 1 + 1')['stdout'], lib.core_version)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(_ffi.__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "[0, 2, 4, 6]"
    assert out.stdout.splitlines()[1].startswith("2 ")
