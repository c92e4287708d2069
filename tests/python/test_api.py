"""Public names, factories, errors, the manager and logging."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import pylua_bioxen_vm_lib as lib
import pytest
from pylua_bioxen_vm_lib import (
    BasicLuaVM,
    InteractiveSession,
    LuaProcess,
    NetworkedLuaVM,
    VMLogger,
    VMManager,
    create_vm,
)
from pylua_bioxen_vm_lib import exceptions as exc
from pylua_bioxen_vm_lib.ssh_session import SSHSessionManager

ORIGINAL_EXCEPTIONS = [
    "LuaVMError",
    "LuaProcessError",
    "LuaNotFoundError",
    "VMTimeoutError",
    "VMConnectionError",
    "ScriptGenerationError",
    "NetworkingError",
    "LuaSocketNotFoundError",
    "PTYError",
    "InteractiveSessionError",
    "AttachError",
    "DetachError",
    "SessionNotFoundError",
    "SessionAlreadyExistsError",
    "IOThreadError",
    "SessionStateError",
    "VMManagerError",
    "ProcessRegistryError",
    "XCPngConnectionError",
]


@pytest.mark.parametrize("name", ORIGINAL_EXCEPTIONS)
def test_exception_names_from_both_modules(name):
    cls = getattr(exc, name)
    assert getattr(lib, name) is cls
    assert issubclass(cls, exc.LuaVMError)


def test_exception_hierarchy():
    for sub in ("AttachError", "DetachError", "SessionNotFoundError", "SessionAlreadyExistsError", "SessionStateError"):
        assert issubclass(getattr(exc, sub), exc.InteractiveSessionError)
    assert issubclass(exc.ProcessRegistryError, exc.VMManagerError)
    assert issubclass(exc.VMTimeoutError, TimeoutError)
    assert issubclass(exc.LuaProcessError, exc.LuaVMError)
    err = exc.LuaProcessError("failed", return_code=2, stderr="boom")
    assert (str(err), err.return_code, err.stderr) == ("failed", 2, "boom")


@pytest.mark.parametrize(
    "module, names",
    [
        ("pylua_bioxen_vm_lib.exceptions", ["LuaVMError"]),
        ("pylua_bioxen_vm_lib.logger", ["VMLogger"]),
        ("pylua_bioxen_vm_lib.lua_process", ["LuaProcess"]),
        ("pylua_bioxen_vm_lib.vm_manager", ["VMManager"]),
        ("pylua_bioxen_vm_lib.networking", ["NetworkedLuaVM"]),
        ("pylua_bioxen_vm_lib.interactive_session", ["InteractiveSession", "SessionManager"]),
        (
            "pylua_bioxen_vm_lib.utils.curator",
            ["Curator", "get_curator", "PackageInstaller", "search_packages", "bootstrap_lua_environment"],
        ),
        ("pylua_bioxen_vm_lib.env", ["EnvironmentManager"]),
        ("pylua_bioxen_vm_lib.package_manager", ["PackageManager", "RepositoryManager"]),
        ("pylua_bioxen_vm_lib.xapi_client", ["XAPIClient"]),
        ("pylua_bioxen_vm_lib.ssh_session", ["SSHSessionManager"]),
        ("pylua_bioxen_vm_lib.xcp_ng_integration", ["XCPngVM"]),
        ("pylua_bioxen_vm_lib.aio", ["AsyncVMManager"]),
    ],
)
def test_module_paths_import(module, names):
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name)


def test_unknown_vm_type_names_the_valid_ones():
    with pytest.raises(exc.VMManagerError) as info:
        create_vm("x", vm_type="docker")
    assert "'basic'" in str(info.value) and "'xcpng'" in str(info.value)


def test_xcpng_config_is_validated():
    with pytest.raises(exc.ConfigurationError) as info:
        create_vm("x", vm_type="xcpng")
    assert "xcp_host" in str(info.value)
    with pytest.raises(exc.ConfigurationError) as info:
        create_vm("x", vm_type="xcpng", config={"xcp_host": "h", "xcp_password": "s3cret"})
    assert "xcp_username" in str(info.value) and "template_name" in str(info.value)
    assert "s3cret" not in str(info.value)
    config = {
        "xcp_host": "192.168.1.100",
        "xcp_username": "root",
        "xcp_password": "password",
        "template_name": "ubuntu-20.04-lua",
        "vm_username": "ubuntu",
        "vm_password": "ubuntu",
    }
    # The spec's Quick Start config: created (not started: no such host here).
    vm = create_vm("xcpng_vm", vm_type="xcpng", config=config)
    assert vm.vm_type == "xcpng" and vm.config["xcp_password"] == "***"
    assert "password" not in repr(vm).replace("password=***", "")
    # A typo or a mistyped value fails at creation, not minutes later at
    # start(); every problem is named, no secret is shown.
    with pytest.raises(exc.ConfigurationError) as info:
        create_vm("x", vm_type="xcpng", config=dict(config, vm_pasword="hunter2", vm_ip_timeout="soon"))
    msg = str(info.value)
    assert '"vm_pasword"' in msg and '"vm_ip_timeout"' in msg, msg
    assert "hunter2" not in msg and "ubuntu" not in msg.replace('"vm_username"', ""), msg
    with pytest.raises(exc.ConfigurationError):
        create_vm("x", vm_type="xcpng", config=dict(config, vm_key_file=object()))
    # get_info names the interpreter the guest runs, not the local default.
    assert vm.get_info()["lua_executable"] == "lua5.4"
    jit = create_vm("x", vm_type="xcpng", config=dict(config, vm_lua="luajit"))
    assert jit.get_info()["lua_executable"] == "luajit"
    # Paths may be os.PathLike.
    vm = create_vm("x", vm_type="xcpng", config=dict(config, vm_key_file=[Path("/k1")], vm_known_hosts=Path("/kh")))
    assert vm._config["vm_key_file"] == ["/k1"] and vm._config["vm_known_hosts"] == "/kh"


def test_engine_selection():
    assert create_vm("a").engine == "embedded"
    assert create_vm("b", lua_executable="lua5.4").engine == "process"
    assert create_vm("c", engine="process").engine == "process"
    with pytest.raises(ValueError):
        create_vm("d", engine="jvm")


def _raises(cls, call):
    with pytest.raises(cls) as info:
        call()
    return info.value


def test_bad_arguments_raise_the_library_s_typed_errors():
    """Bad input raises the library's exceptions (still ValueError/TypeError
    for generic handlers), with a message that names the argument — not a
    plain ValueError, nor "'<' not supported between instances"."""
    vm = create_vm("typed")
    manager = VMManager()
    session = manager.create_interactive_vm("typed_s")
    value_errors = [
        lambda: create_vm("d", engine="jvm"),
        lambda: create_vm(""),
        lambda: vm.execute_string("   "),
        lambda: session.read_output(stream="stdio"),
        lambda: VMManager(max_workers=0),
        lambda: manager.create_vm_cluster("c0", 0),
        lambda: BasicLuaVM("neg", max_output_bytes=-5),
        lambda: BasicLuaVM("neg", max_source_bytes=-1),
    ]
    for call in value_errors:
        err = _raises(exc.InvalidArgumentError, call)
        assert isinstance(err, ValueError)
    type_errors = {
        "Lua code": lambda: vm.execute_string(None),  # type: ignore[arg-type]
        "timeout": lambda: vm.execute_string("return 1", timeout="1"),  # type: ignore[arg-type]
        "file_path": lambda: vm.execute_file(5),  # type: ignore[arg-type]
        "input": lambda: session.send_input(5),  # type: ignore[arg-type]
        "callable": lambda: manager.attach_to_vm("typed_s", 5),  # type: ignore[arg-type]
        "max_workers": lambda: VMManager(max_workers="3"),  # type: ignore[arg-type]
        "size": lambda: manager.create_vm_cluster("c1", "2"),  # type: ignore[arg-type]
        "max_output_bytes": lambda: BasicLuaVM("s", max_output_bytes="abc"),  # type: ignore[arg-type]
        "vm_id": lambda: BasicLuaVM(None),  # type: ignore[arg-type]
        # (an unhashable id failed the manager's lookup with a plain TypeError)
        "vm_id ": lambda: manager.create_vm(["a"]),  # type: ignore[arg-type]
        # (an unhashable stream, and path objects, failed with plain
        # TypeErrors: "unhashable type", "not JSON serializable")
        "stream": lambda: session.read_output(stream=["stdout"]),  # type: ignore[arg-type]
        "key_file": lambda: SSHSessionManager("h", "u", key_file=5),  # type: ignore[arg-type]
        "key_file ": lambda: SSHSessionManager("h", "u", key_file=[b"k"]),  # type: ignore[list-item]
        "known_hosts": lambda: SSHSessionManager("h", "u", known_hosts=5),  # type: ignore[arg-type]
        "username": lambda: SSHSessionManager("h", None),  # type: ignore[arg-type]
    }
    for name, call in type_errors.items():
        err = _raises(exc.ArgumentTypeError, call)
        assert isinstance(err, TypeError) and name in str(err), err
    assert manager.list_vms() == ["typed_s"]
    manager.shutdown_all()
    vm.close()
    # Paths may be os.PathLike.
    ssh = SSHSessionManager("h", "u", key_file=Path("/k"), known_hosts=Path("/kh"))
    assert ssh.key_files == ["/k"] and ssh.known_hosts == "/kh"
    assert SSHSessionManager("h", "u", key_file=(Path("/a"), "/b")).key_files == ["/a", "/b"]


def test_remote_timeouts_are_checked():
    """XAPIClient and SSHSessionManager took 0 or a negative timeout as the
    core's 5-minute default, and NaN, infinity or a str failed as "remote:
    bad request JSON"."""
    import math

    from pylua_bioxen_vm_lib.xapi_client import XAPIClient

    ssh = SSHSessionManager("127.0.0.1", "u", password="p", port=1)
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(exc.InvalidArgumentError):
            XAPIClient("http://127.0.0.1:1", "root", "pw", timeout=bad)
        with pytest.raises(exc.InvalidArgumentError):
            ssh.run_command("true", timeout=bad)
    with pytest.raises(exc.ArgumentTypeError):
        XAPIClient("http://127.0.0.1:1", "root", "pw", timeout="5")  # type: ignore[arg-type]
    with pytest.raises(exc.ArgumentTypeError):
        ssh.run_command("true", timeout="5")  # type: ignore[arg-type]
    assert XAPIClient("http://127.0.0.1:1", "root", "pw", timeout=2).timeout == 2.0


