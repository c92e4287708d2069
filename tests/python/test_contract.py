"""The execution contract, on every local engine (embedded, lua5.4, luajit)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import threading

import pytest
from pylua_bioxen_vm_lib import BasicLuaVM, LuaOpaque, create_vm
from pylua_bioxen_vm_lib.exceptions import (
    CodeTooLargeError,
    LuaFileNotFoundError,
    LuaProcessError,
    LuaVMError,
    VMClosedError,
    VMTimeoutError,
)

RESULT_KEYS = {"stdout", "stderr", "return_code", "success", "values", "error"}


def test_return_is_printed_like_the_repl(vm):
    result = vm.execute_string("return 2 + 2")
    assert set(result) == RESULT_KEYS
    assert result["stdout"] == "4"
    assert result["stderr"] == ""
    assert result["return_code"] == 0
    assert result["success"] is True
    assert result["values"] == [4]
    assert result["error"] is None


def test_multiple_returns_tab_separated(vm):
    result = vm.execute_string("return 1, 'two', nil, true")
    assert result["stdout"] == "1\ttwo\tnil\ttrue"
    assert result["values"] == [1, "two", None, True]


def test_no_return_prints_nothing(vm):
    assert vm.execute_string("local x = 1")["stdout"] == ""


def test_print_io_write_and_stdout_go_to_the_result(vm, capfd):
    result = vm.execute_string("print('a', 1) io.write('b', 2, '\\n') io.stdout:write('c\\n') io.output():write('d')")
    assert result["stdout"] == "a\t1\nb2\nc\nd"
    assert capfd.readouterr() == ("", "")  # nothing reached the host's descriptors


def test_stderr_is_separate(vm, capfd):
    result = vm.execute_string("io.stderr:write('oops\\n') print('fine')")
    assert result["stderr"] == "oops"
    assert result["stdout"] == "fine"
    assert capfd.readouterr() == ("", "")


def test_stdin_reads_end_of_file(vm):
    assert vm.execute_string("return io.read('*l')")["values"] == [None]
    # As at the end of a file: "*a" reads an empty string, the other
    # formats nil, which ends the results (the embedded engine gave nil
    # for "*a" too).
    assert vm.execute_string("return io.read('*a', '*a')")["values"] == ["", ""]
    assert vm.execute_string("return io.stdin:read('*a', 0, '*a')")["values"] == ["", None]
    assert vm.execute_string("return io.read(), io.read(0)")["values"] == [None, None]
    bad = vm.execute_string("return io.stdin:read('a', {})")
    assert not bad["success"] and "bad argument #2 to" in bad["error"] and "(invalid format)" in bad["error"]


def test_values_mapping(vm):
    result = vm.execute_string(
        "return {1, 2, {a = 'x'}}, {}, 1.5, 2^53, 0/0, 1/0, -1/0, 'caf\\195\\169', '\\255\\0', print"
    )
    seq, empty, half, big, nan, inf, ninf, text, raw, fn = result["values"]
    assert seq == [1, 2, {"a": "x"}]
    assert empty == {}
    assert half == 1.5
    assert big == 2**53 and isinstance(big, int)
    assert math.isnan(nan)
    assert inf == math.inf and ninf == -math.inf
    assert text == "café"
    assert raw == b"\xff\x00"
    assert isinstance(fn, LuaOpaque) and fn.type == "function"


def test_cycles_and_depth_are_cut(vm):
    result = vm.execute_string(
        "local t = {} t.self = t "
        "local deep = {} local cur = deep for i = 1, 200 do cur.next = {} cur = cur.next end "
        "return t, deep"
    )
    cyc, deep = result["values"]
    assert cyc == {"self": LuaOpaque("table", "<cycle>")}
    depth = 0
    while isinstance(deep, dict) and "next" in deep:
        deep = deep["next"]
        depth += 1
    assert deep == LuaOpaque("table", "<depth limit>")
    assert 30 < depth < 100


def test_syntax_error_is_a_result(vm):
    result = vm.execute_string("x = = 1")
    assert result["success"] is False
    assert result["return_code"] == 1
    assert result["stderr"].startswith("input:1:")
    assert result["error"].startswith("input:1:")


def test_runtime_error_has_message_line_and_traceback(vm):
    result = vm.execute_string("local function f()\n  error('boom')\nend\nf()")
    assert result["success"] is False
    assert result["return_code"] == 1
    assert result["stderr"].startswith("input:2: boom")
    assert "stack traceback:" in result["stderr"]
    assert result["error"] == "input:2: boom"


def test_single_values_decode_as_json_does():
    # decode takes a shortcut for one integer; every other text goes to
    # json as before, and the results must not differ.
    import json

    from pylua_bioxen_vm_lib.values import decode

    for text in [
        "[4]",
        "[-12]",
        "[0]",
        "[9007199254740992]",
        "[-9007199254740992]",
        "[1,2]",
        "[1.5]",
        "[-0.0]",
        "[1e3]",
        '["4"]',
        "[true]",
        "[null]",
        "[ 4]",
        "[4 ]",
    ]:
        assert decode(text.encode()) == json.loads(text), text
    for bad in ["[-]", "[--1]", "[4", "4]", "x4y"]:
        with pytest.raises(ValueError):
            decode(bad.encode())


def test_error_with_table_value(vm):
    result = vm.execute_string("error({code = 1})")
    assert result["success"] is False
    assert "table" in result["error"]


def test_os_exit_ends_the_chunk_not_the_host(vm):
    result = vm.execute_string("print('before') os.exit(3) print('after')")
    assert result["return_code"] == 3
    assert result["success"] is False
    assert result["stdout"] == "before"
    assert vm.execute_string("os.exit(true)")["return_code"] == 0
    assert vm.execute_string("os.exit(false)")["return_code"] == 1
    assert vm.execute_string("return 1 + 1")["stdout"] == "2"  # the VM lives on


def test_timeout_then_reuse(vm):
    with pytest.raises(VMTimeoutError) as info:
        vm.execute_string("while true do end", timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert vm.execute_string("print(1 + 1)")["stdout"] == "2"


def test_timeout_inside_pcall(vm):
    with pytest.raises(VMTimeoutError):
        vm.execute_string("while true do pcall(function() while true do end end) end", timeout=0.2)
    assert vm.execute_string("print(1 + 1)")["stdout"] == "2"


def test_fresh_environment_per_call(vm):
    vm.execute_string("x = 42; string.shout = string.upper; function helper() end")
    result = vm.execute_string("return x, string.shout, helper, string.upper('ok')")
    assert result["values"] == [None, None, None, "OK"]


def test_persistent_globals_survive(persistent_vm):
    persistent_vm.execute_string("x = 42; function double(n) return 2 * n end")
    assert persistent_vm.execute_string("return double(x)")["values"] == [84]


def test_execute_file_and_shebang(vm, tmp_path):
    script = tmp_path / "script.lua"
    script.write_text("#!/usr/bin/env lua\nprint('from file')\nreturn 7\n")
    result = vm.execute_file(str(script))
    assert result["stdout"] == "from file"  # returned values are not printed, like `lua file`
    assert result["values"] == [7]
    broken = tmp_path / "broken.lua"
    broken.write_text("\n\nerror('bad')\n")
    result = vm.execute_file(broken)
    # Lua shortens long chunk names ("...tail/broken.lua") in messages.
    assert result["stderr"].splitlines()[0].endswith("broken.lua:3: bad")


def test_execute_temp_script(vm):
    assert vm.execute_temp_script("return 'tmp'")["stdout"] == "tmp"


def test_missing_file(vm, tmp_path):
    with pytest.raises(LuaFileNotFoundError) as info:
        vm.execute_file(str(tmp_path / "nope.lua"))
    assert isinstance(info.value, FileNotFoundError)
    assert "nope.lua" in str(info.value)


@pytest.mark.parametrize("code", ["", "   \n\t"])
def test_empty_code_is_a_value_error(vm, code):
    with pytest.raises(ValueError):
        vm.execute_string(code)


@pytest.mark.parametrize("code", [None, 42, ["print(1)"]])
def test_non_string_code_is_a_type_error(vm, code):
    with pytest.raises(TypeError):
        vm.execute_string(code)


def test_nul_byte_is_a_value_error(vm):
    with pytest.raises(ValueError) as info:
        vm.execute_string("print(1)\x00")
    assert isinstance(info.value, LuaVMError)


def test_bytes_code_is_accepted(vm):
    assert vm.execute_string(b"return 'bytes'")["stdout"] == "bytes"


def test_binary_output_does_not_break_decoding(vm):
    result = vm.execute_string("io.write('ok\\255\\254')")
    assert result["stdout"] == "ok\ufffd\ufffd"
    assert result.stdout_bytes == b"ok\xff\xfe"


def test_huge_output_is_capped_with_a_marker(engine):
    kind, executable = engine
    with BasicLuaVM("cap", engine=kind, lua_executable=executable, max_output_bytes=1000) as capped:
        result = capped.execute_string("for i = 1, 10000 do io.write('xxxxxxxxxx') end")
        assert result.truncated
        assert result["stdout"].startswith("x" * 1000)
        assert result["stdout"].endswith("[bioxen: output truncated, 99000 bytes dropped]")
        assert capped.execute_string("return 1")["stdout"] == "1"


def test_code_over_the_size_limit_is_refused(engine):
    kind, executable = engine
    small = BasicLuaVM("big", engine=kind, lua_executable=executable, max_source_bytes=100)
    with small, pytest.raises(CodeTooLargeError):
        small.execute_string("return '" + "x" * 200 + "'")


def test_use_after_close_and_double_close(vm):
    vm.close()
    vm.close()  # harmless
    with pytest.raises(VMClosedError):
        vm.execute_string("return 1")
    with pytest.raises(VMClosedError):
        vm.start()


def test_stop_then_start_again(vm):
    vm.execute_string("return 1")
    vm.stop()
    vm.stop()
    assert not vm.is_running()
    vm.start()
    assert vm.execute_string("return 5")["values"] == [5]


def test_context_manager_closes(engine):
    kind, executable = engine
    with create_vm("ctx", engine=kind, lua_executable=executable) as machine:
        assert machine.execute_string("return 1")["success"]
    assert machine.closed


def test_gil_is_released_while_lua_runs(vm):
    progress = []
    done = threading.Event()

    def spin():
        with contextlib.suppress(VMTimeoutError):
            vm.execute_string("while true do end", timeout=1.0)
        done.set()

    worker = threading.Thread(target=spin)
    worker.start()
    while not done.is_set():
        progress.append(1)  # only runs if the worker released the GIL
        if len(progress) > 10000:
            break
    worker.join()
    assert len(progress) > 10000


def test_many_threads_share_one_vm(vm):
    errors = []

    def work(n):
        try:
            for i in range(20):
                assert vm.execute_string(f"return {n} * {i}")["values"] == [n * i]
        except Exception as err:  # collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_no_file_descriptor_leak(engine):
    kind, executable = engine
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        with create_vm(f"fd{i}", engine=kind, lua_executable=executable) as machine:
            machine.execute_string("return 1")
    assert len(os.listdir("/proc/self/fd")) <= before + 2


@pytest.mark.parametrize("executable", ["lua5.4", "luajit"])
def test_interpreter_crash_is_typed_and_the_vm_restarts(executable):
    if shutil.which(executable) is None:
        pytest.skip(f"{executable} is not installed")
    with create_vm("crashy", lua_executable=executable, persistent=True, sandbox=False) as machine:
        machine.execute_string("before = 1")
        # The interpreter kills itself with SIGSEGV in the middle of a call
        # ($PPID of the shell is the interpreter): a real crash, no mock.
        with pytest.raises(LuaProcessError) as info:
            machine.execute_string("io.write('partial') os.execute('kill -SEGV $PPID') while true do end")
        assert "SIGSEGV" in str(info.value) or "segmentation" in str(info.value).lower()
        result = machine.execute_string("return before")  # a new interpreter: globals are gone
        assert result["success"] and result["values"] == [None]


def test_lua54_coroutine_close_crash_is_typed():
    """Debian's lua5.4 (5.4.4) segfaults on a deep chain of coroutine.close
    calls made through __close; the engine reports it and restarts."""
    if shutil.which("lua5.4") is None:
        pytest.skip("lua5.4 is not installed")
    chain = """
    local co
    for i = 1, 20000 do
      local prev = co
      co = coroutine.create(function()
        local x <close> = setmetatable({}, {__close = function() if prev then coroutine.close(prev) end end})
        coroutine.yield()
      end)
      coroutine.resume(co)
    end
    coroutine.close(co)
    print('survived')
    """
    version = subprocess.run(["lua5.4", "-v"], capture_output=True, text=True).stdout
    with create_vm("crash54", lua_executable="lua5.4") as machine:
        if "5.4.4" in version:
            with pytest.raises(LuaProcessError) as info:
                machine.execute_string(chain)
            assert "segmentation fault" in str(info.value)
        else:  # 5.4.6+ fixed the bug
            assert machine.execute_string(chain)["stdout"] == "survived"
        assert machine.execute_string("print(1 + 1)")["stdout"] == "2"
