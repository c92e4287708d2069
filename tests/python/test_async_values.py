"""Async calls, returned values and networking: regressions found by review (session 17)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Callable

import pytest
from pylua_bioxen_vm_lib import BasicLuaVM, InteractiveSession, create_vm


@pytest.mark.parametrize("target", ["vm", "session"])
def test_async_calls_on_a_vm_not_started_run_in_call_order(engine: tuple, target: str) -> None:
    """The first calls on a VM (execute_async) or a session
    (execute_interactive_async) waited for its start, each in an executor
    thread of its own, and reached the core in whatever order those threads
    finished: "0,2,3,4,1,5," instead of "0,1,2,3,4,5,"."""
    kind, executable = engine

    async def run(call: Callable[[str], Awaitable[Any]]) -> str:
        calls = [call(f"seq = (seq or '') .. '{i},' return seq") for i in range(8)]
        results = await asyncio.wait_for(asyncio.gather(*calls), 60)
        return results[-1]["values"][0]

    for i in range(6):
        vm = BasicLuaVM(f"order{i}", engine=kind, lua_executable=executable, persistent=True)
        session = InteractiveSession(f"order{i}", vm) if target == "session" else None
        try:
            call = session.execute_interactive_async if session else vm.execute_async
            assert asyncio.run(run(call)) == "0,1,2,3,4,5,6,7,"
        finally:
            if session:
                session.terminate()
            vm.close()


def test_a_cancelled_async_call_waiting_for_the_start_lets_the_next_run(engine: tuple) -> None:
    kind, executable = engine

    async def run(vm: BasicLuaVM) -> list:
        # The first chunk runs a while, so that the second, once queued in
        # the core, is still queued when cancelled.
        first = asyncio.ensure_future(
            vm.execute_async("local t = os.clock() while os.clock() - t < 0.3 do end seq = 'a' return seq")
        )
        second = asyncio.ensure_future(vm.execute_async("seq = seq .. 'b' return seq"))
        third = asyncio.ensure_future(vm.execute_async("seq = seq .. 'c' return seq"))
        await asyncio.sleep(0)  # all three are under way
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        return [(await asyncio.wait_for(t, 60))["values"][0] for t in (first, third)]

    with create_vm("cancel_order", engine=kind, lua_executable=executable, persistent=True) as vm:
        assert asyncio.run(run(vm)) == ["a", "ac"]


@pytest.mark.parametrize("executable", ["lua5.4", "luajit"])
def test_opaque_keys_with_one_tostring_text_stay_apart(executable: str) -> None:
    """Two function keys whose __tostring gives one text became one
    LuaOpaque dict key: one of the two values was silently lost."""
    from pylua_bioxen_vm_lib.values import LuaOpaque, LuaOpaqueKey

    with create_vm("opaque_keys", engine="process", lua_executable=executable, sandbox=False) as vm:
        res = vm.execute_string(
            'debug.setmetatable(print, {__tostring = function() return "f" end})\n'
            "return {[print] = 1, [type] = 2, [coroutine.create(print)] = 3, x = 4}"
        )
    assert res["error"] is None
    (table,) = res["values"]
    assert sorted(table.values()) == [1, 2, 3, 4]
    keys = [k for k in table if k != "x"]
    functions = [k for k in keys if k.type == "function"]
    assert [type(k) for k in functions] == [LuaOpaqueKey, LuaOpaqueKey]
    assert all(k.text == "f" and isinstance(k, LuaOpaque) for k in functions)
    # A key whose text no other key shares stays a plain LuaOpaque.
    (thread,) = [k for k in keys if k.type == "thread"]
    assert type(thread) is LuaOpaque and table[LuaOpaque("thread", thread.text)] == 3


class _HeldExecutor(concurrent.futures.ThreadPoolExecutor):
    """A default executor that runs nothing until release(), then runs
    the jobs last first: a call that reached the executor later completes
    first, as a thread may."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs: list = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.append((future, fn, args, kwargs))
        return future

    def release(self) -> None:
        while self.jobs:
            future, fn, args, kwargs = self.jobs.pop()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:
                future.set_exception(err)


@pytest.mark.parametrize("target", ["vm", "session"])
def test_a_cancelled_call_in_the_middle_keeps_the_next_behind_the_one_before(target: str) -> None:
    """Three calls on a VM not started: the first waits for the start (in
    the executor), the second for the first, the third for the second.
    Cancelling the second released the third at once, while the first still
    waited for the start: the third went to the executor too and could
    reach the core first ("attempt to concatenate global 'seq'", set by the
    first chunk; test_a_cancelled_async_call_waiting_for_the_start_lets_the_next_run
    failed so now and then)."""

    async def run(call: Callable[[str], Awaitable[Any]]) -> list:
        held = _HeldExecutor()
        asyncio.get_running_loop().set_default_executor(held)
        first = asyncio.ensure_future(call("seq = 'a' return seq"))
        second = asyncio.ensure_future(call("seq = seq .. 'b' return seq"))
        third = asyncio.ensure_future(call("seq = seq .. 'c' return seq"))
        await asyncio.sleep(0)  # all three are under way
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        for _ in range(20):  # the third goes as far as it may
            await asyncio.sleep(0)
        held.release()
        return [(await asyncio.wait_for(t, 60))["values"] for t in (first, third)]

    vm = BasicLuaVM(f"cancel_mid_{target}", persistent=True)
    session = InteractiveSession(f"cancel_mid_{target}", vm) if target == "session" else None
    try:
        call = session.execute_interactive_async if session else vm.execute_async
        assert asyncio.run(run(call)) == [["a"], ["ac"]]
    finally:
        if session:
            session.terminate()
        vm.close()


def test_a_call_from_another_event_loop_does_not_break_the_order_on_this_one() -> None:
    """The order of a VM's async calls was kept in one chain: a call made
    from a second event loop (another thread) replaced the first loop's
    tail, and the next call on the first loop no longer waited for that
    loop's earlier calls (still waiting for the VM's start): it ran first."""
    vm = BasicLuaVM("two_loops", persistent=True)

    def other_loop() -> None:
        assert asyncio.run(vm.execute_async("return 'other'"))["values"] == ["other"]

    async def run() -> list:
        held = _HeldExecutor()
        asyncio.get_running_loop().set_default_executor(held)
        first = asyncio.ensure_future(vm.execute_async("seq = 'a' return seq"))
        second = asyncio.ensure_future(vm.execute_async("seq = seq .. 'b' return seq"))
        await asyncio.sleep(0)  # the first waits for the start, the second for the first
        thread = threading.Thread(target=other_loop)
        thread.start()
        thread.join()  # a call from another loop, in between
        third = asyncio.ensure_future(vm.execute_async("seq = seq .. 'c' return seq"))
        for _ in range(20):  # the third goes as far as it may
            await asyncio.sleep(0)
        held.release()
        return [(await asyncio.wait_for(t, 60))["values"] for t in (first, second, third)]

    try:
        assert asyncio.run(run()) == [["a"], ["ab"], ["abc"]]
    finally:
        vm.close()