def test_missing_interpreter_is_lua_not_found():
    vm = create_vm("nolua", lua_executable="lua-does-not-exist")
    with pytest.raises(exc.LuaNotFoundError) as info:
        vm.execute_string("return 1")
    assert "lua-does-not-exist" in str(info.value)


def test_lua_process_and_networked_classes():
    proc = LuaProcess(name="LuaVM")
    assert isinstance(proc, BasicLuaVM)
    assert proc.execute_string("return 'p'")["stdout"] == "p"
    net = create_vm("net", networked=True)
    assert isinstance(net, NetworkedLuaVM)
    assert net.execute_string("return 3")["stdout"] == "3"


def test_vm_manager_lifecycle():
    with VMManager() as manager:
        vm = manager.create_vm("one")
        with pytest.raises(exc.SessionAlreadyExistsError):
            manager.create_vm("one")
        assert manager.get_vm("one") is vm
        assert manager.get_vm("nope") is None
        assert manager.list_vms() == ["one"]
        with pytest.raises(exc.SessionNotFoundError):
            manager.execute_vm_sync("nope", "return 1")
        future = manager.execute_vm_async("one", "return 6 * 7")
        assert isinstance(future, Future)
        assert future.result(timeout=10)["stdout"] == "42"
        assert manager.wait_for_vm("one")["values"] == [42]
        assert manager.get_vm_status("one") == "done"
        info = manager.get_vm_info("one")
        assert info["vm_id"] == "one" and info["vm_type"] == "basic"
        assert manager.remove_vm("one") is True
        assert manager.remove_vm("one") is False
        assert vm.closed
    assert manager.list_vms() == []
    assert manager.create_vm("late").execute_string("return 1")["success"]
    manager.shutdown_all()


