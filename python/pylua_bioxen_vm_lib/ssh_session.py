"""SSHSessionManager: commands and Lua sessions on a machine over SSH.

The SSH client lives in the core (sshsession/, golang.org/x/crypto/ssh):
host keys are checked against a known_hosts file by default (trust on first
use only when asked; a changed key is always refused), passwords and keys,
keepalives, reconnects, remote processes under ``timeout -s KILL``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _ffi
from . import exceptions as exc
from ._redact import redact_userinfo
from .vm import finite_seconds


class SSHSessionManager:
    """``SSHSessionManager(host, username, password=None, key_file=None,
    port=22, known_hosts=None, trust_on_first_use=False)``.

    ``key_file`` is a path (str or os.PathLike) or a list of them, and
    ``known_hosts`` a path; other types raise ArgumentTypeError.

    The password, and any user information in ``host`` (``user:pw@host``),
    never appear in errors or the repr."""

    def __init__(
        self,
        host: str,
        username: str,
        password: Optional[str] = None,
        key_file: Optional[Union[str, os.PathLike[str], Sequence[Union[str, os.PathLike[str]]]]] = None,
        port: int = 22,
        *,
        known_hosts: Optional[Union[str, os.PathLike[str]]] = None,
        trust_on_first_use: bool = False,
    ) -> None:
        self.host = host
        self.username = username
        self._password = password
        for name, v in (("host", host), ("username", username)):
            if not isinstance(v, str):
                raise exc.ArgumentTypeError(f"{name} must be a str, not {type(v).__name__}")
        if password is not None and not isinstance(password, str):
            raise exc.ArgumentTypeError(f"password must be a str or None, not {type(password).__name__}")
        if key_file is None:
            files: List[str] = []
        elif isinstance(key_file, (str, os.PathLike)):
            files = [_path("key_file", key_file)]
        elif isinstance(key_file, (list, tuple)):
            files = [_path("key_file", f) for f in key_file]
        else:
            raise exc.ArgumentTypeError(f"key_file must be a path or a list of paths, not {type(key_file).__name__}")
        self.key_files = files
        self.port = port
        self.known_hosts = None if known_hosts is None else _path("known_hosts", known_hosts)
        self.trust_on_first_use = trust_on_first_use

    def __repr__(self) -> str:
        return f"<SSHSessionManager {self._label()}:{self.port}>"

    def _label(self) -> str:
        return f"{self.username}@{redact_userinfo(self.host)}"

    def run_command(self, command: str, timeout: float = 300.0, stdin: str = "") -> Dict[str, Any]:
        """Run a command on its own channel under a remote kill after
        ``timeout`` seconds: ``{exit_status, signal, stdout, stderr}``."""
        request = {
            "op": "ssh_run",
            "host": self.host,
            "port": self.port,
            "user": self.username,
            "password": self._password or "",
            "key_files": self.key_files,
            "known_hosts": self.known_hosts or "",
            "trust_on_first_use": self.trust_on_first_use,
            "command": command,
            "stdin": stdin,
            "timeout": finite_seconds(timeout),
        }
        return _ffi.json_call(_ffi.remote, request, f"SSH {self._label()}")

    def connect(self) -> bool:
        """Check that the host is reachable and the login works."""
        return self.run_command("true", timeout=60)["exit_status"] == 0


def _path(name: str, v: Any) -> str:
    """A path argument as str: str or os.PathLike, else ArgumentTypeError."""
    if isinstance(v, os.PathLike):
        v = os.fspath(v)
    if not isinstance(v, str):
        raise exc.ArgumentTypeError(f"{name} must be a str or os.PathLike, not {type(v).__name__}")
    return v
