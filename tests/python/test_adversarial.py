"""Hostile Lua on every local engine (embedded, lua5.4, luajit), one suite.

Every case must end in a typed outcome within its limit plus a margin —
an exception of the library's hierarchy (CPULimitError, VMTimeoutError,
LuaMemoryError, LuaProcessError for a crashed interpreter) or, for a
builtin that refuses to build something too large, a Lua error result that
says so — with the host process alive and its peak memory bounded, and a
following ``print(1+1)`` on the same VM printing 2.

Sandbox escape attempts (os/io/debug/package/bytecode/string metatable) are
in test_sandbox.py; this file adds the sneakier routes to the same places.
"""

from __future__ import annotations

import resource
import time
from typing import Iterator, Optional, Tuple, Type

import pytest
from pylua_bioxen_vm_lib import BasicLuaVM, create_vm
from pylua_bioxen_vm_lib.exceptions import (
    CPULimitError,
    LuaMemoryError,
    LuaProcessError,
    LuaVMError,
    VMTimeoutError,
)

MEMORY_LIMIT = 96 << 20
CPU_LIMIT = 0.3
# A breach must be seen long before the wall-clock timeout of the call.
WALL = 60.0
# Peak RSS growth allowed for one case: the VM's limit, the engine's
# overshoot (one sampling period, one doubling) and the Go collector's slack.
PEAK_BOUND = 8 * MEMORY_LIMIT


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture
def hostile(engine: tuple) -> Iterator[BasicLuaVM]:
    kind, executable = engine
    machine = create_vm(
        f"hostile_{kind}",
        engine=kind,
        lua_executable=executable,
        persistent=True,
        memory_limit=MEMORY_LIMIT,
        cpu_limit=CPU_LIMIT,
    )
    machine.execute_string("kept = 'state'")
    yield machine
    result = machine.execute_string("print(1+1)")
    assert result["stdout"] == "2", result
    machine.close()


def outcome(vm: BasicLuaVM, code: str, timeout: float = WALL) -> Tuple[Optional[Type[BaseException]], dict, float]:
    """Run code; returns (exception type or None, result or {}, seconds)."""
    before = peak_rss()
    start = time.monotonic()
    try:
        result = dict(vm.execute_string(code, timeout=timeout))
        error: Optional[Type[BaseException]] = None
    except LuaVMError as exc:
        result, error = {"message": str(exc)}, type(exc)
    took = time.monotonic() - start
    assert peak_rss() - before < PEAK_BOUND, f"peak RSS grew by {(peak_rss() - before) >> 20} MiB"
    return error, result, took


# -- CPU traps: the CPU budget stops them wherever the loop hides -----------

CPU_TRAPS = {
    "plain loop": "while true do end",
    "loop in pcall": "while true do pcall(function() while true do end end) end",
    "xpcall handler": "xpcall(function() error('x') end, function() while true do end end)",
    "coroutine": "coroutine.wrap(function() while true do end end)()",
    "__tostring": "print(setmetatable({}, {__tostring = function() while true do end end}))",
    "__index": "return setmetatable({}, {__index = function() while true do end end}).x",
    "error loop": "while true do pcall(error, {}) end",
    "error handler raising": "while true do xpcall(error, function() error('again') end) end",
    "pathological pattern": "return string.find(string.rep('a', 60), string.rep('a*', 60) .. 'b')",
}


@pytest.mark.parametrize("name", sorted(CPU_TRAPS))
def test_cpu_trap(hostile, name):
    error, result, took = outcome(hostile, CPU_TRAPS[name])
    assert error is CPULimitError, (error, result)
    assert took < WALL / 2


def test_gc_and_close_metamethods(hostile, engine):
    """__gc (Lua 5.2+ tables) and __close (5.4) handlers that never return
    are stopped like any code; where the engine has no such metamethod (and
    in the sandbox, where tables get no finalizers) the chunk just finishes
    or is a syntax error."""
    gc = "setmetatable({}, {__gc = function() while true do end end}) collectgarbage() collectgarbage()"
    close = "do local x <close> = setmetatable({}, {__close = function() while true do end end}) end"
    for code in (gc, close):
        error, result, _ = outcome(hostile, code)
        assert error in (None, CPULimitError), (error, result)
        if error is None and engine[1] != "lua5.4":
            assert result["success"] or "syntax" in (result["error"] or "") or "<" in (result["error"] or "")


def test_timeout_is_wall_clock_and_accurate(hostile):
    start = time.monotonic()
    with pytest.raises(VMTimeoutError):
        hostile.execute_string("while true do pcall(function() while true do end end) end", timeout=0.25)
    assert time.monotonic() - start < 0.25 + 1.5


# -- memory bombs ----------------------------------------------------------