def test_waiting_for_running_async_calls_is_bounded_and_typed():
    """wait_for_cluster's timeout bounds the whole wait (it was per VM: three
    stuck VMs and timeout=1 took 3 s), a call still running is reported as
    such (it was {'error': ''}), and wait_for_vm raises VMTimeoutError (it
    raised a bare TimeoutError with an empty message)."""
    import time

    with VMManager() as manager:
        cluster = manager.create_vm_cluster("stuck", 3)
        cluster.broadcast("while true do end")
        start = time.monotonic()
        results = cluster.wait(timeout=1.0)
        assert time.monotonic() - start < 2.5
        assert sorted(results) == ["stuck_0", "stuck_1", "stuck_2"]
        for result in results.values():
            assert not result["success"] and "still running" in result["error"], result
        with pytest.raises(exc.VMTimeoutError, match="still running") as info:
            manager.wait_for_vm("stuck_0", timeout=0.1)
        assert isinstance(info.value, TimeoutError)


def test_core_log_lines_reach_python_logging(caplog):
    with caplog.at_level(logging.DEBUG, logger="pylua_bioxen_vm_lib.core"):
        vm = create_vm("logged")
        vm.execute_string("return 1")
        vm.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "pylua_bioxen_vm_lib.core"]
    assert any("opened VM" in m for m in messages)
    assert any("closed VM" in m for m in messages)


