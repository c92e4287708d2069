"""Per-call latency of execute_string('return 2 + 2') on a warm VM.

Engines: the embedded engine and the process engine (lua5.4, luajit when
installed), beside the original library's method — one `lua5.4 -e` process
per call through subprocess — measured in the same run. Prints p50/p99 and
the speed-up over that baseline, with the targets of issue #2:
embedded >= 100x, process engine >= 10x.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
from typing import Callable, List

from pylua_bioxen_vm_lib import create_vm

CODE = "return 2 + 2"


def sample(fn: Callable[[], object], n: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        fn()
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20000, help="calls per in-process engine")
    ap.add_argument("--baseline-n", type=int, default=300, help="processes for the baseline")
    args = ap.parse_args()

    if shutil.which("lua5.4") is None:
        raise SystemExit("lua5.4 is needed for the baseline (apt-get install lua5.4)")

    def baseline() -> None:
        # The original: subprocess.run([lua, "-e", code], capture_output=True, text=True)
        r = subprocess.run(["lua5.4", "-e", CODE], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0

    rows = [("baseline: lua5.4 -e per call", sample(baseline, args.baseline_n, 10), None)]

    embedded = create_vm("bench_embedded")
    assert embedded.execute_string(CODE)["stdout"] == "4"
    rows.append(("embedded (gopher-lua)", sample(lambda: embedded.execute_string(CODE), args.n, 2000), 100))
    embedded.close()

    for interp in ("lua5.4", "luajit"):
        if shutil.which(interp) is None:
            print(f"{interp}: not installed, skipped")
            continue
        proc = create_vm(f"bench_{interp}", lua_executable=interp)
        assert proc.execute_string(CODE)["stdout"] == "4"
        rows.append((f"process engine ({interp})", sample(lambda p=proc: p.execute_string(CODE), args.n // 4, 500), 10))
        proc.close()

    base_p50 = statistics.median(rows[0][1])
    print(f"\nexecute_string({CODE!r}), warm VM, from Python")
    print(f"{'engine':34} {'p50 µs':>10} {'p99 µs':>10} {'speed-up':>10}  target")
    for name, xs, target in rows:
        p50, p99 = statistics.median(xs), pct(xs, 0.99)
        ratio = base_p50 / p50
        verdict = "" if target is None else (f">= {target}x: " + ("met" if ratio >= target else "MISSED"))
        print(f"{name:34} {p50 * 1e6:10.1f} {p99 * 1e6:10.1f} {ratio:9.1f}x  {verdict}")


if __name__ == "__main__":
    main()
