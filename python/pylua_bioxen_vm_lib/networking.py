"""NetworkedLuaVM: the original library's networked VM, with its LuaSocket
helpers (``start_server``, ``start_client``, ``start_p2p``) working.

Code execution works exactly as on :class:`BasicLuaVM`; ``networked=True``
by itself opens no socket and listens on nothing, and sandboxed code still
cannot load LuaSocket (a C module). The helpers run the library's own Lua
scripts, not user code, in a fresh trusted process-engine interpreter that
has LuaSocket (Debian's ``lua-socket``, or ``luarocks install luasocket`` in
the VM's package environment): the VM's own interpreter when it is a
process-engine VM, otherwise the first of lua5.4, lua, lua5.3, lua5.1 and
luajit that can ``require "socket"``. See docs/networking.md.
"""

from __future__ import annotations

import logging
import shutil
import threading
from string import Template
from typing import Any, Dict, List, Optional, Set, Tuple

from . import _ffi
from . import exceptions as exc
from .vm import BasicLuaVM, ExecResult, check_not_delivering, timeout_ms

logger = logging.getLogger("pylua_bioxen_vm_lib.networking")

#: Interpreters tried, in order, for a VM that is not a process-engine VM.
SOCKET_INTERPRETERS = ("lua5.4", "lua", "lua5.3", "lua5.1", "luajit")

#: How long start_client (and start_p2p's peer connection) keeps trying to
#: connect while the peer refuses, when the call has no timeout: the server
#: may still be starting.
CONNECT_WINDOW = 10.0

#: How many lines start_p2p keeps in ``result["received"]``, and how many
#: bytes of them in all, counted as the result encodes them (a control
#: character takes six): a peer sending fast for run_duration would
#: otherwise fill the VM's memory (a LuaMemoryError) and the result past
#: its 16 MiB value limit. The lines from the first that passes either on
#: are counted in ``result["received_dropped"]``.
P2P_RECEIVED_MAX_LINES = 100_000
P2P_RECEIVED_MAX_BYTES = 8 << 20


def validate_port(port: int) -> None:
    """Raise InvalidArgumentError unless port is an int in 1024-65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
        raise exc.InvalidArgumentError(f"port must be an int between 1024 and 65535, not {port!r}")


def _utf8(text: str) -> bool:
    """Whether text has a UTF-8 form (no lone surrogate), as lua_string needs."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_host(host: str) -> None:
    """Raise InvalidArgumentError unless host is a non-empty name or address."""
    if not isinstance(host, str) or not host.strip() or any(c.isspace() or c == "\0" for c in host) or not _utf8(host):
        raise exc.InvalidArgumentError(f"host must be a non-empty host name or address, not {host!r}")


def _line(what: str, text: str) -> None:
    """A message sent as one line must not hold a line break (nor a lone
    surrogate, which has no UTF-8 form)."""
    if not isinstance(text, str) or "\n" in text or "\r" in text:
        raise exc.InvalidArgumentError(f"{what} must be a str without line breaks (it is sent as one line)")
    if not _utf8(text):
        raise exc.InvalidArgumentError(f"{what} must be valid UTF-8 text: it holds a lone surrogate")


