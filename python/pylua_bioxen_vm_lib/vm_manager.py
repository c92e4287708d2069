"""VMManager: many named VMs, run synchronously or in the background."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, List, Mapping, Optional

from . import exceptions as exc
from .factory import create_vm as _create_vm
from .logger import enable_debug, env_debug
from .vm import BasicLuaVM, Code

logger = logging.getLogger("pylua_bioxen_vm_lib.VMManager")


class VMManager:
    """Creates, runs and stops named VMs. Thread-safe; a context manager
    that stops every VM on exit."""

    def __init__(self, max_workers: int = 10, lua_executable: str = "lua", debug_mode: bool = False) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.lua_executable = lua_executable
        self.debug_mode = bool(debug_mode) or env_debug()
        if self.debug_mode:
            enable_debug()
        self.vms: Dict[str, BasicLuaVM] = {}
        self._futures: Dict[str, Future[Dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._executor: Optional[ThreadPoolExecutor] = None

    # -- VMs -------------------------------------------------------------
    def create_vm(
        self,
        vm_id: str,
        vm_type: str = "basic",
        networked: bool = False,
        persistent: bool = False,
        debug_mode: Optional[bool] = None,
        lua_executable: Optional[str] = None,
        config: Optional[Mapping[str, Any]] = None,
        *,
        engine: Optional[str] = None,
    ) -> BasicLuaVM:
        """Create and register a VM; its id must be new."""
        with self._lock:
            if vm_id in self.vms:
                raise exc.VMAlreadyExistsError(f"VM {vm_id!r} already exists")
            vm = _create_vm(
                vm_id,
                vm_type=vm_type,
                networked=networked,
                persistent=persistent,
                debug_mode=self.debug_mode if debug_mode is None else debug_mode,
                lua_executable=lua_executable or self.lua_executable,
                config=config,
                engine=engine,
            )
            self.vms[vm_id] = vm
        logger.debug("created VM %r (%s engine)", vm_id, vm.engine)
        return vm

    def get_vm(self, vm_id: str) -> Optional[BasicLuaVM]:
        """The VM with this id, or None."""
        with self._lock:
            return self.vms.get(vm_id)

    def _vm(self, vm_id: str) -> BasicLuaVM:
        with self._lock:
            vm = self.vms.get(vm_id)
        if vm is None:
            raise exc.VMNotFoundError(f"no VM with id {vm_id!r}")
        return vm

    def list_vms(self) -> List[str]:
        with self._lock:
            return list(self.vms)

    def remove_vm(self, vm_id: str) -> bool:
        """Stop and forget a VM; False when there was none."""
        with self._lock:
            vm = self.vms.pop(vm_id, None)
            self._futures.pop(vm_id, None)
        if vm is None:
            return False
        vm.close()
        return True

    def get_vm_info(self, vm_id: str) -> Dict[str, Any]:
        vm = self._vm(vm_id)
        info = vm.get_info()
        info["vm_name"] = vm.name
        return info

    # -- execution -------------------------------------------------------
    def execute_vm_sync(self, vm_id: str, lua_code: Code, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Run code on a VM and return its result dict."""
        return self._vm(vm_id).execute_string(lua_code, timeout=timeout)

    def execute_vm_async(self, vm_id: str, lua_code: Code, timeout: Optional[float] = None) -> Future[Dict[str, Any]]:
        """Run code on a VM in the background; returns a Future of the result."""
        vm = self._vm(vm_id)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="pylua-vm")
            future = self._executor.submit(vm.execute_string, lua_code, timeout)
            self._futures[vm_id] = future
        return future

    def wait_for_vm(self, vm_id: str, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The result of the VM's last async call, waiting up to timeout
        seconds; None when it has none."""
        with self._lock:
            future = self._futures.get(vm_id)
        return None if future is None else future.result(timeout)

    def get_vm_status(self, vm_id: str) -> Optional[str]:
        """'running', 'done' or 'cancelled' for the last async call; None."""
        with self._lock:
            future = self._futures.get(vm_id)
        if future is None:
            return None
        if future.cancelled():
            return "cancelled"
        return "done" if future.done() else "running"

    def cancel_vm(self, vm_id: str) -> bool:
        """Cancel the VM's last async call if it has not started yet."""
        with self._lock:
            future = self._futures.get(vm_id)
        return bool(future and future.cancel())

    def get_stats(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "total_vms": len(self.vms),
                "running_vms": sum(1 for vm in self.vms.values() if vm.is_running()),
                "pending_async": sum(1 for f in self._futures.values() if not f.done()),
                "max_workers": self.max_workers,
            }

    # -- shutdown --------------------------------------------------------
    def shutdown_all(self) -> None:
        """Stop every VM and the background workers. Calling it twice is
        harmless, and the manager can create new VMs afterwards."""
        with self._lock:
            vms = list(self.vms.values())
            self.vms.clear()
            self._futures.clear()
            executor, self._executor = self._executor, None
        for vm in vms:
            try:
                vm.close()
            except exc.LuaVMError as err:
                logger.warning("closing VM %r failed: %s", vm.vm_id, err)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> VMManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown_all()