MEMORY_BOMBS = {
    "table growth": "local t = {} for i = 1, 1e9 do t[i] = i end",
    "global table": "big = {} for i = 1, 1e9 do big[i] = 'x' .. i end",
    "doubling concatenation": "local s = 'x' for i = 1, 40 do s = s .. s end",
    "hash growth": "local t = {} for i = 1, 1e9 do t['k' .. i] = {i} end",
    "in a coroutine": "coroutine.wrap(function() local t = {} for i = 1, 1e9 do t[i] = {} end end)()",
    "kept across pcall": (
        "local keep = {} while true do pcall(function() for i = 1, 1e5 do keep[#keep + 1] = {i} end end) end"
    ),
    "strings in a table": "local t = {} for i = 1, 1e9 do t[i] = string.rep('y', 4096) .. i end",
    # Each coroutine holds ~27 KB on the embedded engine (its call-frame
    # table is sized for the maximum depth): the accounting must see it.
    "coroutines": "local t = {} for i = 1, 1e9 do t[i] = coroutine.create(function() end) end",
    # load runs its reader in a protected call of its own.
    "in a load reader": (
        "local f, e = load(function() local t = {} for i = 1, 1e9 do t[i] = {i} end end) return 'swallowed', e"
    ),
    # While the REPL-style printing of the returned values calls __tostring
    # (the process engine's driver reported "error calling 'print'").
    "printing a returned value": (
        "return setmetatable({}, {__tostring = function() local t = {} for i = 1, 1e9 do t[i] = {} end end})"
    ),
}


@pytest.mark.parametrize("name", sorted(MEMORY_BOMBS))
def test_memory_bomb(engine, name):
    kind, executable = engine
    # No CPU budget here: the memory limit must be what stops the bomb.
    with create_vm(
        "bomb", engine=kind, lua_executable=executable, persistent=True, memory_limit=MEMORY_LIMIT
    ) as machine:
        error, result, took = outcome(machine, MEMORY_BOMBS[name])
        if executable == "luajit" and error is LuaProcessError:
            # LuaJIT out of address space can crash (SIGSEGV) instead of
            # raising "not enough memory": a typed interpreter crash, and
            # the VM restarts (docs/sandbox.md).
            assert "died during the call" in result["message"], result
        else:
            assert error is LuaMemoryError, (error, result, took)
        assert machine.execute_string("print(1+1)")["stdout"] == "2"


BUILTIN_BOMBS = {
    "huge repeat": "return #string.rep('x', 2^40)",
    "huge repeat with separator": "return #string.rep('x', 2^31, ',')",
    "unpack range": "return select('#', unpack({}, 1, 1e8))",
    "table.concat": (
        "local t = {} for i = 1, 64 do t[i] = string.rep('z', 2^22) end return #table.concat(t, string.rep(',', 2^24))"
    ),
    "format width": "return string.format('%0999999d', 1)",
    "gsub expansion": "return #string.gsub(string.rep('a', 2^20), 'a', string.rep('b', 2^10))",
    "os.date expansion": "return #os.date(string.rep('%c', 2^24))",
}


@pytest.mark.parametrize("name", sorted(BUILTIN_BOMBS))
def test_builtin_bomb(hostile, name):
    code = BUILTIN_BOMBS[name].replace("unpack(", "(table.unpack or unpack)(")
    error, result, _ = outcome(hostile, code)
    if error is None and result["success"]:
        # LuaJIT's string.rep returns "" for a count it cannot represent.
        assert result["values"] in ([0], [None]), result
    elif error is None:
        message = result["error"].lower()
        assert any(w in message for w in ("too large", "too many", "invalid", "memory", "overflow")), message
    else:
        assert error in (LuaMemoryError, CPULimitError), (error, result)


# -- output floods, recursion, error objects -------------------------------


@pytest.mark.parametrize("stream", ["io.write", "print", "io.stderr:write"])
def test_output_flood(hostile, stream):
    code = f"for i = 1, 4096 do {stream}(string.rep('x', 65536)) end return 'done'"
    error, result, _ = outcome(hostile, code)
    if error is None:
        assert result["success"], result
        captured = result["stdout"] if "stderr" not in stream else result["stderr"]
        assert len(captured) <= (8 << 20) + 4096
    else:
        assert error is CPULimitError


def test_endless_output_stops_at_the_cpu_budget(hostile):
    error, result, _ = outcome(hostile, "while true do io.write('flood') end")
    assert error is CPULimitError, result


