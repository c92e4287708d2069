"""NetworkedLuaVM's LuaSocket helpers (start_server, start_client, start_p2p)
for real: LuaSocket from Debian's lua-socket, sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
from pylua_bioxen_vm_lib import VMManager, create_vm, networking
from pylua_bioxen_vm_lib import exceptions as exc
from pylua_bioxen_vm_lib.networking import NetworkedLuaVM, lua_string


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_thread(fn: Callable[[], Any]) -> Future[Any]:
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            future.set_exception(e)

    threading.Thread(target=run, daemon=True).start()
    return future


def peer_client(port: int, body: str) -> None:
    """Run body, a LuaSocket client's code with its connection c, in a
    trusted lua5.4 VM: c connects to port on 127.0.0.1 while it is refused
    (the helper under test may not listen yet)."""
    with create_vm("peer", engine="process", lua_executable="lua5.4", sandbox=False) as peer:
        code = f"""
        local socket = require("socket")
        local c
        for _ = 1, 200 do c = socket.connect("127.0.0.1", {port}) if c then break end socket.sleep(0.05) end
        {body}"""
        res = peer.execute_string(code, timeout=30)
        assert res["success"], res


@pytest.fixture(params=["embedded", "lua5.4", "luajit"])
def net_vm(request: pytest.FixtureRequest) -> NetworkedLuaVM:
    """A networked VM of each kind: the helpers run in an interpreter with
    LuaSocket whatever the VM's own engine."""
    if request.param == "embedded":
        vm = create_vm("net", networked=True)
    else:
        vm = create_vm("net", networked=True, engine="process", lua_executable=request.param)
    assert isinstance(vm, NetworkedLuaVM)
    request.addfinalizer(vm.close)
    return vm


def test_server_and_client_exchange_one_line(net_vm: NetworkedLuaVM) -> None:
    port = free_port()
    server = in_thread(lambda: net_vm.start_server(port, timeout=30))
    message = 'GC 0.42 ‰ "quoted" \\ back\tslash \0 nul'
    with create_vm("client", networked=True) as client:
        got = client.start_client("127.0.0.1", port, message, timeout=30)
    assert got["success"], got
    assert got["received"] == "Hello from Lua Server! What's your message?"
    assert f"Connected to server at 127.0.0.1:{port}" in got["stdout"]
    res = server.result(timeout=30)
    assert res["success"], res
    assert res["received"] == message
    assert res["stdout"].startswith(f"Lua Server: Listening on 127.0.0.1:{port}...")
    assert "Lua Server: Client connected from 127.0.0.1:" in res["stdout"]
    # The helper's values are not printed as a REPL's would be.
    assert res["stdout"].endswith("Lua Server: Connection closed.")


def test_client_against_a_python_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> bytes:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"ready\r\n")
                return conn.makefile("rb").readline()

        line = in_thread(serve)
        with create_vm("client", networked=True) as vm:
            res = vm.start_client("127.0.0.1", port, "ATGC", timeout=30)
        assert line.result(timeout=30) == b"ATGC\n"
    assert res["success"] and res["received"] == "ready"


def test_client_gives_up_after_its_timeout_when_nothing_listens() -> None:
    port = free_port()
    with create_vm("client", networked=True) as vm:
        start = time.monotonic()
        res = vm.start_client("127.0.0.1", port, timeout=3)
        took = time.monotonic() - start
    assert not res["success"] and res["return_code"] == 1
    assert f"Failed to connect to 127.0.0.1:{port}" in res["stderr"] and "refused" in res["stderr"]
    assert 1.4 < took < 3, took  # it retried for half its timeout, then stopped


def test_server_timeout_stops_it_and_frees_the_port() -> None:
    port = free_port()
    with create_vm("server", networked=True) as vm:
        with pytest.raises(exc.VMTimeoutError):
            vm.start_server(port, timeout=0.5)
        # The interpreter was killed: the port can be bound again, and the
        # VM goes on.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        assert vm.execute_string("return 1 + 1")["stdout"] == "2"


def test_server_reports_a_client_that_sends_nothing() -> None:
    port = free_port()
    with create_vm("server", networked=True) as vm:
        res = in_thread(lambda: vm.start_server(port, timeout=30, recv_timeout=0.3))
        # A client that reads the greeting and closes without a line.
        peer_client(port, 'assert(c:receive("*l")) c:close()')
        got = res.result(timeout=30)
    assert not got["success"] and got["received"] is None
    assert "Error receiving data or client disconnected: closed" in got["stderr"]


