"""How precisely limits stop hostile code, per engine.

Run from the repository root:

    PYTHONPATH=python python3 bench/bench_limits.py [--reps N]

For each engine (embedded, process lua5.4, process luajit) and each trap
(a plain loop, a loop inside pcall, an xpcall handler, a coroutine, a
pathological pattern), measures how long after its limit the call returned:

* wall-clock timeout (50 ms): overshoot = return time - 50 ms. Target (issue
  #6): accurate to 10 ms.
* CPU budget (50 ms of CPU): the wall time of the call, which on an idle
  machine should be the budget plus a few ms.
* memory limit (64 MiB): the time a table-growth bomb takes to be stopped.

Printed as p50 / max per engine; the machine's load makes the tail.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import time
from typing import Dict, List

from pylua_bioxen_vm_lib import create_vm
from pylua_bioxen_vm_lib.exceptions import CPULimitError, LuaMemoryError, LuaProcessError, VMTimeoutError

TRAPS = {
    "loop": "while true do end",
    "pcall loop": "while true do pcall(function() while true do end end) end",
    "xpcall handler": "xpcall(function() error('x') end, function() while true do end end)",
    "coroutine": "coroutine.wrap(function() while true do end end)()",
    "pattern": "return string.find(string.rep('a', 60), string.rep('a*', 60) .. 'b')",
}
ENGINES = [("embedded", "embedded", "lua"), ("lua5.4", "process", "lua5.4"), ("luajit", "process", "luajit")]
TIMEOUT = 0.05
CPU = 0.05


def ms(xs: List[float]) -> str:
    return f"p50 {statistics.median(xs) * 1e3:6.1f} ms  max {max(xs) * 1e3:6.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    worst_timeout = 0.0
    for name, kind, exe in ENGINES:
        if exe != "lua" and shutil.which(exe) is None:
            print(f"{name}: not installed, skipped")
            continue
        over: Dict[str, List[float]] = {}
        cpu: Dict[str, List[float]] = {}
        with create_vm("lim", engine=kind, lua_executable=exe, persistent=True) as vm:
            for trap, code in TRAPS.items():
                for _ in range(args.reps):
                    t0 = time.monotonic()
                    with contextlib.suppress(VMTimeoutError):
                        vm.execute_string(code, timeout=TIMEOUT)
                    over.setdefault(trap, []).append(time.monotonic() - t0 - TIMEOUT)
        with create_vm("cpu", engine=kind, lua_executable=exe, persistent=True, cpu_limit=CPU) as vm:
            for trap, code in TRAPS.items():
                for _ in range(args.reps):
                    t0 = time.monotonic()
                    with contextlib.suppress(CPULimitError):
                        vm.execute_string(code, timeout=30)
                    cpu.setdefault(trap, []).append(time.monotonic() - t0)
        bombs: List[float] = []
        with create_vm("mem", engine=kind, lua_executable=exe, persistent=True, memory_limit=64 << 20) as vm:
            for _ in range(args.reps):
                t0 = time.monotonic()
                with contextlib.suppress(LuaMemoryError, LuaProcessError):
                    vm.execute_string("local t = {} for i = 1, 1e9 do t[i] = {} end", timeout=60)
                bombs.append(time.monotonic() - t0)
        print(f"\n== {name} ==")
        for trap in TRAPS:
            worst_timeout = max(worst_timeout, statistics.median(over[trap]))
            print(f"  {trap:<15} timeout 50 ms overshoot: {ms(over[trap])}   cpu budget 50 ms, wall: {ms(cpu[trap])}")
        print(f"  memory bomb, 64 MiB limit, stopped after: {ms(bombs)}")
    verdict = "met" if worst_timeout <= 0.010 else "MISSED"
    print(f"\ntarget: timeout accurate to 10 ms (worst p50 overshoot {worst_timeout * 1e3:.1f} ms)  {verdict}")


if __name__ == "__main__":
    main()