RECURSION = {
    "lua recursion": "local function f(n) return 1 + f(n + 1) end return f(1)",
    "through gsub": "local function f() return (string.gsub('a', 'a', f)) end return f()",
    "through __index": "local t = setmetatable({}, {}) getmetatable(t).__index = function(t, k) return t[k] end "
    "return t.x",
    "through tostring": "local t = setmetatable({}, {}) getmetatable(t).__tostring = function(t) return tostring(t) "
    "end "
    "return tostring(t)",
    "through pcall": "local function f() return pcall(f) end return f()",
    "through coroutines": "local function f() return coroutine.wrap(f)() end return f()",
}


@pytest.mark.parametrize("name", sorted(RECURSION))
def test_deep_recursion(hostile, engine, name):
    error, result, _ = outcome(hostile, RECURSION[name])
    if error is None:
        # Either a Lua error ("stack overflow", "C stack overflow" ...) or,
        # for pcall, the overflow caught at the deepest level.
        if result["success"]:
            assert result["values"] and result["values"][0] in (False, True), result
        else:
            assert "overflow" in result["error"] or "stack" in result["error"], result["error"]
    elif engine[0] == "process" and error is LuaProcessError:
        # LuaJIT segfaults on some C-stack overflows (gsub, coroutine.wrap
        # recursion): a typed interpreter crash, and the VM restarts.
        assert "died during the call" in result["message"], result
    else:
        assert error in (CPULimitError, LuaMemoryError), (error, result)


@pytest.mark.parametrize(
    "source",
    [
        "return " + "(" * 2_000_000 + "1" + ")" * 2_000_000,
        "return " + "1 + " * 2_000_000 + "1",
        "do " * 1_000_000 + " end" * 1_000_000,
    ],
    ids=["parentheses", "sum", "blocks"],
)
def test_deeply_nested_source(hostile, source):
    # Compiling it recursed once per level on the embedded engine: the sum
    # overflowed Go's stack and killed the host. Now a syntax error (Lua
    # stops nesting at 200 levels, the embedded engine at 10,000), or, for
    # the sum, its value on the interpreters.
    error, result, _ = outcome(hostile, source)
    if error is None and result["success"]:
        assert result["values"] == [2_000_001], result
    elif error is None:
        message = result["error"]
        assert "syntax levels" in message or "overflow" in message or "too many" in message, message
    else:
        assert error in (CPULimitError, LuaMemoryError, VMTimeoutError), (error, result)


def test_huge_error_message_is_bounded(hostile):
    error, result, _ = outcome(hostile, "error(string.rep('e', 2^24))")
    assert error is None and not result["success"], (error, result)
    # The message keeps its first 64 KiB and says how much was dropped.
    assert len(result["error"]) <= 64 << 10
    assert result["error"].endswith("more bytes]")
    assert len(result["stderr"]) <= (8 << 20) + 4096
    # Four times larger: building it may use up the CPU or memory budget
    # first, which is as typed an ending.
    error, result, _ = outcome(hostile, "error(string.rep('e', 2^26))")
    assert error in (None, CPULimitError, LuaMemoryError), (error, result)


def test_error_objects_that_fight_back(hostile):
    for code in (
        "error(setmetatable({}, {__tostring = function() error('inner') end}))",
        "error(setmetatable({}, {__tostring = function() while true do end end}))",
        "error(setmetatable({}, {__tostring = function() return string.rep('t', 2^26) end}))",
    ):
        error, result, _ = outcome(hostile, code)
        if error is None:
            assert not result["success"]
            assert len(result["error"]) <= (8 << 20) + 4096
        else:
            assert error is CPULimitError


# -- escapes the sandbox must also close ----------------------------------

SNEAKY = [
    "return getmetatable('').__index",
    "return rawget(_G, 'os').execute",
    "return load('return os.execute')()",
    "return (require and package.loaded.os or {}).execute",
    "return string.dump",
    "return (loadstring or load)('\\27Lua')",
    "return debug.getinfo",
    "return collectgarbage('stop')",
    "return (io.open('/etc/passwd'))",
    "return dofile('/etc/passwd')",
    "return package.loadlib",
    "return (require('debug') or {}).sethook",
]


@pytest.mark.parametrize("code", SNEAKY)
def test_sneaky_escapes(hostile, code):
    error, result, _ = outcome(hostile, code)
    assert error is None, (error, result)
    if result["success"]:
        # nothing, or nil/false followed by an explanation
        assert not result["values"] or result["values"][0] in (None, False), result


def test_state_survives_cpu_breach_on_embedded(engine):
    """The embedded engine stops a chunk past its CPU budget and keeps the
    VM's globals; the process engine restarts its interpreter (documented)."""
    kind, executable = engine
    with create_vm("keep", engine=kind, lua_executable=executable, persistent=True, cpu_limit=0.2) as machine:
        machine.execute_string("kept = 41")
        with pytest.raises(CPULimitError):
            machine.execute_string("while true do end")
        value = machine.execute_string("return kept")["values"][0]
        assert value == (41 if kind == "embedded" else None)
