"""VMManager: many named VMs, run synchronously or in the background."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeoutError
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Union, overload

from . import _ffi
from . import exceptions as exc
from .factory import create_vm as _create_vm
from .interactive_session import InteractiveSession, OutputCallback, SessionManager, check_id
from .logger import enable_debug, env_debug
from .networking import NetworkedLuaVM
from .vm import BasicLuaVM, Code, ExecResult, check_not_delivering, wait_ms

if TYPE_CHECKING:
    from .xcp_ng_integration import XCPngVM

logger = logging.getLogger("pylua_bioxen_vm_lib.VMManager")


class _WaitTimeout(exc.VMTimeoutError, FuturesTimeoutError):
    """wait_for_vm's timeout: the library's VMTimeoutError, and still what
    Future.result raised (concurrent.futures.TimeoutError, which is
    TimeoutError only since Python 3.11)."""


def _check_count(value: Any, name: str) -> None:
    """A whole number >= 1: TypeError for another type, InvalidArgumentError
    (a ValueError) below 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise exc.ArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise exc.InvalidArgumentError(f"{name} must be at least 1, got {value}")


class VMManager:
    """Creates, runs and stops named VMs. Thread-safe; a context manager
    that stops every VM on exit."""

    def __init__(self, max_workers: int = 10, lua_executable: str = "lua", debug_mode: bool = False) -> None:
        _check_count(max_workers, "max_workers")
        self.max_workers = max_workers
        self.lua_executable = lua_executable
        self.debug_mode = bool(debug_mode) or env_debug()
        if self.debug_mode:
            # The manager's logger (and, through debug_mode, each VM's it makes).
            enable_debug(logger)
        self.vms: Dict[str, BasicLuaVM] = {}
        self._futures: Dict[str, Future[ExecResult]] = {}
        self._lock = threading.RLock()
        self._executor: Optional[ThreadPoolExecutor] = None
        self.session_manager = SessionManager(debug_mode=self.debug_mode)
        self.session_manager._on_terminated = self._session_terminated
        self._made_for_session: Dict[str, BasicLuaVM] = {}  # by create_interactive_vm
        self.clusters: Dict[str, VMCluster] = {}

    # -- VMs -------------------------------------------------------------
    @overload
    def create_vm(
        self,
        vm_id: str,
        networked: bool = ...,
        persistent: bool = ...,
        *,
        vm_type: Literal["xcpng"],
        debug_mode: Optional[bool] = None,
        lua_executable: Optional[str] = None,
        config: Optional[Mapping[str, Any]] = None,
        engine: Optional[str] = None,
        sandbox: bool = True,
        environment: Optional[str] = None,
        memory_limit: Optional[int] = None,
        cpu_limit: Optional[float] = None,
        allowed_paths: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
    ) -> XCPngVM: ...

    @overload
    def create_vm(
        self,
        vm_id: str,
        networked: bool = False,
        persistent: bool = False,
        vm_type: str = "basic",
        debug_mode: Optional[bool] = None,
        lua_executable: Optional[str] = None,
        config: Optional[Mapping[str, Any]] = None,
        *,
        engine: Optional[str] = None,
        sandbox: bool = True,
        environment: Optional[str] = None,
        memory_limit: Optional[int] = None,
        cpu_limit: Optional[float] = None,
        allowed_paths: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
    ) -> BasicLuaVM: ...

    def create_vm(
        self,
        vm_id: str,
        networked: bool = False,
        persistent: bool = False,
        vm_type: str = "basic",
        debug_mode: Optional[bool] = None,
        lua_executable: Optional[str] = None,
        config: Optional[Mapping[str, Any]] = None,
        *,
        engine: Optional[str] = None,
        sandbox: bool = True,
        environment: Optional[str] = None,
        memory_limit: Optional[int] = None,
        cpu_limit: Optional[float] = None,
        allowed_paths: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
    ) -> BasicLuaVM:
        """Create and register a VM; its id must be new. The positional
        order is the spec's ``create_vm(vm_id, networked=False,
        persistent=False)`` (the module-level :func:`create_vm` takes
        ``vm_type`` second, as its spec does)."""
        if not isinstance(vm_id, str):
            # (an unhashable one failed the lookup below with a plain TypeError)
            raise exc.ArgumentTypeError(f"vm_id must be a non-empty string, not {type(vm_id).__name__}")
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
                sandbox=sandbox,
                environment=environment,
                memory_limit=memory_limit,
                cpu_limit=cpu_limit,
                allowed_paths=allowed_paths,
            )
            self.vms[vm_id] = vm
        logger.debug("created VM %r (%s engine)", vm_id, vm.engine)
        return vm

    def get_vm(self, vm_id: str) -> Optional[BasicLuaVM]:
        """The VM with this id, or None."""
        check_id(vm_id, "vm_id")
        with self._lock:
            return self.vms.get(vm_id)

    def _vm(self, vm_id: str) -> BasicLuaVM:
        check_id(vm_id, "vm_id")
        with self._lock:
            vm = self.vms.get(vm_id)
        if vm is None:
            raise exc.VMNotFoundError(f"no VM with id {vm_id!r}")
        return vm

    def list_vms(self) -> List[str]:
        with self._lock:
            return list(self.vms)

    def remove_vm(self, vm_id: str) -> bool:
        """Stop and forget a VM (and its session); False when there was none.
        From an output callback of that VM it raises ReentrantCallError and
        keeps both (closing them there would deadlock)."""
        check_id(vm_id, "vm_id")
        with self._lock:
            self._check_not_delivering([self.vms.get(vm_id), self._session_or_none(vm_id)], "remove_vm()")
            vm = self.vms.pop(vm_id, None)
            self._futures.pop(vm_id, None)
            self._made_for_session.pop(vm_id, None)
            session = self.session_manager.remove_session(vm_id)
        if session is not None:
            session.terminate()
        if vm is None:
            return session is not None
        vm.close()
        return True

    def _check_not_delivering(self, items: List[Any], what: str) -> None:
        """ReentrantCallError, before anything changes, when this thread runs
        an output callback of one of these VMs or sessions' VMs."""
        for item in items:
            if isinstance(item, InteractiveSession):
                item = item.vm
            if item is not None:
                check_not_delivering(item, what)

    def get_vm_info(self, vm_id: str) -> Dict[str, Any]:
        vm = self._vm(vm_id)
        # An XCP-ng VM adds its (redacted) config and session_active.
        get_vm_info = getattr(vm, "get_vm_info", None)
        info = get_vm_info() if callable(get_vm_info) else vm.get_info()
        session = self._session_or_none(vm_id)
        info.update(
            vm_name=vm.name,
            session_exists=session is not None,
            session_attached=bool(session and session.is_attached()),
            process_running=vm.is_running(),
            interactive_capable=vm.persistent,
        )
        return info

    # -- execution -------------------------------------------------------
    def execute_vm_sync(self, vm_id: str, lua_code: Code, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Run code on a VM and return its result dict."""
        return self._vm(vm_id).execute_string(lua_code, timeout=timeout)

    def execute_vm_async(self, vm_id: str, lua_code: Code, timeout: Optional[float] = None) -> Future[ExecResult]:
        """Run code on a VM in the background; returns a Future of the result."""
        return self._submit(vm_id, self._vm(vm_id).execute_string, lua_code, timeout)

    def _submit(self, vm_id: str, fn: Callable[..., ExecResult], *args: Any, **kwargs: Any) -> Future[ExecResult]:
        """Run fn in the background as the VM's last async call."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="pylua-vm")
            future = self._executor.submit(fn, *args, **kwargs)
            self._futures[vm_id] = future
        return future

    # -- networked VMs (docs/networking.md) ------------------------------
    def _networked(self, vm_id: str) -> NetworkedLuaVM:
        vm = self._vm(vm_id)
        if not isinstance(vm, NetworkedLuaVM):
            raise exc.VMManagerError(f"VM {vm_id!r} is not networked: create it with networked=True")
        return vm

    def start_server_vm(
        self, vm_id: str, port: int, timeout: Optional[float] = None, **kwargs: Any
    ) -> Future[ExecResult]:
        """NetworkedLuaVM.start_server in the background; a Future of its result."""
        return self._submit(vm_id, self._networked(vm_id).start_server, port, timeout, **kwargs)

    def start_client_vm(
        self,
        vm_id: str,
        host: str,
        port: int,
        message: str = "Hello from Lua Client!",
        timeout: Optional[float] = None,
    ) -> Future[ExecResult]:
        """NetworkedLuaVM.start_client in the background; a Future of its result."""
        return self._submit(vm_id, self._networked(vm_id).start_client, host, port, message, timeout)

    def start_p2p_vm(
        self,
        vm_id: str,
        local_port: int,
        peer_host: Optional[str] = None,
        peer_port: Optional[int] = None,
        run_duration: float = 30,
        send_interval: float = 5,
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> Future[ExecResult]:
        """NetworkedLuaVM.start_p2p in the background; a Future of its result."""
        vm = self._networked(vm_id)
        return self._submit(
            vm_id, vm.start_p2p, local_port, peer_host, peer_port, run_duration, send_interval, timeout, **kwargs
        )

    def wait_for_vm(self, vm_id: str, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The result of the VM's last async call, waiting up to timeout
        seconds; None when it has none. A call still running then raises
        VMTimeoutError (also concurrent.futures.TimeoutError); the call goes
        on. ``math.inf``, or anything longer than a lock can wait, waits as
        long as it takes."""
        check_id(vm_id, "vm_id")
        if timeout is not None:
            wait_ms(timeout)  # a number >= 0, not NaN
            if timeout > threading.TIMEOUT_MAX:  # Future.result raised OverflowError
                timeout = None
        with self._lock:
            future = self._futures.get(vm_id)
        if future is None:
            return None
        try:
            return future.result(timeout)
        except FuturesTimeoutError:
            if future.done():
                raise  # the call itself raised it
            raise _WaitTimeout(
                f"VM {vm_id!r}: its last async call is still running after {timeout} s", code=_ffi.E_TIMEOUT
            ) from None

    def get_vm_status(self, vm_id: str) -> Optional[str]:
        """'running', 'done' or 'cancelled' for the last async call; None."""
        check_id(vm_id, "vm_id")
        with self._lock:
            future = self._futures.get(vm_id)
        if future is None:
            return None
        if future.cancelled():
            return "cancelled"
        return "done" if future.done() else "running"

    def cancel_vm(self, vm_id: str) -> bool:
        """Cancel the VM's last async call if it has not started yet."""
        check_id(vm_id, "vm_id")
        with self._lock:
            future = self._futures.get(vm_id)
        return bool(future and future.cancel())

    def get_stats(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "total_vms": len(self.vms),
                "running_vms": sum(1 for vm in self.vms.values() if vm.is_running()),
                "interactive_sessions": len(self.session_manager.list_sessions()),
                "clusters": len(self.clusters),
                "pending_async": sum(1 for f in self._futures.values() if not f.done()),
                "max_workers": self.max_workers,
            }

    # -- interactive sessions ---------------------------------------------
    def create_interactive_vm(
        self,
        vm_id: str,
        vm_type: str = "basic",
        config: Optional[Mapping[str, Any]] = None,
        networked: bool = False,
        auto_attach: bool = True,
        *,
        engine: Optional[str] = None,
        lua_executable: Optional[str] = None,
        sandbox: bool = True,
        memory_limit: Optional[int] = None,
        cpu_limit: Optional[float] = None,
        allowed_paths: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
    ) -> InteractiveSession:
        """Create a persistent VM with an interactive session on it. The
        session and ``execute_vm_sync`` on this id share one Lua state.
        ``sandbox``, ``memory_limit`` and ``cpu_limit`` are as for
        :func:`create_vm` (``cpu_limit`` bounds each input sent)."""
        check_id(vm_id, "vm_id")
        with self._lock:
            if vm_id in self.vms or self.session_manager.has_session(vm_id):
                raise exc.VMAlreadyExistsError(f"VM {vm_id!r} already exists")
            vm = self.create_vm(
                vm_id,
                vm_type=vm_type,
                networked=networked,
                persistent=True,
                config=config,
                engine=engine,
                lua_executable=lua_executable,
                sandbox=sandbox,
                memory_limit=memory_limit,
                cpu_limit=cpu_limit,
                allowed_paths=allowed_paths,
            )
            try:
                session = InteractiveSession(vm_id, vm, debug_mode=self.debug_mode)
                session.start()
                adopt = getattr(vm, "_adopt_session", None)
                if adopt is not None:  # an XCPngVM: its send_input/read_output use this session
                    adopt(session)
                self.session_manager.add_session(session)
                self._made_for_session[vm_id] = vm
            except BaseException:
                self.vms.pop(vm_id, None)
                vm.close()
                raise
        if auto_attach:
            session.attach()
        return session

    def _session_terminated(self, session: InteractiveSession) -> None:
        """session_manager.terminate_session(id) ended a session: the VM
        create_interactive_vm made for it goes too, as with
        terminate_vm_session (it would keep running, an interpreter process
        on the process engine, and hold the id)."""
        with self._lock:
            vm = self.vms.get(session.session_id)
            if vm is None or vm is not session.vm or self._made_for_session.get(session.session_id) is not vm:
                return
            del self._made_for_session[session.session_id]
            del self.vms[session.session_id]
            self._futures.pop(session.session_id, None)
        vm.close()

    def _session(self, vm_id: str) -> InteractiveSession:
        return self.session_manager.get_session(vm_id)

    def _session_or_none(self, vm_id: str) -> Optional[InteractiveSession]:
        try:
            return self.session_manager.get_session(vm_id)
        except exc.SessionNotFoundError:
            return None

    def attach_to_vm(self, vm_id: str, output_callback: Optional[OutputCallback] = None) -> InteractiveSession:
        """Attach to a VM's session (SessionNotFoundError when it has none;
        AttachError when already attached)."""
        session = self._session(vm_id)
        session.attach(output_callback)
        return session

    def detach_from_vm(self, vm_id: str) -> None:
        """Detach from a VM's session (DetachError when not attached)."""
        self._session(vm_id).detach()

    def send_input(self, vm_id: str, input_text: Code) -> None:
        """Send input to a VM's session; returns at once."""
        self._session(vm_id).send_input(input_text)

    def read_output(self, vm_id: str, timeout: float = 0.1, stream: str = "both") -> str:
        """Output of a VM's session produced so far; see InteractiveSession.read_output."""
        return self._session(vm_id).read_output(timeout=timeout, stream=stream)

    def execute_interactive_command(self, vm_id: str, command: Code, timeout: float = 5.0) -> str:
        """Run a command in a VM's session and return its output text."""
        return self._session(vm_id).execute_and_wait(command, timeout=timeout)

    def execute_interactive(self, vm_id: str, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """Run a chunk in a VM's session and return its complete result."""
        return self._session(vm_id).execute_interactive(lua_code, timeout=timeout)

    def interrupt_vm(self, vm_id: str) -> None:
        """Interrupt the chunk running in a VM's session, keeping its state."""
        self._session(vm_id).interrupt()

    def list_sessions(self) -> Dict[str, Dict[str, Any]]:
        """``{vm_id: details}`` of every interactive session."""
        return self.session_manager.list_sessions()

    list_interactive_sessions = list_sessions

    def terminate_vm_session(self, vm_id: str) -> bool:
        """Terminate a VM's session and the VM. SessionNotFoundError when the
        id names neither."""
        check_id(vm_id, "vm_id")
        with self._lock:
            known = vm_id in self.vms or self.session_manager.has_session(vm_id)
        if not known:
            raise exc.SessionNotFoundError(f"no VM or session with id {vm_id!r}")
        return self.remove_vm(vm_id)

    # -- clusters ----------------------------------------------------------
    def create_vm_cluster(
        self,
        cluster_id: str,
        size: int,
        networked: bool = False,
        persistent: bool = False,
        *,
        engine: Optional[str] = None,
        lua_executable: Optional[str] = None,
    ) -> VMCluster:
        """Create ``size`` VMs named ``<cluster_id>_0`` ... as one cluster."""
        _check_count(size, "size (a cluster needs at least one VM)")
        with self._lock:
            if cluster_id in self.clusters:
                raise exc.VMAlreadyExistsError(f"cluster {cluster_id!r} already exists")
            ids = []
            try:
                for i in range(size):
                    vm_id = f"{cluster_id}_{i}"
                    self.create_vm(
                        vm_id, networked=networked, persistent=persistent, engine=engine, lua_executable=lua_executable
                    )
                    ids.append(vm_id)
            except BaseException:
                for vm_id in ids:
                    self.remove_vm(vm_id)
                raise
            cluster = VMCluster(cluster_id, ids, self)
            self.clusters[cluster_id] = cluster
        return cluster

    def _cluster(self, cluster_id: str) -> VMCluster:
        with self._lock:
            cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise exc.VMManagerError(f"no cluster with id {cluster_id!r}")
        return cluster

    def broadcast_to_cluster(
        self, cluster_id: str, lua_code: Code, timeout: Optional[float] = None
    ) -> Dict[str, Future[ExecResult]]:
        """Run the same code on every VM of a cluster in the background."""
        return {vm_id: self.execute_vm_async(vm_id, lua_code, timeout) for vm_id in self._cluster(cluster_id).vm_ids}

    def wait_for_cluster(self, cluster_id: str, timeout: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        """Results of every VM's last async call, waiting up to ``timeout``
        seconds in all; a failed call, or one still running then, gives
        ``{error, success: False, stdout: '', stderr, return_code: -1}``."""
        if timeout is not None:
            wait_ms(timeout)  # a number >= 0, not NaN
        results: Dict[str, Dict[str, Any]] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        for vm_id in self._cluster(cluster_id).vm_ids:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                result = self.wait_for_vm(vm_id, left)
            except Exception as err:  # reported per VM, as the original did
                result = {"error": str(err), "success": False, "stdout": "", "stderr": str(err), "return_code": -1}
            if result is not None:
                results[vm_id] = result
        return results

    def cleanup_cluster(self, cluster_id: str) -> None:
        """Stop and forget every VM of a cluster."""
        cluster = self._cluster(cluster_id)
        for vm_id in cluster.vm_ids:
            self.remove_vm(vm_id)
        with self._lock:
            self.clusters.pop(cluster_id, None)

    # -- shutdown --------------------------------------------------------
    def shutdown_all(self) -> None:
        """Stop every VM and the background workers. Calling it twice is
        harmless, and the manager can create new VMs afterwards. From an
        output callback of one of its VMs it raises ReentrantCallError and
        stops nothing."""
        with self._lock:
            # Under the lock that create_interactive_vm holds while it
            # registers a VM and its session, so none is made in between
            # (it stayed listed with its VM closed); checked first, so a
            # refusal changes nothing.
            self._check_not_delivering([*self.vms.values(), *self.session_manager.sessions()], "shutdown_all()")
            taken = self.session_manager.take_all()
            vms = list(self.vms.values())
            self.vms.clear()
            self._made_for_session.clear()
            self._futures.clear()
            self.clusters.clear()
            executor, self._executor = self._executor, None
        for session in taken:
            session.terminate()
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


class VMCluster:
    """A named group of VMs created by :meth:`VMManager.create_vm_cluster`."""

    def __init__(self, cluster_id: str, vm_ids: List[str], manager: VMManager) -> None:
        self.cluster_id = cluster_id
        self.vm_ids = list(vm_ids)
        self._manager = manager

    def __len__(self) -> int:
        return len(self.vm_ids)

    def __repr__(self) -> str:
        return f"<VMCluster {self.cluster_id!r} size={len(self.vm_ids)}>"

    def broadcast(self, lua_code: Code, timeout: Optional[float] = None) -> Dict[str, Future[ExecResult]]:
        return self._manager.broadcast_to_cluster(self.cluster_id, lua_code, timeout)

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Dict[str, Any]]:
        return self._manager.wait_for_cluster(self.cluster_id, timeout)

    def cleanup(self) -> None:
        self._manager.cleanup_cluster(self.cluster_id)