def test_p2p_peers_greet_and_send_heartbeats() -> None:
    pa, pb = free_port(), free_port()
    with create_vm("a", networked=True) as a, create_vm("b", networked=True) as b:
        first = in_thread(lambda: a.start_p2p(pa, run_duration=2, send_interval=0.4))
        second = b.start_p2p(pb, "127.0.0.1", pa, run_duration=2, send_interval=0.4)
        res_a = first.result(timeout=60)
    for res in (res_a, second):
        assert res["success"], res
        assert "Shutting down after 2 seconds." in res["stdout"]
    assert f"Connected to peer at 127.0.0.1:{pa}" in second["stdout"]
    assert any(r.endswith(f"Welcome to P2P VM on port {pa}!") for r in second["received"])
    assert any(r.endswith(f"Hello from P2P VM on port {pb}!") for r in res_a["received"])
    assert any(f"P2P VM {pb}: Heartbeat at" in r for r in res_a["received"])
    assert any(f"P2P VM {pa}: Heartbeat at" in r for r in second["received"])


def test_p2p_received_is_a_list_when_nothing_came() -> None:
    """No line received gave {} (Lua's empty table converts to a dict), a
    port that cannot be bound None; ``received`` is a list either way."""
    vm = create_vm("p2p_alone", networked=True)
    port = free_port()
    res = vm.start_p2p(port, run_duration=0.2, send_interval=0.1)
    assert res["success"] and res["received"] == [] and isinstance(res["received"], list), res
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        res = vm.start_p2p(port, run_duration=0.2, send_interval=0.1)
    assert not res["success"] and res["received"] == [], res


def test_p2p_joins_a_line_that_comes_in_pieces() -> None:
    port = free_port()
    with create_vm("p2p", networked=True) as vm:
        res = in_thread(lambda: vm.start_p2p(port, run_duration=3, send_interval=10))
        peer_client(
            port,
            """c:setoption("tcp-nodelay", true)
            assert(c:receive("*l"))  -- the welcome: the peer is registered
            c:send("first half, ") socket.sleep(0.3) c:send("second half\\n")
            c:close()""",
        )
        got = res.result(timeout=60)
    assert got["success"], got
    assert [r.split(": ", 1)[1] for r in got["received"]] == ["first half, second half"]


def test_helpers_refuse_bad_arguments() -> None:
    with create_vm("net", networked=True) as vm:
        bad: Dict[str, Callable[[], Any]] = {
            "port too low": lambda: vm.start_server(80),
            "port not int": lambda: vm.start_server("8080"),  # type: ignore[arg-type]
            "bool port": lambda: vm.start_client("127.0.0.1", True),  # type: ignore[arg-type]
            "empty host": lambda: vm.start_client(" ", 8080),
            "host with space": lambda: vm.start_client("a b", 8080),
            "line break": lambda: vm.start_client("127.0.0.1", 8080, "two\nlines"),
            "peer host alone": lambda: vm.start_p2p(8080, "127.0.0.1"),
            "zero duration": lambda: vm.start_p2p(8080, run_duration=0),
            "nan interval": lambda: vm.start_p2p(8080, send_interval=float("nan")),
            "negative recv timeout": lambda: vm.start_server(8080, recv_timeout=-1),
            # A lone surrogate has no UTF-8 form: not a bare UnicodeEncodeError.
            "surrogate in message": lambda: vm.start_client("127.0.0.1", 8080, "x\ud800"),
            "surrogate in host": lambda: vm.start_client("h\udfff", 8080),
            "surrogate in bind": lambda: vm.start_server(8080, bind="\ud800"),
        }
        for what, call in bad.items():
            with pytest.raises(exc.InvalidArgumentError):
                call()
                pytest.fail(what)


def test_no_luasocket_is_a_typed_error(tmp_path: Path) -> None:
    # An interpreter whose module paths lead nowhere: no LuaSocket.
    interp = tmp_path / "lua-without-socket"
    interp.write_text(
        '#!/bin/sh\nLUA_PATH_5_4="/nonexistent/?.lua" LUA_CPATH_5_4="/nonexistent/?.so" exec lua5.4 "$@"\n'
    )
    os.chmod(interp, 0o755)
    with create_vm("net", networked=True, lua_executable=str(interp)) as vm:
        with pytest.raises(exc.LuaSocketNotFoundError) as info:
            vm.start_server(free_port(), timeout=10)
        assert isinstance(info.value, exc.NetworkingError)
        assert str(interp) in str(info.value) and "lua-socket" in str(info.value)