def _positive(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise exc.InvalidArgumentError(f"{what} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def lua_string(text: str) -> str:
    """text as a Lua string literal that every Lua version reads back
    byte for byte (UTF-8): printable ASCII as is, every other byte as \\ddd."""
    out = ['"']
    for b in text.encode("utf-8"):
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '"\\' else f"\\{b:03d}")
    out.append('"')
    return "".join(out)


class _Script(Template):
    """A Lua script with @name placeholders (Lua itself never uses @)."""

    delimiter = "@"


# The scripts are the library's own; parameters enter only as Lua literals
# built above. They run trusted: LuaSocket is a C module. Times come from
# socket.gettime (wall clock), not os.clock (CPU time, which barely moves
# while select waits: the original's run_duration ran far longer).
_PRELUDE = r"""
local socket = require("socket")
local function fail(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  os.exit(1)
end
-- connect, retrying while the peer refuses, for up to window seconds; each
-- attempt is bounded too (socket.connect has no timeout: a peer that does
-- not answer held it until the kernel gave up, minutes later)
local function connect(host, port, window)
  local deadline = socket.gettime() + window
  while true do
    local c, err = socket.tcp()
    if not c then return nil, err end
    c:settimeout(math.max(deadline - socket.gettime(), 0.001))
    local ok, cerr = c:connect(host, port)
    if ok then return c end
    c:close()
    if socket.gettime() >= deadline or not tostring(cerr):find("refused") then
      return nil, cerr
    end
    socket.sleep(0.05)
  end
end
local function peer(sock)
  local ip, port = sock:getpeername()
  return tostring(ip) .. ":" .. tostring(port)
end
"""

_SERVER = _Script(r"""
local bind, port, recv_timeout = @bind, @port, @recv_timeout
local server, err = socket.bind(bind, port)
if not server then fail("Lua Server: Failed to bind to %s:%d: %s", bind, port, tostring(err)) end
print(string.format("Lua Server: Listening on %s:%d...", bind, port))
io.stdout:flush()
local client = assert(server:accept())
server:close()
print("Lua Server: Client connected from " .. peer(client))
client:settimeout(recv_timeout)
client:send("Hello from Lua Server! What's your message?\n")
local data, rerr = client:receive("*l")
client:close()
if not data then fail("Lua Server: Error receiving data or client disconnected: %s", tostring(rerr)) end
print("Lua Server: Received from client: " .. data)
print("Lua Server: Connection closed.")
return data
""")

_CLIENT = _Script(r"""
local host, port, message, window = @host, @port, @message, @window
local client, err = connect(host, port, window)
if not client then fail("Lua Client: Failed to connect to %s:%d: %s", host, port, tostring(err)) end
print(string.format("Lua Client: Connected to server at %s:%d", host, port))
client:settimeout(window)
local response, rerr = client:receive("*l")
if response then
  print("Lua Client: Received from server: " .. response)
else
  io.stderr:write("Lua Client: Error receiving initial message from server: ", tostring(rerr), "\n")
end
local ok, serr = client:send(message .. "\n")
client:close()
if not ok then fail("Lua Client: Error sending message: %s", tostring(serr)) end
print("Lua Client: Sent message: '" .. message .. "'")
print("Lua Client: Connection closed.")
return response
""")

_P2P = _Script(r"""
local bind, local_port = @bind, @port
local peer_host, peer_port = @peer_host, @peer_port
local run_duration, send_interval, window = @run_duration, @send_interval, @window
local keep_lines, keep_bytes, kept, dropped = @keep_lines, @keep_bytes, 0, 0
local server, err = socket.bind(bind, local_port)
if not server then fail("P2P VM: Failed to bind to local port %d: %s", local_port, tostring(err)) end
server:settimeout(0)
print(string.format("P2P VM: Listening on %s:%d...", bind, local_port))
io.stdout:flush()
local max_line = 1048576
local watched, peers, names, pending, received = {server}, {}, {}, {}, {}
local function add(sock)
  sock:settimeout(0)
  names[sock] = peer(sock)
  watched[#watched + 1] = sock
  peers[sock] = true
end
local function drop(sock)
  sock:close()
  peers[sock], pending[sock] = nil, nil
  for i, s in ipairs(watched) do
    if s == sock then table.remove(watched, i) break end
  end
end
local start = socket.gettime()
if peer_host then
  local c, cerr = connect(peer_host, peer_port, math.min(window, run_duration))
  if c then
    add(c)
    print(string.format("P2P VM: Connected to peer at %s:%d", peer_host, peer_port))
    c:send(string.format("Hello from P2P VM on port %d!\n", local_port))
  else
    io.stderr:write(string.format("P2P VM: Failed to connect to peer %s:%d: %s\n",
      peer_host, peer_port, tostring(cerr)))
  end
end
local last_send = socket.gettime()
while true do
  local left = start + run_duration - socket.gettime()
  if left <= 0 then break end
  local readable, _, serr = socket.select(watched, nil, math.min(left, 0.1))
  if serr and serr ~= "timeout" then fail("P2P VM: socket.select error: %s", tostring(serr)) end
  for _, sock in ipairs(readable) do
    if sock == server then
      local c = server:accept()
      if c then
        add(c)
        print("P2P VM: Accepted connection from " .. names[c])
        c:send(string.format("Welcome to P2P VM on port %d!\n", local_port))
      end
    elseif peers[sock] then
      -- Read what has come, but for 0.1 s at most: a peer that sends faster
      -- than this loop prints must not hold it past run_duration (nor stop
      -- the heartbeats). What is left in LuaSocket's buffer makes select
      -- report the socket at once next time.
      local round_end = math.min(socket.gettime() + 0.1, start + run_duration)
      while true do
        -- a line may come in pieces: keep the piece (partial) for the next read
        local line, rerr, partial = sock:receive("*l", pending[sock])
        pending[sock] = nil
        if line then
          print("P2P VM: Received from " .. names[sock] .. ": " .. line)
          local entry = names[sock] .. ": " .. line
          -- Counted as encoded in the result (docs/values.md), at most: a
          -- JSON string with its escapes (\u00XX for a control
          -- character), or base64 when it is not UTF-8; and its comma.
          local n = #entry
          local json = n + 2 + 5 * select(2, entry:gsub("[%z\1-\31\127]", ""))
            + select(2, entry:gsub('["\\]', ""))
          local cost = math.max(json, 4 * math.ceil(n / 3) + 9) + 1
          if dropped == 0 and #received < keep_lines and kept + cost <= keep_bytes then
            received[#received + 1] = entry
            kept = kept + cost
          else
            dropped = dropped + 1
          end
          if socket.gettime() >= round_end then break end
        elseif rerr == "timeout" and #partial <= max_line then
          pending[sock] = partial ~= "" and partial or nil
          break
        else
          if rerr == "timeout" then rerr = "a line longer than " .. max_line .. " bytes" end
          print("P2P VM: Connection from " .. names[sock] .. " closed: " .. tostring(rerr))
          drop(sock)
          break
        end
      end
    end
  end
  if socket.gettime() - last_send >= send_interval then
    for sock in pairs(peers) do
      sock:send(string.format("P2P VM %d: Heartbeat at %.3f\n", local_port, socket.gettime() - start))
    end
    last_send = socket.gettime()
  end
end
print(string.format("P2P VM: Shutting down after %g seconds.", run_duration))
for sock in pairs(peers) do sock:close() end
server:close()
return received, dropped
""")

_probe_lock = threading.Lock()
_probed: Dict[Tuple[str, Optional[str]], bool] = {}


def _lua_number(value: float) -> str:
    return repr(float(value))


class NetworkedLuaVM(BasicLuaVM):
    """A BasicLuaVM created with ``networked=True``, with the original's
    LuaSocket helpers. Each helper blocks until its script ends and returns
    the result dict of an ``execute_string`` call, plus ``received``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["networked"] = True
        super().__init__(*args, **kwargs)
        # The helper VMs running a script now: stop() and close() close
        # them, as they stop this VM's own calls.
        self._helpers: Set[BasicLuaVM] = set()

    # -- the interpreter that runs the helpers ----------------------------
    def _socket_interpreter(self) -> str:
        """The interpreter that has LuaSocket; LuaSocketNotFoundError if none."""
        if self.engine == "process":
            candidates: List[str] = [self.lua_executable]
        else:
            candidates = [c for c in SOCKET_INTERPRETERS if shutil.which(c)]
        for interp in candidates:
            key = (interp, self.environment)
            with _probe_lock:
                known = _probed.get(key)
            if known is None:
                known = self._probe(interp)
                with _probe_lock:
                    _probed[key] = known
            if known:
                return interp
        tried = ", ".join(candidates) or "none of " + ", ".join(SOCKET_INTERPRETERS) + " is installed"
        raise exc.LuaSocketNotFoundError(
            f"LuaSocket not found for the interpreters tried ({tried}): install it "
            "(apt-get install lua-socket, or luarocks install luasocket into the VM's package environment)"
        )

    def _probe(self, interp: str) -> bool:
        try:
            # Without this VM's memory_limit and cpu_limit: whether the
            # interpreter has LuaSocket is recorded for every VM, and a
            # limit too small to load it is this VM's error, raised when the
            # script runs under it.
            res = self._run_helper(interp, "probe", 'return (pcall(require, "socket"))', 30.0, limits=False)
        except (exc.LuaNotFoundError, exc.VMTimeoutError) as e:
            logger.debug("no LuaSocket with %s: %s", interp, e)
            return False
        return res.get("values") == [True]

    def _helper_vm(self, interp: str, what: str, limits: bool = True) -> BasicLuaVM:
        return BasicLuaVM(
            f"{self.vm_id}.{what}",
            engine="process",
            lua_executable=interp,
            sandbox=False,
            environment=self.environment,
            memory_limit=self.memory_limit if limits else None,
            cpu_limit=self.cpu_limit if limits else None,
        )

    def _run_helper(
        self, interp: str, what: str, code: str, timeout: Optional[float], *, limits: bool = True
    ) -> ExecResult:
        """Run code in a helper VM of its own, closed afterwards, or earlier
        by this VM's stop() or close() (then VMClosedError, as for a call of
        this VM). ``limits``: with this VM's memory_limit and cpu_limit."""
        vm = self._helper_vm(interp, what, limits)
        with self._lock:
            if self._closed:
                raise exc.VMClosedError(f"VM {self.vm_id!r} is closed")
            self._helpers.add(vm)
        try:
            with vm:
                return vm._execute(code, timeout, print_results=False)
        except exc.VMClosedError as err:
            raise exc.VMClosedError(f"VM {self.vm_id!r} is stopped or closed", code=err.code) from None
        finally:
            with self._lock:
                self._helpers.discard(vm)

    def stop(self) -> None:
        """Stop the VM, and the helper scripts running now (their calls
        raise VMClosedError)."""
        if _ffi.forked:  # no lock in a forked child: see BasicLuaVM.stop
            super().stop()
            return
        check_not_delivering(self, "stop()")
        with self._lock:
            helpers = list(self._helpers)
        for vm in helpers:
            vm.close()
        super().stop()

    def _run_script(self, what: str, script: str, timeout: Optional[float]) -> ExecResult:
        with self._lock:
            if self._closed:
                raise exc.VMClosedError(f"VM {self.vm_id!r} is closed")
        interp = self._socket_interpreter()
        logger.debug("VM %r: %s with %s", self.vm_id, what, interp)
        res = self._run_helper(interp, what, _PRELUDE + script, timeout)
        values = res.get("values") or []
        res["received"] = values[0] if values else None
        return res

    # -- the helpers ------------------------------------------------------
    def start_server(
        self, port: int, timeout: Optional[float] = None, *, bind: str = "127.0.0.1", recv_timeout: float = 30.0
    ) -> ExecResult:
        """Listen on ``bind:port``, accept one client, greet it, read one line
        from it, and close. ``result["received"]`` is that line (None when
        none came: the client closed, or ``recv_timeout`` seconds passed,
        and then success is False). ``timeout`` bounds the whole call
        (waiting for the client too; None waits as long as it takes) and
        raises VMTimeoutError. ``bind`` is loopback by default; pass
        "0.0.0.0" (or "*") to accept clients from other hosts."""
        validate_port(port)
        validate_host(bind)
        script = _SERVER.substitute(
            bind=lua_string(bind), port=port, recv_timeout=_lua_number(_positive("recv_timeout", recv_timeout))
        )
        return self._run_script("server", script, timeout)

    def start_client(
        self, host: str, port: int, message: str = "Hello from Lua Client!", timeout: Optional[float] = None
    ) -> ExecResult:
        """Connect to ``host:port``, read the server's greeting line
        (``result["received"]``), send ``message`` as one line, and close.
        While the server refuses, the client retries for up to CONNECT_WINDOW
        (10) seconds, or half of ``timeout`` when that is shorter, so it may
        be started before the server; after that, success is False and
        stderr says why. ``timeout`` bounds the whole call (VMTimeoutError)."""
        validate_host(host)
        validate_port(port)
        _line("message", message)
        # Half the call's time at most: the rest is for the exchange, and a
        # refused connection then ends as a result, not a timeout.
        ms = timeout_ms(timeout)  # checked as every call's timeout; 0: none
        window = CONNECT_WINDOW if ms == 0 else min(CONNECT_WINDOW, ms / 2000)
        script = _CLIENT.substitute(
            host=lua_string(host), port=port, message=lua_string(message), window=_lua_number(window)
        )
        return self._run_script("client", script, timeout)

    def start_p2p(
        self,
        local_port: int,
        peer_host: Optional[str] = None,
        peer_port: Optional[int] = None,
        run_duration: float = 30,
        send_interval: float = 5,
        timeout: Optional[float] = None,
        *,
        bind: str = "127.0.0.1",
    ) -> ExecResult:
        """Listen on ``bind:local_port`` for ``run_duration`` seconds,
        connecting to ``peer_host:peer_port`` first when given (retrying
        while it refuses, within run_duration); greet every connection,
        print every line received, and send a heartbeat to every peer every
        ``send_interval`` seconds. ``result["received"]`` lists the lines
        received, each as "ip:port: line" ([] when none came, or the port
        could not be bound): the first P2P_RECEIVED_MAX_LINES of them, up to
        P2P_RECEIVED_MAX_BYTES in all; ``result["received_dropped"]``
        counts the lines past that (printed, not kept). ``timeout`` (None: run_duration
        plus 30 s) bounds the call."""
        validate_port(local_port)
        validate_host(bind)
        if (peer_host is None) != (peer_port is None):
            raise exc.InvalidArgumentError("give both peer_host and peer_port, or neither")
        if peer_host is not None and peer_port is not None:
            validate_host(peer_host)
            validate_port(peer_port)
        run = _positive("run_duration", run_duration)
        interval = _positive("send_interval", send_interval)
        if timeout is None:
            timeout = run + 30.0
        script = _P2P.substitute(
            bind=lua_string(bind),
            port=local_port,
            peer_host="nil" if peer_host is None else lua_string(peer_host),
            peer_port="nil" if peer_port is None else peer_port,
            run_duration=_lua_number(run),
            send_interval=_lua_number(interval),
            window=_lua_number(CONNECT_WINDOW),
            keep_lines=P2P_RECEIVED_MAX_LINES,
            keep_bytes=P2P_RECEIVED_MAX_BYTES,
        )
        res = self._run_script("p2p", script, timeout)
        values = res.get("values") or []
        res["received_dropped"] = int(values[1]) if len(values) > 1 else 0
        # Always a list: no line received is Lua's empty table, which
        # converts to {} (docs/values.md), and a failed run returns nothing.
        if not res["received"]:
            res["received"] = []
        return res
