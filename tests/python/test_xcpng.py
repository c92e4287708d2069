"""XCP-ng VMs end to end: the real XAPI wire protocol (our simulator,
bin/xapi-sim, speaking XML-RPC) and a real OpenSSH sshd per guest."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import xmlrpc.client
from pathlib import Path

import pytest
from pylua_bioxen_vm_lib import VMManager, create_vm
from pylua_bioxen_vm_lib import exceptions as exc

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "bin" / "xapi-sim"

pytestmark = [
    pytest.mark.skipif(not SIM.exists(), reason="bin/xapi-sim is not built (make build)"),
    pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="openssh-server is not installed"),
    pytest.mark.skipif(shutil.which("lua5.4") is None, reason="lua5.4 is not installed"),
]


@pytest.fixture(scope="module")
def simulator():
    """A simulator for the module: its config line, stopped at the end with
    a check that it holds no VM, VDI or sshd."""
    # The simulator makes its own state directory, readable by the guest
    # user its sshd logs in (pytest's temporary directories are not).
    proc = subprocess.Popen(
        [str(SIM), "-listen", "127.0.0.1:0", "-print-config", "-ip-delay", "50ms"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"xapi-sim printed no config: {proc.stderr.read()}")
    config = json.loads(line)
    yield config
    stats = sim_stats(config)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert stats["vms"] == 0 and stats["vdis"] == 0 and stats["sshd"] == 0, stats


def sim_stats(config):
    server = xmlrpc.client.ServerProxy(config["xcp_host"])
    stats = server.sim.stats()["Value"]
    return {k: int(v) for k, v in stats.items() if isinstance(v, str)}


@pytest.fixture
def config(simulator):
    return dict(simulator)


def test_spec_xcpng_example(config, capsys):
    from pylua_bioxen_vm_lib import create_vm

    # Create an XCP-ng VM with config
    vm_xcpng = create_vm("xcpng_vm", vm_type="xcpng", config=config)
    vm_xcpng.start()
    result = vm_xcpng.execute_string('print("Hello from XCP-ng VM")')
    print(result["stdout"])
    vm_xcpng.stop()

    assert capsys.readouterr().out == "Hello from XCP-ng VM\n"


def test_execute_string_matches_a_basic_vm(config):
    code = "local t = {} for i = 1, 3 do t[i] = i * i end print(table.concat(t, ',')) return #t, 'x'"
    basic = create_vm("basic_ref", lua_executable="lua5.4").execute_string(code)
    with create_vm("xcp_same", vm_type="xcpng", config=config) as vm:
        remote = vm.execute_string(code)
        error = vm.execute_string("error('boom')")
    assert {k: remote[k] for k in ("stdout", "stderr", "return_code", "success", "values")} == {
        k: basic[k] for k in ("stdout", "stderr", "return_code", "success", "values")
    }
    assert not error["success"] and error["error"] == "input:1: boom"


def test_manager_interactive_xcpng(config):
    with VMManager() as manager:
        session = manager.create_interactive_vm("xcp_i", vm_type="xcpng", config=config)
        manager.send_input("xcp_i", "x = 42\nprint('Value:', x)")
        assert session.wait(60)
        assert manager.read_output("xcp_i", timeout=5) == "Value:\t42\n"
        assert manager.execute_vm_sync("xcp_i", "return x + 1")["values"] == [43]
        manager.terminate_vm_session("xcp_i")
        assert manager.list_vms() == []


def test_spec_attributes_and_one_session(config):
    # The spec's XCPngVM has xapi_client and ssh_session; a manager's
    # interactive session on an XCP-ng VM is the one the VM's own
    # send_input/read_output use (each saw only its own output).
    with VMManager() as manager:
        session = manager.create_interactive_vm("xcp_one", vm_type="xcpng", config=config)
        vm = manager.get_vm("xcp_one")
        assert vm.ssh_session is session and vm.session_active
        assert vm.xapi_client.authenticate()
        assert config["xcp_password"] not in repr(vm.xapi_client)
        vm.send_input("print('from the vm')")
        assert session.wait(60)
        assert manager.read_output("xcp_one", timeout=5) == "from the vm\n"
        manager.send_input("xcp_one", "print('from the manager')")
        assert session.wait(60)
        assert vm.read_output(timeout=5) == "from the manager\n"


def test_install_package_in_the_vm(config):
    with create_vm("xcp_pkg", vm_type="xcpng", config=config) as vm:
        assert vm.install_package("bio_compute") is True
        result = vm.execute_string('require("bio_compute") return bio_compute.analyze_sequence("GGCC").gc_content')
        assert result["values"] == [1]
        with pytest.raises(exc.PackageError):
            vm.install_package("no_such_package_anywhere")


def test_wrong_password_is_typed_and_secret(config):
    bad = dict(config, xcp_password="definitely-wrong-pw")
    with pytest.raises(exc.VMAuthenticationError) as info:
        create_vm("xcp_badpw", vm_type="xcpng", config=bad).start()
    assert "definitely-wrong-pw" not in str(info.value)
    assert "definitely-wrong-pw" not in repr(create_vm("xcp_repr", vm_type="xcpng", config=bad))


def test_unknown_template(config):
    with pytest.raises(exc.LuaVMError) as info:
        create_vm("xcp_tmpl", vm_type="xcpng", config=dict(config, template_name="no-such-template")).start()
    assert "no-such-template" in str(info.value)


def test_config_errors_name_the_keys(config):
    with pytest.raises(exc.ConfigurationError) as info:
        create_vm("xcp_cfg", vm_type="xcpng", config={"xcp_host": "http://127.0.0.1:1"})
    assert "xcp_username" in str(info.value)
    typo = dict(config, vm_usernme="x")
    with pytest.raises(exc.ConfigurationError) as info:  # at creation, before anything starts
        create_vm("xcp_typo", vm_type="xcpng", config=typo)
    assert "vm_usernme" in str(info.value)


def test_changed_host_key_is_refused(config, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")  # no key for the guest: refused, never trusted silently
    with pytest.raises(exc.HostKeyError):
        create_vm("xcp_hk", vm_type="xcpng", config=dict(config, vm_known_hosts=str(known))).start()


def test_xapi_client_and_ssh_session_modules(config):
    from pylua_bioxen_vm_lib.ssh_session import SSHSessionManager
    from pylua_bioxen_vm_lib.xapi_client import XAPIClient

    client = XAPIClient(
        config["xcp_host"],
        config["xcp_username"],
        config["xcp_password"],
        allow_loopback_ip=True,
        ssh_port_key=config.get("vm_ssh_port_key"),
    )
    assert client.authenticate()
    assert "***" in repr(client) and config["xcp_password"] not in repr(client)
    vm = client.create_vm_from_template(config["template_name"], "direct-vm")
    try:

        def ssh_to(v: dict) -> SSHSessionManager:
            return SSHSessionManager(
                v["ip"],
                config["vm_username"],
                key_file=config["vm_key_file"],
                port=v["ssh_port"],
                known_hosts=config["vm_known_hosts"],
            )

        ssh = ssh_to(vm)
        assert ssh.connect()
        out = ssh.run_command("lua5.4 -e 'print(6 * 7)'")
        assert out["exit_status"] == 0 and out["stdout"].strip() == "42"
        assert ssh.run_command("exit 3")["exit_status"] == 3
        # The whole lifecycle: stopped, started again (XAPIClient had no
        # start_vm), and a running VM started again is left as it is.
        client.stop_vm(vm["ref"])
        assert client.get_power_state(vm["ref"]) == "Halted"
        again = client.start_vm(vm["ref"])
        assert client.get_power_state(vm["ref"]) == "Running"
        assert again["ref"] == vm["ref"] and again["ip"] and again["ssh_port"]
        assert client.start_vm(vm["ref"])["ip"] == again["ip"]
        ssh = ssh_to(again)
        assert ssh.run_command("echo back")["stdout"] == "back\n"
    finally:
        client.delete_vm(vm["ref"])


def set_fault(config, **fault):
    xmlrpc.client.ServerProxy(config["xcp_host"]).sim.set_fault(fault)


def clear_faults(config):
    xmlrpc.client.ServerProxy(config["xcp_host"]).sim.clear_faults()


def test_ip_never_appears_times_out_and_leaves_nothing(config):
    set_fault(config, kind="no-ip", count=1)
    try:
        with pytest.raises(exc.LuaVMError) as info:
            create_vm("xcp_noip", vm_type="xcpng", config=dict(config, vm_ip_timeout=1)).start()
        assert isinstance(info.value, (exc.VMTimeoutError, exc.LuaProcessError, exc.XCPngConnectionError))
    finally:
        clear_faults(config)
    stats = sim_stats(config)
    assert stats["vms"] == 0 and stats["vdis"] == 0


def test_guest_sshd_down_is_a_connection_error(config):
    set_fault(config, kind="sshd-down", count=1)
    try:
        with pytest.raises(exc.XCPngConnectionError):
            create_vm("xcp_nossh", vm_type="xcpng", config=config).start()
    finally:
        clear_faults(config)
    assert sim_stats(config)["vms"] == 0


def test_failed_xapi_call_cleans_up(config):
    set_fault(config, kind="fail", method="VM.provision", error=["INTERNAL_ERROR", "injected"], count=1)
    try:
        with pytest.raises(exc.LuaVMError) as info:
            create_vm("xcp_fail", vm_type="xcpng", config=config).start()
        assert "INTERNAL_ERROR" in str(info.value)
    finally:
        clear_faults(config)
    stats = sim_stats(config)
    assert stats["vms"] == 0 and stats["vdis"] == 0


def test_timeout_kills_the_remote_interpreter_and_the_vm_recovers(config):
    with create_vm("xcp_to", vm_type="xcpng", config=config) as vm:
        vm.execute_string("kept = 1")
        with pytest.raises(exc.VMTimeoutError):
            vm.execute_string("while true do end", timeout=0.5)
        result = vm.execute_string("return kept, 1 + 1")
        assert result["values"] == [None, 2]  # a new interpreter: globals are gone, as the error said


def test_guest_sshd_killed_mid_session_then_reconnect(config):
    import time

    with create_vm("xcp_kill", vm_type="xcpng", config=config) as vm:
        assert vm.execute_string("return 1")["values"] == [1]
        stats = xmlrpc.client.ServerProxy(config["xcp_host"]).sim.stats()["Value"]
        # The guest's sshd (started by our simulator for this VM) and the
        # per-connection sshd processes it forked: the connection breaks.
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        listeners = {int(p) for p in stats["sshd_pids"]}
        victims = set(listeners)
        grew = True
        while grew:  # every descendant of the guest's sshd: the session's processes
            more = {pid for pid, ppid in parents.items() if ppid in victims} - victims
            grew = bool(more)
            victims |= more
        # The listening sshd stays up, as a real guest's would: the next
        # call reconnects.
        for pid in victims - listeners:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises((exc.XCPngConnectionError, exc.VMTimeoutError, exc.LuaProcessError)):
            vm.execute_string("return 2", timeout=10)
        assert time.monotonic() - start < 12
        assert vm.execute_string("return 3")["values"] == [3]  # reconnected, new interpreter


@pytest.mark.parametrize("flag", ["false", "0", "no", "", False])
def test_xapi_client_reads_flags_as_the_engine_does(flag):
    # The engine reads xcp_insecure "false" (a string) as false; so must
    # vm.xapi_client, or its TLS verification was off (bool("false")).
    cfg = {
        "xcp_host": "https://xcp.invalid",
        "xcp_username": "root",
        "xcp_password": "pw-secret",
        "template_name": "t",
        "xcp_insecure": flag,
        "xcp_allow_loopback_ip": flag,
    }
    client = create_vm("xcp_flags", vm_type="xcpng", config=cfg).xapi_client
    assert client.verify_ssl is True and client.allow_loopback_ip is False
    on = create_vm("xcp_flags_on", vm_type="xcpng", config=dict(cfg, xcp_insecure="true", xcp_allow_loopback_ip="yes"))
    assert on.xapi_client.verify_ssl is False and on.xapi_client.allow_loopback_ip is True


@pytest.mark.parametrize("value", [None, "false", 0, "no"])
def test_xapi_client_verify_ssl_must_be_a_bool(value):
    # Only an explicit False turns TLS verification off: None (a "default"
    # elsewhere) or 0 did, and "false" left it on against the caller's word.
    from pylua_bioxen_vm_lib.xapi_client import XAPIClient

    with pytest.raises(exc.ArgumentTypeError):
        XAPIClient("https://xcp.invalid", "root", "pw", verify_ssl=value)


def test_xapi_client_unknown_ref_is_an_invalid_argument(config):
    # XAPI's HANDLE_INVALID (a ref that names no VM) came out as
    # VMClosedError, "the VM was stopped or closed": no library VM is.
    from pylua_bioxen_vm_lib.xapi_client import XAPIClient

    client = XAPIClient(config["xcp_host"], config["xcp_username"], config["xcp_password"])
    for call in (client.get_power_state, client.start_vm, client.stop_vm, client.delete_vm):
        with pytest.raises(exc.InvalidArgumentError, match="HANDLE_INVALID") as info:
            call("OpaqueRef:00000000-0000-0000-0000-000000000000")
        assert not isinstance(info.value, exc.VMClosedError)