def test_user_code_stays_sandboxed() -> None:
    with create_vm("net", networked=True, engine="process", lua_executable="lua5.4") as vm:
        res = vm.execute_string('return pcall(require, "socket")')
        assert res["values"][0] is False


def test_lua_string_round_trips_every_byte() -> None:
    text = "".join(chr(i) for i in range(1, 256)) + "\0end"
    with create_vm("q") as vm:
        assert vm.execute_string("return " + lua_string(text))["values"] == [text]


def test_manager_runs_the_helpers_in_the_background() -> None:
    port = free_port()
    with VMManager() as manager:
        manager.create_vm("server", networked=True)
        manager.create_vm("client", networked=True)
        manager.create_vm("plain")
        server = manager.start_server_vm("server", port, timeout=30)
        client = manager.start_client_vm("client", "127.0.0.1", port, "hello", timeout=30)
        assert client.result(timeout=60)["success"]
        assert server.result(timeout=60)["received"] == "hello"
        assert manager.wait_for_vm("server")["received"] == "hello"
        with pytest.raises(exc.VMManagerError, match="not networked"):
            manager.start_server_vm("plain", port)
        p2p = manager.start_p2p_vm("server", free_port(), run_duration=0.5, send_interval=1)
        assert p2p.result(timeout=60)["success"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_close_stops_a_running_helper_and_later_ones_are_refused() -> None:
    """close() (and so a manager's shutdown_all) did not reach the helper VM
    running a script: a server waiting for its client (timeout None) went on
    waiting for ever, and the closed VM still ran helpers. Now the helper is
    closed with the VM and the call raises VMClosedError, as any call does."""
    vm = create_vm("net_close", networked=True)
    port = free_port()
    future = in_thread(lambda: vm.start_server(port))
    deadline = time.monotonic() + 30
    while not _listening(port):
        assert time.monotonic() < deadline, "the server never listened"
        assert not future.done(), future.result()
        time.sleep(0.01)
    vm.close()
    with pytest.raises(exc.VMClosedError, match="net_close"):
        future.result(timeout=10)
    assert not _listening(port)
    with pytest.raises(exc.VMClosedError):
        vm.start_client("127.0.0.1", port, timeout=5)


def unanswered_port(stack: contextlib.ExitStack) -> int:
    """A port on 127.0.0.1 whose listener's accept queue is full: the kernel
    drops further SYNs, so a connection to it neither succeeds nor is
    refused (as with a host that does not answer). Its sockets close with
    stack (an ExitStack)."""
    listener = stack.enter_context(socket.socket())
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    for _ in range(3):
        filler = stack.enter_context(socket.socket())
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    probe = stack.enter_context(socket.socket())
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
    except socket.timeout:
        return port
    except OSError as e:
        pytest.skip(f"this kernel does not leave a connection to a full accept queue unanswered: {e}")
    pytest.skip("this kernel accepted a connection past the accept queue")


def test_client_connect_to_a_host_that_does_not_answer_ends_within_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """socket.connect has no timeout: a client whose SYNs went unanswered
    waited for the kernel to give up (over two minutes with timeout=None)
    instead of CONNECT_WINDOW, and with a timeout raised VMTimeoutError
    instead of the documented result with success False."""
    monkeypatch.setattr(networking, "CONNECT_WINDOW", 1.0)
    with contextlib.ExitStack() as stack, create_vm("client", networked=True) as vm:
        port = unanswered_port(stack)
        start = time.monotonic()
        res = vm.start_client("127.0.0.1", port, timeout=20)
        took = time.monotonic() - start
    assert not res["success"] and res["return_code"] == 1, res
    assert f"Failed to connect to 127.0.0.1:{port}: timeout" in res["stderr"], res
    assert took < 10, took


def test_p2p_peer_that_does_not_answer_does_not_hold_it_past_run_duration() -> None:
    port = free_port()
    with contextlib.ExitStack() as stack, create_vm("p2p", networked=True) as vm:
        peer_port = unanswered_port(stack)
        start = time.monotonic()
        res = vm.start_p2p(port, "127.0.0.1", peer_port, run_duration=1, send_interval=10, timeout=20)
        took = time.monotonic() - start
    assert res["success"], res
    assert f"Failed to connect to peer 127.0.0.1:{peer_port}: timeout" in res["stderr"], res
    assert "Shutting down after 1 seconds." in res["stdout"]
    assert took < 10, took


def test_p2p_stops_after_run_duration_while_a_peer_floods_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The P2P VM read a peer's lines until none was left: a peer sending
    faster than it printed them kept it in that loop past run_duration (no
    heartbeat either) until the call's timeout killed it. It keeps the
    first lines (P2P_RECEIVED_MAX_LINES, here 50) and counts the others:
    a fast sender filled its memory."""
    monkeypatch.setattr(networking, "P2P_RECEIVED_MAX_LINES", 50)
    port = free_port()
    with create_vm("p2p", networked=True) as vm:
        start = time.monotonic()
        res = in_thread(lambda: vm.start_p2p(port, run_duration=0.5, send_interval=0.1, timeout=20))
        while not _listening(port):
            assert time.monotonic() - start < 30, "the P2P VM never listened"
            assert not res.done(), res.result()
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as flood:
            chunk = b"ATGC" * 4 + b"\n"
            chunk *= 4096
            flood.settimeout(1)
            while not res.done() and time.monotonic() - start < 20:
                try:
                    flood.sendall(chunk)
                except (socket.timeout, OSError):
                    continue
            got = res.result(timeout=30)
        took = time.monotonic() - start
    assert got["success"], got
    assert len(got["received"]) == 50 and got["received"][0].endswith(": ATGCATGCATGCATGC")
    assert got["received_dropped"] > 0
    assert took < 5, took


def test_a_memory_limit_too_small_is_not_reported_as_no_luasocket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check for LuaSocket ran with the VM's memory_limit: a limit that
    let the interpreter start but not load LuaSocket raised
    LuaSocketNotFoundError ("install it") and recorded the interpreter as
    having no LuaSocket for the whole process, so every later networked VM
    using it raised that error too. The limits are the VM's, not the
    interpreter's: the check runs without them."""
    monkeypatch.setattr(networking, "_probed", {})
    for limit in range(4_000_000, 6_000_001, 200_000):
        with create_vm("small", networked=True, engine="process", lua_executable="lua5.4", memory_limit=limit) as vm:
            try:
                vm.start_p2p(free_port(), run_duration=0.1, send_interval=1, timeout=30)
            except exc.LuaSocketNotFoundError as e:
                pytest.fail(f"memory_limit={limit}: {e}")
            except (exc.LuaMemoryError, exc.LuaProcessError):
                pass  # the limit's own, typed error (or a failed result)
    with create_vm("big", networked=True, engine="process", lua_executable="lua5.4") as vm:
        assert vm.start_p2p(free_port(), run_duration=0.1, send_interval=1, timeout=30)["success"]


def _p2p_fed(lines: list, run_duration: float = 2) -> Dict[str, Any]:
    """start_p2p's result when one peer sends lines (bytes, each without
    its newline) at once."""
    port = free_port()
    with create_vm("p2p", networked=True) as vm:
        start = time.monotonic()
        res = in_thread(lambda: vm.start_p2p(port, run_duration=run_duration, send_interval=10, timeout=60))
        while not _listening(port):
            assert time.monotonic() - start < 30, "the P2P VM never listened"
            assert not res.done(), res.result()
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as peer:
            peer.sendall(b"".join(line + b"\n" for line in lines))
            got: Dict[str, Any] = res.result(timeout=60)
    assert got["success"], {k: v for k, v in got.items() if k != "received"}
    return got


def test_p2p_received_fits_the_result_however_escaped() -> None:
    """The 8 MiB counted the lines' bytes, not their encoding: lines of
    control characters (six bytes each as \\u00XX) passed the 16 MiB value
    limit, so received ended in "<size limit>" markers and the dropped
    count, after them, was lost (0)."""
    got = _p2p_fed([b"\x01" * 1_000_000] * 9)
    received = got["received"]
    assert received and all(isinstance(r, str) and r.endswith("\x01" * 1000) for r in received), received[-1:]
    assert len(received) + got["received_dropped"] == 9, (len(received), got["received_dropped"])


def test_p2p_received_keeps_the_first_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """received is the first lines: once one did not fit, a shorter one
    after it was kept all the same."""
    monkeypatch.setattr(networking, "P2P_RECEIVED_MAX_BYTES", 1000)
    got = _p2p_fed([b"first", b"x" * 2000, b"third"], run_duration=1)
    assert [r.split(": ", 1)[1] for r in got["received"]] == ["first"], got["received"]
    assert got["received_dropped"] == 2
