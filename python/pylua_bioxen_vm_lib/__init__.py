"""pylua_bioxen_vm_lib: run Lua code from Python, safely and fast.

Quick start::

    from pylua_bioxen_vm_lib import create_vm
    vm = create_vm("my_vm")
    vm.execute_string("return 2 + 2")["stdout"]   # '4'
"""

from __future__ import annotations

from . import exceptions
from ._ffi import version as _core_version
from .exceptions import *  # noqa: F401,F403  (the original exported every exception)
from .exceptions import __all__ as _exception_names
from .factory import VM_TYPES, create_vm
from .interactive_session import InteractiveSession, SessionManager
from .logger import VMLogger
from .lua_process import LuaProcess
from .networking import NetworkedLuaVM
from .values import LuaBoolKey, LuaOpaque, LuaTableKey
from .vm import BasicLuaVM, ExecResult
from .vm_manager import VMCluster, VMManager
from .xcp_ng_integration import XCPngVM

__version__ = "0.2.0"


def __getattr__(name: str) -> str:
    # core_version asks the library, which is loaded at its first use (not
    # at import: see _ffi, "os.fork()").
    if name == "core_version":
        return str(_core_version().decode())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "create_vm",
    "VM_TYPES",
    "BasicLuaVM",
    "ExecResult",
    "LuaOpaque",
    "LuaTableKey",
    "LuaBoolKey",
    "LuaProcess",
    "NetworkedLuaVM",
    "VMManager",
    "VMCluster",
    "InteractiveSession",
    "XCPngVM",
    "SessionManager",
    "VMLogger",
    "exceptions",
    *_exception_names,
]
