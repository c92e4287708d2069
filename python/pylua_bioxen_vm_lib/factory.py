"""create_vm: the original library's VM factory."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Dict, Literal, Mapping, Optional, Sequence, Union, overload

from . import _ffi
from . import exceptions as exc
from .logger import ROOT_LOGGER, enable_debug, env_debug
from .vm import BasicLuaVM

if TYPE_CHECKING:
    from .xcp_ng_integration import XCPngVM

VM_TYPES = ("basic", "xcpng")

# XCP-ng configuration keys: the spec's names, then the alternates it also
# shows. Each required setting may be given under either name.
XCPNG_REQUIRED = (
    ("xcp_host", "xapi_url"),
    ("xcp_username", "username"),
    ("xcp_password", "password"),
    ("template_name", "template"),
)


def _fspath(v: Any) -> Any:
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, (list, tuple)):
        return [os.fspath(x) if isinstance(x, os.PathLike) else x for x in v]
    return v


def validate_xcpng_config(config: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """Check an XCP-ng VM configuration; raise ConfigurationError naming
    every missing setting. Secrets are never put into the message."""
    if config is None:
        raise exc.ConfigurationError(
            "vm_type='xcpng' needs a config dict with " + ", ".join(f"{a!r} (or {b!r})" for a, b in XCPNG_REQUIRED)
        )
    if not isinstance(config, Mapping):
        raise exc.ConfigurationError(f"config must be a dict, not {type(config).__name__}")
    missing = [f"{a!r} (or {b!r})" for a, b in XCPNG_REQUIRED if not config.get(a) and not config.get(b)]
    if missing:
        raise exc.ConfigurationError("XCP-ng config is missing " + ", ".join(missing))
    # Paths may be given as os.PathLike (vm_key_file also as a list of them).
    cfg = {k: _fspath(v) for k, v in config.items()}
    # The rest (unknown keys, wrong types) as the engine will read it at
    # start(), so that a typo such as "vm_pasword" fails here.
    try:
        _ffi.json_call(_ffi.remote, {"op": "xcpng_check_config", "config": cfg}, "")
    except exc.InvalidArgumentError as err:
        raise exc.ConfigurationError(str(err)) from None
    except (TypeError, ValueError) as err:  # json: a value that is not JSON (an object, a cycle)
        raise exc.ConfigurationError(f"XCP-ng config values must be strings, numbers or booleans: {err}") from None
    return cfg


@overload
def create_vm(
    vm_id: str,
    vm_type: Literal["xcpng"],
    networked: bool = False,
    persistent: bool = False,
    debug_mode: bool = False,
    lua_executable: str = "lua",
    config: Optional[Mapping[str, Any]] = None,
    *,
    engine: Optional[str] = None,
    sandbox: bool = True,
    environment: Optional[str] = None,
    memory_limit: Optional[int] = None,
    cpu_limit: Optional[float] = None,
    allowed_paths: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
) -> XCPngVM: ...


@overload
def create_vm(
    vm_id: str = "default",
    vm_type: str = "basic",
    networked: bool = False,
    persistent: bool = False,
    debug_mode: bool = False,
    lua_executable: str = "lua",
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
    vm_id: str = "default",
    vm_type: str = "basic",
    networked: bool = False,
    persistent: bool = False,
    debug_mode: bool = False,
    lua_executable: str = "lua",
    config: Optional[Mapping[str, Any]] = None,
    *,
    engine: Optional[str] = None,
    sandbox: bool = True,
    environment: Optional[str] = None,
    memory_limit: Optional[int] = None,
    cpu_limit: Optional[float] = None,
    allowed_paths: Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]], None] = None,
) -> BasicLuaVM:
    """Create a VM.

    ``vm_type="basic"`` gives a :class:`BasicLuaVM` on this machine: the
    embedded engine by default, or a real interpreter process when
    ``engine="process"`` or a ``lua_executable`` other than "lua" (e.g.
    "lua5.4", "luajit") is given. ``memory_limit`` and ``cpu_limit`` are the
    VM's limits, ``allowed_paths`` the directories sandboxed code may open
    files in (see :class:`BasicLuaVM`). ``vm_type="xcpng"`` gives an
    :class:`XCPngVM` configured by ``config`` (docs/xcpng.md); it does not
    take ``networked``, ``engine``, ``environment``, ``memory_limit``,
    ``cpu_limit`` or ``allowed_paths`` (ConfigurationError when one is given); a ``config``
    without ``vm_type="xcpng"`` raises ConfigurationError.
    """
    if not isinstance(vm_type, str) or vm_type not in VM_TYPES:
        raise exc.VMManagerError(f"unknown vm_type {vm_type!r}; valid types: {', '.join(repr(t) for t in VM_TYPES)}")
    if env_debug():
        enable_debug()
    elif debug_mode and isinstance(vm_id, str):
        # This VM's logger only: debug_mode is a VM's option (it turned the
        # whole library's debug output on for good).
        enable_debug(logging.getLogger(f"{ROOT_LOGGER}.vm.{vm_id}"))
    if vm_type == "xcpng":
        from .xcp_ng_integration import XCPngVM

        # Options an XCPngVM does not apply (its guest is the isolation
        # boundary: docs/sandbox.md, "Not covered") were dropped silently:
        # a memory_limit or cpu_limit given for it bounded nothing.
        ignored = [
            f"{name}={value!r}"
            for name, value, default in (
                ("networked", networked, False),
                ("environment", environment, None),
                ("memory_limit", memory_limit, None),
                ("cpu_limit", cpu_limit, None),
                ("allowed_paths", allowed_paths, None),
            )
            if value != default
        ]
        if engine is not None and engine != "xcpng":
            ignored.insert(0, f"engine={engine!r}")
        if ignored:
            raise exc.ConfigurationError(
                f"vm_type='xcpng' does not apply {', '.join(ignored)} (the guest VM's own vCPUs, memory and "
                "packages bound it: docs/xcpng.md)"
            )

        return XCPngVM(vm_id, config, debug_mode=debug_mode)
    if config is not None:
        # A config is the XCP-ng guest's: given without vm_type="xcpng" it
        # was ignored, and the code meant for that guest ran on this host.
        raise exc.ConfigurationError(f"config is for vm_type='xcpng' (docs/xcpng.md); vm_type={vm_type!r} takes none")
    if networked:
        from .networking import NetworkedLuaVM

        return NetworkedLuaVM(
            vm_id,
            engine=engine,
            lua_executable=lua_executable,
            persistent=persistent,
            debug_mode=debug_mode,
            sandbox=sandbox,
            environment=environment,
            memory_limit=memory_limit,
            cpu_limit=cpu_limit,
            allowed_paths=allowed_paths,
        )
    return BasicLuaVM(
        vm_id,
        engine=engine,
        lua_executable=lua_executable,
        persistent=persistent,
        debug_mode=debug_mode,
        sandbox=sandbox,
        environment=environment,
        memory_limit=memory_limit,
        cpu_limit=cpu_limit,
        allowed_paths=allowed_paths,
    )
