"""asyncio API: ``await`` chunks and ``async for`` over session output.

Built on the same core: calls are queued in the core and complete through
a callback that resolves an asyncio future (``loop.call_soon_threadsafe``),
so no Python thread is used per call or per session::

    from pylua_bioxen_vm_lib.aio import AsyncVMManager

    async with AsyncVMManager() as manager:
        manager.create_vm("a")
        result = await manager.execute("a", "return 2 + 2")
        session = manager.create_interactive_vm("s")
        session.send_input("for i = 1, 3 do print(i) end")
        async for text in session.stream_output():
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, AsyncIterator, Dict, List, Optional

from . import exceptions as exc
from .interactive_session import InteractiveSession
from .vm import BasicLuaVM, Code, ExecResult, encode_code, timeout_ms
from .vm_manager import VMManager


class AsyncVMManager:
    """The asyncio face of :class:`VMManager` (which it wraps: ``.manager``).
    Creating VMs and sessions is quick and stays synchronous; running code
    is awaitable."""

    def __init__(self, manager: Optional[VMManager] = None, **kwargs: Any) -> None:
        self.manager = manager if manager is not None else VMManager(**kwargs)

    async def __aenter__(self) -> AsyncVMManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown_all()

    def create_vm(self, vm_id: str, **kwargs: Any) -> BasicLuaVM:
        return self.manager.create_vm(vm_id, **kwargs)

    def create_interactive_vm(self, vm_id: str, **kwargs: Any) -> InteractiveSession:
        return self.manager.create_interactive_vm(vm_id, **kwargs)

    def get_vm(self, vm_id: str) -> Optional[BasicLuaVM]:
        return self.manager.get_vm(vm_id)

    def list_vms(self) -> List[str]:
        return self.manager.list_vms()

    async def execute(self, vm_id: str, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """Run code on a VM; awaits the result."""
        return await self.manager._vm(vm_id).execute_async(lua_code, timeout=timeout)

    async def execute_many(self, jobs: Dict[str, Code], timeout: Optional[float] = None) -> Dict[str, ExecResult]:
        """Run one chunk per VM concurrently: ``{vm_id: code}`` -> ``{vm_id: result}``.
        Every job is checked (VM id, code, timeout) before any runs; when one
        call fails, the others are cancelled (their chunks stopped) and its
        exception is raised. ``jobs`` other than a mapping is
        ArgumentTypeError."""
        if not isinstance(jobs, Mapping):
            raise exc.ArgumentTypeError(f"jobs must be a mapping of VM id to code, not {type(jobs).__name__}")
        timeout_ms(timeout)
        ids = list(jobs)
        calls = [(self.manager._vm(vm_id), encode_code(jobs[vm_id])) for vm_id in ids]
        tasks = [asyncio.ensure_future(vm.execute_async(data, timeout=timeout)) for vm, data in calls]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            # Their outcomes are of no use now, but are taken (no "exception
            # was never retrieved"); a cancelled call stops its chunk at once.
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return dict(zip(ids, results))

    async def execute_interactive(self, vm_id: str, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """Run a chunk in a VM's session; awaits its complete result."""
        return await self.manager._session(vm_id).execute_interactive_async(lua_code, timeout=timeout)

    def stream_output(self, vm_id: str) -> AsyncIterator[str]:
        """``async for text in manager.stream_output(vm_id)``."""
        return self.manager._session(vm_id).stream_output()

    async def shutdown_all(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.manager.shutdown_all)