def test_vmlogger_writes_no_files_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    VMLogger(debug_mode=True, component="NoFiles").info("hello")
    assert list(tmp_path.iterdir()) == []


def test_vmlogger_close_stops_writing_its_file(tmp_path):
    """VMLogger had no close(): its file stayed open, written, for the life
    of the process. Two VMLoggers of a component writing one file share its
    handler: it closes with the last."""
    import logging

    first = VMLogger(component="Closing", log_dir=tmp_path, enable_file_logging=True)
    with VMLogger(component="Closing", log_dir=tmp_path, enable_file_logging=True) as second:
        second.warning("line-one")
    first.warning("line-two")  # the file is still first's
    first.close()
    first.close()  # again: nothing
    first.warning("line-three")
    text = (tmp_path / "Closing.log").read_text()
    assert "line-one" in text and "line-two" in text and "line-three" not in text
    handlers = logging.getLogger("pylua_bioxen_vm_lib.Closing").handlers
    assert not [h for h in handlers if isinstance(h, logging.FileHandler)]


def test_vmlogger_close_leaves_the_applications_own_handler(tmp_path):
    """A FileHandler the application put on the component's logger for the
    same file was shared as a VMLogger's own: close() removed and closed
    the application's handler."""
    import logging

    target = logging.getLogger("pylua_bioxen_vm_lib.AppOwned")
    own = logging.FileHandler(tmp_path / "AppOwned.log", encoding="utf-8")
    target.addHandler(own)
    try:
        VMLogger(component="AppOwned", log_dir=tmp_path, enable_file_logging=True).close()
        target.warning("still-logged")
        assert own in target.handlers and own.stream is not None
        assert "still-logged" in (tmp_path / "AppOwned.log").read_text()
    finally:
        target.removeHandler(own)
        own.close()


def test_vmlogger_close_is_final_for_a_record_on_its_way(tmp_path):
    """A thread that took the logger's handlers before close() removed the
    file handler emits through it after close(): FileHandler reopened the
    file, wrote the line and held the file open again, unclosed."""
    import logging

    log = VMLogger(component="ClosingRace", log_dir=tmp_path, enable_file_logging=True)
    handler = next(h for h in log.logger.handlers if isinstance(h, logging.FileHandler))
    log.close()
    handler.handle(logging.LogRecord("x", logging.WARNING, __file__, 1, "after-close", None, None))
    assert handler.stream is None
    assert "after-close" not in (tmp_path / "ClosingRace.log").read_text()


