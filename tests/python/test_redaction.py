"""Secrets in a URL's user information (``https://root:pw@host``) never reach
a repr, an exception message, a log record or an info dict on the Python
side (docs/xcpng.md, "Secrets"). Needs no simulator: the hosts are an
unreachable 127.0.0.1 port, so every call fails fast."""

from __future__ import annotations

import logging

import pytest
from pylua_bioxen_vm_lib import VMManager, create_vm
from pylua_bioxen_vm_lib import exceptions as exc
from pylua_bioxen_vm_lib._redact import redact_config, redact_userinfo
from pylua_bioxen_vm_lib.ssh_session import SSHSessionManager
from pylua_bioxen_vm_lib.xapi_client import XAPIClient
from pylua_bioxen_vm_lib.xcp_ng_integration import XCPngVM, redact

SECRET = "UrlS3cret"
PASSWORD = "XcpPassw0rd"
VM_PASSWORD = "VmPassw0rd"
URL = f"https://root:{SECRET}@127.0.0.1:1"
SECRETS = (SECRET, PASSWORD, VM_PASSWORD)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text!r}"


@pytest.fixture
def config(tmp_path):
    return {
        "xcp_host": URL,
        "xcp_username": "root",
        "xcp_password": PASSWORD,
        "template_name": "t",
        "vm_username": "u",
        "vm_password": VM_PASSWORD,
        "vm_trust_on_first_use": True,
        "vm_known_hosts": str(tmp_path / "known_hosts"),
    }


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("https://h", "https://h"),
        ("https://u:p@h:443/a", "https://***@h:443/a"),
        ("u:p@h", "***@h"),
        ("token@h", "***@h"),
        ("http://h/path@x", "http://h/path@x"),
        ("https://a@b:c@h?q=x@y#f@", "https://***@h?q=x@y#f@"),
        ("/home/u@x/known_hosts", "/home/u@x/known_hosts"),
        ("https://root:pa/ss@127.0.0.1:9", "https://***@127.0.0.1:9"),
        ("root:pa#ss@127.0.0.1", "***@127.0.0.1"),
        ("https://root:p?w@h/x", "https://***@h/x"),
        ("", ""),
        (None, None),
    ],
)
def test_redact_userinfo_follows_the_core_rule(given, shown):
    assert redact_userinfo(given) == shown


def test_redact_config_hides_passwords_and_userinfo(config):
    shown = redact_config(config)
    assert shown["xcp_host"] == "https://***@127.0.0.1:1"
    assert shown["xcp_password"] == shown["vm_password"] == "***"
    assert shown["vm_known_hosts"] == config["vm_known_hosts"]
    assert redact(dict(config, xapi_url=URL))["xapi_url"] == "https://***@127.0.0.1:1"
    assert config["xcp_host"] == URL  # the caller's dict is not touched
    assert_clean(repr(shown))


def test_xcpng_vm_repr_config_and_info(config):
    vm = create_vm("redact_vm", vm_type="xcpng", config=config)
    try:
        assert isinstance(vm, XCPngVM)
        assert "127.0.0.1:1" in repr(vm)
        assert_clean(repr(vm))
        assert vm.config["xcp_host"] == "https://***@127.0.0.1:1"
        assert_clean(repr(vm.config))
        assert_clean(repr(vm.get_vm_info()))
        assert_clean(repr(vm.get_info()))
        assert config["xcp_host"] == URL  # the caller's dict is not touched
        with pytest.raises(exc.LuaVMError) as info:
            vm.start()
        assert_clean(str(info.value))
        assert_clean(repr(info.value))
    finally:
        vm.close()


def test_xapi_client_repr_and_errors():
    client = XAPIClient(URL, "root", PASSWORD, timeout=3)
    with pytest.raises(exc.LuaVMError) as info:
        client.authenticate()
    assert_clean(str(info.value))
    assert "XAPI https://***@127.0.0.1:1" in str(info.value)
    assert "127.0.0.1:1" in repr(client)
    assert_clean(repr(client))
    assert client.host == URL  # the caller's value, used for the calls


def test_xapi_client_error_without_userinfo_names_the_host():
    client = XAPIClient("http://127.0.0.1:1", "root", PASSWORD, timeout=3)
    with pytest.raises(exc.LuaVMError) as info:
        client.authenticate()
    assert "XAPI http://127.0.0.1:1" in str(info.value)
    assert_clean(str(info.value))


def test_ssh_session_manager_repr_and_errors(tmp_path):
    ssh = SSHSessionManager(
        f"root:{SECRET}@127.0.0.1", "u", password=VM_PASSWORD, port=1, known_hosts=str(tmp_path / "kh")
    )
    with pytest.raises(exc.LuaVMError) as info:
        ssh.run_command("true", timeout=3)
    assert_clean(str(info.value))
    assert "SSH u@***@127.0.0.1" in str(info.value)
    assert repr(ssh) == "<SSHSessionManager u@***@127.0.0.1:1>"


def test_ssh_session_manager_error_without_userinfo_names_the_host(tmp_path):
    ssh = SSHSessionManager("127.0.0.1", "u", password=VM_PASSWORD, port=1, known_hosts=str(tmp_path / "kh"))
    assert repr(ssh) == "<SSHSessionManager u@127.0.0.1:1>"
    with pytest.raises(exc.VMConnectionError) as info:
        ssh.run_command("true", timeout=3)
    assert "SSH u@127.0.0.1" in str(info.value)
    assert_clean(str(info.value))


def test_manager_vm_info_has_the_redacted_config(config):
    """docs/xcpng.md: get_vm_info()["config"] is vm.config, also through
    VMManager.get_vm_info (which left it out)."""
    with VMManager() as manager:
        vm = manager.create_vm("info_cfg", vm_type="xcpng", config=config)
        info = manager.get_vm_info("info_cfg")
        assert info["config"] is vm.config and info["config"]["xcp_password"] == "***"
        assert info["session_active"] is False and info["vm_type"] == "xcpng"
        assert_clean(repr(info))


def test_log_records_hold_no_secret(config, tmp_path, caplog):
    """Everything the library logs at DEBUG while these objects are made,
    used and fail, plus what an application logs from their reprs and
    errors (the usual ``logger.exception("... %r", obj)``)."""
    caplog.set_level(logging.DEBUG)
    app = logging.getLogger("pylua_bioxen_vm_lib.test_app")
    manager = VMManager(debug_mode=True)
    try:
        vm = manager.create_vm("redact_log", vm_type="xcpng", config=config)
        app.debug("created %r: %s", vm, manager.get_vm_info("redact_log"))
        try:
            manager.execute_vm_sync("redact_log", "return 1")
        except exc.LuaVMError:
            app.exception("execute on %r failed", vm)
        client = XAPIClient(URL, "root", PASSWORD, timeout=3)
        try:
            client.authenticate()
        except exc.LuaVMError:
            app.exception("login with %r failed", client)
        ssh = SSHSessionManager(
            f"root:{SECRET}@127.0.0.1", "u", password=VM_PASSWORD, port=1, known_hosts=str(tmp_path / "kh")
        )
        try:
            ssh.run_command("true", timeout=3)
        except exc.LuaVMError:
            app.exception("command on %r failed", ssh)
    finally:
        manager.shutdown_all()
    assert any(r.name == "pylua_bioxen_vm_lib.test_app" for r in caplog.records)
    for record in caplog.records:
        assert_clean(record.getMessage())
        if record.exc_info:
            assert_clean(logging.Formatter().formatException(record.exc_info))
    assert_clean(caplog.text)
