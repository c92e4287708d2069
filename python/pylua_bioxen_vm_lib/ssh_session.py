"""SSHSessionManager: commands and Lua sessions on a machine over SSH.

The SSH client lives in the core (sshsession/, golang.org/x/crypto/ssh):
host keys are checked against a known_hosts file by default (trust on first
use only when asked; a changed key is always refused), passwords and keys,
keepalives, reconnects, remote processes under ``timeout -s KILL``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from . import _ffi
from ._redact import redact_userinfo
from .vm import finite_seconds


class SSHSessionManager:
    """``SSHSessionManager(host, username, password=None, key_file=None,
    port=22, known_hosts=None, trust_on_first_use=False)``.

    The password, and any user information in ``host`` (``user:pw@host``),
    never appear in errors or the repr."""

    def __init__(
        self,
        host: str,
        username: str,
        password: Optional[str] = None,
        key_file: Optional[Union[str, List[str]]] = None,
        port: int = 22,
        *,
        known_hosts: Optional[str] = None,
        trust_on_first_use: bool = False,
    ) -> None:
        self.host = host
        self.username = username
        self._password = password
        self.key_files = [key_file] if isinstance(key_file, str) else list(key_file or [])
        self.port = port
        self.known_hosts = known_hosts
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