def test_pylua_debug_environment_variable():
    code = (
        "import logging; from pylua_bioxen_vm_lib import VMLogger; "
        "log = VMLogger(component='Env'); log.debug('visible-debug-line'); "
        "print(log.debug_mode)"
    )
    env = {"PYLUA_DEBUG": "true", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True"
    assert "visible-debug-line" in out.stderr


def test_result_repr_and_vm_repr_are_readable():
    vm = create_vm("reprs")
    result = vm.execute_string("return 1")
    assert repr(result).startswith("ExecResult(")
    assert "reprs" in repr(vm) and "embedded" in repr(vm)


def test_code_with_a_lone_surrogate_is_invalid_argument():
    """A str with a surrogate that is not an escaped byte (U+D800..U+DC7F,
    U+DD00..U+DFFF) cannot be UTF-8: InvalidArgumentError (a LuaVMError)
    like any other bad code, not a bare UnicodeEncodeError that slips past
    ``except LuaVMError``. send_input takes what execute_string takes
    (memoryview too)."""
    with create_vm("surrogate", persistent=True) as vm, InteractiveSession("surrogate_s", vm) as session:
        for call in (
            lambda: vm.execute_string("return '\ud800'"),
            lambda: session.execute_interactive("return '\udfff'"),
            lambda: session.send_input("x = '\ud800'"),
        ):
            err = _raises(exc.InvalidArgumentError, call)
            assert "surrogate" in str(err) or "UTF-8" in str(err), err
        # An escaped byte (surrogateescape) is still that byte.
        assert vm.execute_string("return '\udcff'")["values"] == [b"\xff"]
        session.send_input(memoryview(b"y = 7"))
        assert session.execute_interactive("return y")["values"] == [7]


@pytest.mark.parametrize(
    "option",
    [
        {"memory_limit": 1 << 20},
        {"cpu_limit": 1.0},
        {"environment": "default"},
        {"engine": "process"},
        {"networked": True},
        {"allowed_paths": ["/tmp"]},
    ],
)
def test_xcpng_refuses_options_it_does_not_apply(option):
    """create_vm(vm_type="xcpng", memory_limit=...) (cpu_limit, environment,
    engine, networked) dropped the option silently: the XCPngVM bounded
    nothing. It is refused, by name, and the VM is not made."""
    config = {"xcp_host": "192.0.2.1", "xcp_username": "root", "xcp_password": "pw", "template_name": "t"}
    with pytest.raises(exc.ConfigurationError) as info:
        create_vm("x", vm_type="xcpng", config=config, **option)
    assert next(iter(option)) in str(info.value) and "pw" not in str(info.value)
    # Without them (and with the manager's defaults) it is made.
    with VMManager() as manager:
        assert manager.create_vm("y", vm_type="xcpng", config=config).vm_type == "xcpng"


def test_config_without_xcpng_vm_type_is_refused():
    """create_vm("x", config=xcpng_config) without vm_type="xcpng" ignored
    the config and made a local VM: code meant for the XCP-ng guest ran on
    this host."""
    config = {"xcp_host": "192.0.2.1", "xcp_username": "root", "xcp_password": "pw", "template_name": "t"}
    with pytest.raises(exc.ConfigurationError, match="xcpng"):
        create_vm("x", config=config)
    with VMManager() as manager, pytest.raises(exc.ConfigurationError):
        manager.create_vm("y", config=config)
    assert create_vm("z", config=None).vm_type == "basic"


@pytest.mark.parametrize("maker", ["create_vm", "VMManager.create_vm", "create_interactive_vm"])
def test_allowed_paths_through_every_factory(tmp_path, maker):
    """create_vm, VMManager.create_vm and create_interactive_vm did not take
    allowed_paths (a TypeError): only a BasicLuaVM made by hand could open
    files in an allowed directory."""
    (tmp_path / "data.txt").write_text("inside")
    code = f"local f = assert(io.open({str(tmp_path / 'data.txt')!r})) local s = f:read('*a') f:close() return s"
    with VMManager() as manager:
        if maker == "create_vm":
            vm = create_vm("ap", allowed_paths=[tmp_path])
        elif maker == "VMManager.create_vm":
            vm = manager.create_vm("ap", allowed_paths=str(tmp_path))
        else:
            vm = manager.create_interactive_vm("ap", allowed_paths=[tmp_path]).vm
        try:
            assert vm.execute_string(code)["values"] == ["inside"]
            outside = vm.execute_string("return io.open('/etc/hostname')")
            assert outside["values"][0] is None
        finally:
            vm.close()
