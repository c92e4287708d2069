"""XAPIClient: XCP-ng's management API, over XML-RPC.

XCP-ng speaks XML-RPC (and JSON-RPC) at ``/``; it has no REST API (the
original library's REST endpoints answer 404 on real hosts). The client
lives in the core (xapi/): sessions with re-login, pool-master redirects,
deadlines, TLS verified by default, typed failures. Each method here is one
stateless core call that logs in, works and logs out.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import _ffi
from . import exceptions as exc
from ._redact import redact_userinfo
from .vm import finite_seconds


class XAPIClient:
    """``XAPIClient(host, username, password, verify_ssl=True, ...)``.

    ``host`` is a URL (``https://host``, ``http://127.0.0.1:8443``) or a
    bare host name (https). TLS is verified: against the system CAs, a
    ``ca_file``, or a pinned SHA-256 ``fingerprint`` (XCP-ng's self-signed
    certificates); ``verify_ssl=False`` turns verification off explicitly (a value that
    is not a bool is an ArgumentTypeError).
    The password, and any user information in ``host``
    (``https://user:pw@host``), never appear in errors or the repr.
    """

    def __init__(
        self,
        host: str,
        username: str,
        password: str,
        verify_ssl: bool = True,
        *,
        ca_file: Optional[str] = None,
        fingerprint: Optional[str] = None,
        allow_loopback_ip: bool = False,
        ssh_port_key: Optional[str] = None,
        timeout: float = 300.0,
    ) -> None:
        for name, value in (("host", host), ("username", username), ("password", password)):
            if not isinstance(value, str):
                raise exc.ArgumentTypeError(f"XAPIClient {name} must be a str, not {type(value).__name__}")
        if not isinstance(verify_ssl, bool):
            # None or 0 turned verification off; "false" left it on.
            raise exc.ArgumentTypeError(f"XAPIClient verify_ssl must be True or False, not {type(verify_ssl).__name__}")
        self.host = host
        self.username = username
        self._password = password
        self.verify_ssl = verify_ssl
        self.ca_file = ca_file
        self.fingerprint = fingerprint
        self.allow_loopback_ip = allow_loopback_ip
        self.ssh_port_key = ssh_port_key
        self.timeout = finite_seconds(timeout)

    def __repr__(self) -> str:
        return f"<XAPIClient {redact_userinfo(self.host)!r} user={self.username!r} password=***>"

    def _call(self, op: str, **fields: Any) -> Any:
        request = {
            "op": op,
            "url": self.host,
            "username": self.username,
            "password": self._password,
            "ca_file": self.ca_file or "",
            "fingerprint": self.fingerprint or "",
            "insecure": not self.verify_ssl,
            "allow_loopback_ip": self.allow_loopback_ip,
            "ssh_port_key": self.ssh_port_key or "",
            "timeout": self.timeout,
        }
        request.update(fields)
        try:
            return _ffi.json_call(_ffi.remote, request, f"XAPI {redact_userinfo(self.host)}")
        except exc.VMClosedError as err:
            if err.code != _ffi.E_BADHANDLE:
                raise
            # XAPI's HANDLE_INVALID/UUID_INVALID: a ref or UUID that names
            # no object, a bad argument, not a closed library VM.
            raise exc.InvalidArgumentError(str(err), code=err.code) from None

    def authenticate(self) -> bool:
        """Log in (and out); True, or a typed error (VMAuthenticationError
        for bad credentials, HostKeyError for an untrusted certificate,
        XCPngConnectionError when unreachable)."""
        return bool(self._call("xapi_login")["ok"])

    def list_vms(self) -> List[Dict[str, Any]]:
        """VMs of the pool (no templates, snapshots or control domains)."""
        return self._call("xapi_vms") or []

    def find_template(self, template_name: str) -> str:
        """The reference of a template by name_label (or UUID)."""
        return self._call("xapi_find_template", template=template_name)["ref"]

    def create_vm_from_template(self, template_name: str, vm_name: str) -> Dict[str, Any]:
        """Provision a VM from a template, start it and wait for its address;
        ``{ref, uuid, name, ip, ssh_port}``. Anything created is removed
        again if a step fails."""
        return self._call("xapi_launch", template=template_name, name=vm_name)

    def get_power_state(self, vm_ref: str) -> str:
        return self._call("xapi_power_state", ref=vm_ref)["power_state"]

    def start_vm(self, vm_ref: str) -> Dict[str, Any]:
        """Boot a halted VM (one already running is left as it is) and wait
        for its address; ``{ref, ip, ssh_port}``. XAPI's own refusal (a
        paused or suspended VM: VM_BAD_POWER_STATE) is a typed error."""
        return self._call("xapi_start", ref=vm_ref)

    def stop_vm(self, vm_ref: str) -> None:
        """Clean shutdown, then hard shutdown after 60 s."""
        self._call("xapi_shutdown", ref=vm_ref)

    def delete_vm(self, vm_ref: str) -> None:
        """Shut the VM down if needed, destroy it and its disks."""
        self._call("xapi_destroy", ref=vm_ref)
