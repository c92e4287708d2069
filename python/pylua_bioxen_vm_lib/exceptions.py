"""Exceptions of pylua_bioxen_vm_lib.

Every exception the library raises derives from :class:`LuaVMError`. The
names are those of the original library (0.1.x), so existing ``except``
clauses keep working; a few also derive from the matching built-in exception
(``TimeoutError``, ``FileNotFoundError``, ``ValueError``, ``TypeError``,
``MemoryError``) so that generic handlers catch them too.

A Lua syntax or runtime error in user code is *not* an exception: it comes
back as a result with ``success`` False (as the original's did).
"""

from __future__ import annotations

from typing import Optional


class LuaVMError(Exception):
    """Root of the library's exceptions. ``code`` is the C status code
    (``BIOXEN_*`` in bioxen.h) when the error came from the core, else None."""

    code: Optional[int] = None

    def __init__(self, message: str = "", *args: object, code: Optional[int] = None) -> None:
        super().__init__(message, *args)
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LuaProcessError(LuaVMError):
    """A Lua engine failed (for example the interpreter process crashed)."""

    def __init__(
        self,
        message: str = "",
        return_code: Optional[int] = None,
        stderr: Optional[str] = None,
        *,
        code: Optional[int] = None,
    ) -> None:
        super().__init__(message, code=code)
        self.return_code = return_code
        self.stderr = stderr


class LuaNotFoundError(LuaVMError):
    """The Lua interpreter asked for is not installed."""


class LuaFileNotFoundError(LuaVMError, FileNotFoundError):
    """A script passed to ``execute_file`` does not exist or cannot be read."""


class VMTimeoutError(LuaProcessError, TimeoutError):
    """A call ran past its timeout. The VM stays usable."""


class CPULimitError(VMTimeoutError):
    """A call used up its CPU-time budget (``cpu_limit``). The VM stays usable
    (a process-engine VM starts a new interpreter; a persistent one loses its
    globals)."""


class VMConnectionError(LuaVMError):
    """A connection to a VM (or its host) failed."""


class VMClosedError(LuaVMError):
    """The VM was stopped or closed and cannot run code."""


class ForkedProcessError(LuaVMError, RuntimeError):
    """The library was used in a child made by ``os.fork()`` (or
    multiprocessing's "fork" start method) of a process that had loaded it.
    The Go runtime inside libbioxen does not survive a fork (its threads stay
    in the parent), so every call in the child would hang, and the VMs
    inherited from the parent are the parent's (closing one there would
    kill the parent's interpreter). Use the "spawn" or "forkserver" start
    method, or exec a new program. Closing objects in the child is allowed
    and does nothing."""


class InvalidArgumentError(LuaVMError, ValueError):
    """An argument was refused, by the library or by the core (for example a
    NUL byte in code or in a file path, a NaN or negative timeout)."""


class ArgumentTypeError(LuaVMError, TypeError):
    """An argument of the wrong type (for example code that is neither str
    nor bytes, a timeout that is not a number). Also a TypeError."""


class CodeTooLargeError(LuaVMError, ValueError):
    """Source code over the VM's size limit."""


class LuaMemoryError(LuaVMError, MemoryError):
    """A memory limit was hit."""


class ScriptGenerationError(LuaVMError):
    """Generating a Lua script from a template failed."""


class NetworkingError(LuaVMError):
    """A networking operation of a networked VM failed."""


class LuaSocketNotFoundError(NetworkingError):
    """LuaSocket is required but not installed for the interpreter."""


class PTYError(LuaVMError):
    """Kept for compatibility; this library uses no pseudo-terminals."""


class XCPngConnectionError(VMConnectionError):
    """Talking to an XCP-ng host (XAPI) failed."""


class VMAuthenticationError(VMConnectionError):
    """A login was refused (XAPI credentials, SSH authentication). The
    message never contains the password."""


class HostKeyError(VMConnectionError):
    """An SSH host key is unknown or changed, or a TLS certificate is not
    trusted. Never bypassed silently."""


class InteractiveSessionError(LuaVMError):
    """Interactive session management failed."""


class AttachError(InteractiveSessionError):
    """Attaching to a session failed."""


class DetachError(InteractiveSessionError):
    """Detaching from a session failed."""


class SessionNotFoundError(InteractiveSessionError):
    """No session has the given id."""


class SessionAlreadyExistsError(InteractiveSessionError):
    """A session with the given id exists already."""


class IOThreadError(InteractiveSessionError):
    """A session's I/O failed."""


class SessionStateError(InteractiveSessionError):
    """The session is in the wrong state for the operation."""


class ReentrantCallError(InteractiveSessionError, RuntimeError):
    """An output callback called back into the session or VM whose output it
    receives with a call that waits for the VM (running code, waiting,
    terminating, closing). The chunk that produced the output waits for the
    callback, so the call would deadlock; it raises this error instead."""


class EnvironmentNotFoundError(LuaVMError, LookupError):
    """No package environment has the given name."""


class PackageError(LuaVMError):
    """A package operation (install, remove, lock ...) failed."""


class LuaRocksError(PackageError, LuaProcessError):
    """luarocks failed during a package operation (a build, a refused build
    type, a broken rock). Also a LuaProcessError, which is what these
    failures raised before they became package errors."""


class RepositoryUnreachableError(PackageError, VMConnectionError):
    """No package repository could be reached (luarocks never ran and
    nothing was changed). Also a VMConnectionError, the library's class for
    a host that cannot be reached."""


class VMManagerError(LuaVMError):
    """A VM manager operation failed."""


class ProcessRegistryError(VMManagerError):
    """The registry of persistent VMs failed."""


class VMNotFoundError(VMManagerError, SessionNotFoundError):
    """No VM has the given id (also a SessionNotFoundError, since every VM
    id names its session)."""


class VMAlreadyExistsError(VMManagerError, SessionAlreadyExistsError):
    """A VM with the given id exists already."""


class ConfigurationError(VMManagerError, ValueError):
    """A VM configuration is missing keys or has wrong values."""


class FeatureNotAvailableError(VMManagerError, NotImplementedError):
    """The feature exists in the API but is not available in this release."""


__all__ = [
    "LuaVMError",
    "LuaProcessError",
    "LuaNotFoundError",
    "LuaFileNotFoundError",
    "VMTimeoutError",
    "CPULimitError",
    "VMConnectionError",
    "VMClosedError",
    "ForkedProcessError",
    "InvalidArgumentError",
    "ArgumentTypeError",
    "CodeTooLargeError",
    "LuaMemoryError",
    "ScriptGenerationError",
    "NetworkingError",
    "LuaSocketNotFoundError",
    "PTYError",
    "XCPngConnectionError",
    "VMAuthenticationError",
    "HostKeyError",
    "InteractiveSessionError",
    "AttachError",
    "DetachError",
    "SessionNotFoundError",
    "SessionAlreadyExistsError",
    "IOThreadError",
    "SessionStateError",
    "ReentrantCallError",
    "EnvironmentNotFoundError",
    "PackageError",
    "LuaRocksError",
    "RepositoryUnreachableError",
    "VMManagerError",
    "ProcessRegistryError",
    "VMNotFoundError",
    "VMAlreadyExistsError",
    "ConfigurationError",
    "FeatureNotAvailableError",
]
