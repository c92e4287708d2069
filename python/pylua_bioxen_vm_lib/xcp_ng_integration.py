"""XCPngVM: a Lua VM inside an XCP-ng virtual machine.

``start()`` does the spec's five steps in the core: log in to XAPI
(XML-RPC — XCP-ng has no REST API), create the VM from the template (clone,
provision, network), start it and wait for its address, connect over SSH
(host key checked against ``vm_known_hosts``), and start the Lua driver
there. ``execute_string`` then returns exactly what a basic VM returns.
``stop()`` shuts the VM down and destroys it with its disks unless the
config says ``persistent``.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from typing import Any, Dict, Mapping, Optional

from . import _ffi
from . import exceptions as exc
from ._redact import SECRET_KEYS as SECRET_KEYS  # re-exported: the keys redact hides
from ._redact import redact_config, redact_userinfo
from .factory import validate_xcpng_config
from .interactive_session import InteractiveSession
from .vm import BasicLuaVM, Code, ExecResult
from .xapi_client import XAPIClient

logger = logging.getLogger("pylua_bioxen_vm_lib.xcpng")


def _flag(value: Any) -> bool:
    """A true/false setting read as the engine reads it (xcpng/config.go):
    True, or one of the strings "true", "1", "yes". bool("false") is True,
    and made vm.xapi_client skip TLS verification for xcp_insecure="false"."""
    return value is True or (isinstance(value, str) and value in ("true", "1", "yes"))


def redact(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The config as it may be shown: passwords as '***', the user
    information of ``xcp_host``/``xapi_url`` as '***'."""
    return redact_config(config)


class XCPngVM(BasicLuaVM):
    """``XCPngVM(vm_id, config)`` — see the module doc. Config keys: the
    spec's ``xcp_host``, ``xcp_username``, ``xcp_password``,
    ``template_name``, ``vm_username``, ``vm_password``, or the alternates
    ``xapi_url``, ``username``, ``password``, ``template``, ``vm_name``;
    plus ``vm_key_file``, ``vm_use_agent``, ``vm_known_hosts``, ``vm_trust_on_first_use``,
    ``xcp_tls_fingerprint``, ``xcp_tls_ca_file``, ``xcp_insecure``,
    ``vm_lua``, ``persistent`` (docs/xcpng.md lists them all)."""

    vm_type = "xcpng"

    def __init__(self, vm_id: str, config: Optional[Mapping[str, Any]], debug_mode: bool = False) -> None:
        cfg = validate_xcpng_config(config)
        super().__init__(vm_id, engine="xcpng", persistent=True, debug_mode=debug_mode, sandbox=False)
        self._config = cfg
        # The interpreter the driver runs in the guest (get_info shows it).
        self.lua_executable = str(cfg.get("vm_lua") or "lua5.4")
        # What may be shown (get_vm_info, logs): no password, no URL user
        # information. The secrets stay in _config, for the core only.
        self.config = redact(cfg)
        self._session: Optional[InteractiveSession] = None
        self._session_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._handle else "stopped")
        host = redact_userinfo(self._config.get("xcp_host") or self._config.get("xapi_url"))
        return f"<XCPngVM {self.vm_id!r} host={host!r} {state}>"

    def _engine_config(self) -> bytes:
        return json.dumps(self._config).encode()

    @property
    def session_active(self) -> bool:
        return self._session is not None and self._session.is_running()

    @property
    def xapi_client(self) -> XAPIClient:
        """The spec's ``vm.xapi_client``: an :class:`XAPIClient` for this
        VM's pool, with its credentials and TLS settings (a new one each
        time; it holds no connection)."""
        cfg = self._config

        def pick(*keys: str) -> Any:
            return next((cfg[k] for k in keys if cfg.get(k) not in (None, "")), None)

        return XAPIClient(
            str(pick("xcp_host", "xapi_url") or ""),
            str(pick("xcp_username", "username") or ""),
            str(pick("xcp_password", "password") or ""),
            verify_ssl=not _flag(cfg.get("xcp_insecure")),
            ca_file=pick("xcp_tls_ca_file"),
            fingerprint=pick("xcp_tls_fingerprint"),
            allow_loopback_ip=_flag(cfg.get("xcp_allow_loopback_ip")),
            ssh_port_key=pick("vm_ssh_port_key"),
        )

    @property
    def ssh_session(self) -> Optional[InteractiveSession]:
        """The spec's ``vm.ssh_session``: the interactive Lua session that
        runs over this VM's SSH connection, or None until one is started
        (``send_input``, ``read_output`` or a manager's
        ``create_interactive_vm``). The SSH connection itself belongs to
        the core."""
        return self._session

    def _adopt_session(self, session: InteractiveSession) -> None:
        """Make session (a manager's, on this VM) the one send_input and
        read_output use: two sessions each saw only their own output."""
        with self._session_lock:
            if self._session is not None and self._session is not session and self._session.is_running():
                self._session.terminate()
            self._session = session

    # -- interactive session (the original's send_input/read_output) -------
    def _ensure_session(self) -> InteractiveSession:
        # One session for all threads: two first send_input calls made two,
        # and one thread's input went to a session nobody read.
        with self._session_lock:
            if self._session is None or not self._session.is_running():
                self._session = InteractiveSession(self.vm_id, self)
                self._session.start()
            return self._session

    def send_input(self, input_text: Code) -> bool:
        """Send input to the VM's interactive Lua session (starting the VM
        and the session if needed); returns True once queued."""
        self._ensure_session().send_input(input_text)
        return True

    def read_output(self, timeout: float = 1.0, stream: str = "both") -> str:
        """Output of the interactive session produced so far."""
        return self._ensure_session().read_output(timeout=timeout, stream=stream)

    def is_interactive_running(self) -> bool:
        return self.session_active

    # -- packages ------------------------------------------------------------
    def install_package(self, package_name: str) -> bool:
        """Install a Lua package in the VM with luarocks over SSH, from the
        library's repositories; success comes from luarocks' exit status.
        Raises PackageError with luarocks' output on failure."""
        if not isinstance(package_name, str) or not package_name or any(c in package_name for c in " \t\n/;'\"$`\\"):
            raise exc.InvalidArgumentError(f"invalid package name {package_name!r}")
        from . import _packages

        handle = self._running_handle()
        request = {
            "package": package_name,
            "home": str(_packages.home()),
            "catalogs": _packages.default_catalogs(),
            "default_repos": _packages.default_repos(),
        }
        try:
            info = _ffi.json_call(
                functools.partial(_ffi.vm_install_package, handle),
                request,
                f"VM {self.vm_id!r}: install_package {package_name}",
            )
        except exc.LuaVMError as err:
            raise _packages.package_error(err) from err
        logger.debug("installed %s in %s: %s", package_name, self.vm_id, info)
        return True

    def get_vm_info(self) -> Dict[str, Any]:
        info = self.get_info()
        info.update(config=self.config, session_active=self.session_active)
        return info

    def stop(self) -> None:
        if self._session is not None:
            self._session.terminate()
            self._session = None
        super().stop()

    def execute_string(self, lua_code: Code, timeout: Optional[float] = None) -> ExecResult:
        """Run a chunk in the VM (starting it if needed); the basic VM's
        result dict."""
        return super().execute_string(lua_code, timeout=timeout)
