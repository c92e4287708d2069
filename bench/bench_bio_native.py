"""bio_compute's native kernels: the embedded engine vs lua5.4 running the pure-Lua module.

Run from the repository root after `make build`:

    PYTHONPATH=python python3 bench/bench_bio_native.py [--mb 4] [--reps 3]

Times gc_content, base_counts, reverse_complement, six_frame_translation and
kmer_counts(k=6) of lua/bio_compute/src/bio_compute.lua over one sequence of
--mb megabytes (generated in Lua, not timed) on:

* embedded native: the embedded engine (create_vm, trusted), where
  require("bio_compute") uses the Go module bio_compute.native;
* embedded pure Lua: the same with package.preload["bio_compute.native"]
  removed first (the module's Lua loops on gopher-lua), for reference;
* lua5.4: `lua5.4 -` with LUA_PATH=lua/bio_compute/src/?.lua;; (the module's
  Lua loops; no native module exists there).

Each time is the best of --reps calls, measured inside Lua with os.clock()
(wall clock on gopher-lua, CPU time on lua5.4). Every engine must return the
same checksums (MISMATCH -> exit 1). Target: embedded native faster than
lua5.4 on every function.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

from bench_suite import PRELUDE  # gen_seq, hash_sample: the same sequence as the suite
from pylua_bioxen_vm_lib import create_vm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "lua", "bio_compute", "src", "?.lua")
TIMEOUT = 600.0

FUNCTIONS = ["gc_content", "base_counts", "reverse_complement", "six_frame_translation", "kmer_counts k=6"]

# @SETUP@ sets package.path (embedded) and may remove the native module.
CHUNK = r"""
@SETUP@
package.loaded.bio_compute = nil
local bc = require("bio_compute")
@PRELUDE@
local fmt = string.format
local s = gen_seq(@N@, 4242)
local reps = @REPS@
local function bench(name, f, sum)
  local best, r
  for _ = 1, reps do
    local t0 = os.clock()
    r = f()
    local dt = os.clock() - t0
    if not best or dt < best then
      best = dt
    end
  end
  print(fmt("%s\t%.6f\t%s", name, best, sum(r)))
end
print("native\t" .. tostring(bc.native_kernels == true))
bench("gc_content", function() return bc.gc_content(s) end, function(g) return fmt("%.12f", g) end)
bench("base_counts", function() return bc.base_counts(s) end, function(c)
  return fmt("%d,%d,%d,%d,%d,%d", c.A, c.C, c.G, c.T, c.N, c.other)
end)
bench("reverse_complement", function() return bc.reverse_complement(s) end, function(rc)
  return fmt("%d:%d", #rc, hash_sample(rc, 101))
end)
bench("six_frame_translation", function() return bc.six_frame_translation(s) end, function(t)
  local h = 0
  for _, f in ipairs({1, 2, 3, -1, -2, -3}) do
    h = (h * 31 + hash_sample(t[f], 13)) % MOD
  end
  return fmt("%d", h)
end)
bench("kmer_counts k=6", function() return bc.kmer_counts(s, 6) end, function(c)
  local distinct, total, sumsq = 0, 0, 0
  for _, v in pairs(c) do
    distinct, total, sumsq = distinct + 1, total + v, (sumsq + v * v) % MOD
  end
  return fmt("%d,%d,%d", distinct, total, sumsq)
end)
"""

Row = Dict[str, Tuple[float, str]]  # function -> (seconds, checksum)


def chunk(n: int, reps: int, setup: str) -> str:
    code = CHUNK.replace("@SETUP@", setup).replace("@PRELUDE@", PRELUDE)
    return code.replace("@N@", str(n)).replace("@REPS@", str(reps))


def parse(stdout: str) -> Tuple[bool, Row]:
    native, row = False, {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "native":
            native = parts[1] == "true"
        elif len(parts) == 3:
            row[parts[0]] = (float(parts[1]), parts[2])
    return native, row


def run_embedded(n: int, reps: int, native: bool) -> Tuple[bool, Row]:
    setup = f"package.path = {SRC!r} .. ';' .. package.path"
    if not native:
        setup += '\npackage.preload["bio_compute.native"] = nil'
    vm = create_vm("bench_bio_native", sandbox=False)
    try:
        r = vm.execute_string(chunk(n, reps, setup), timeout=TIMEOUT)
    finally:
        vm.close()
    if not r["success"]:
        raise RuntimeError(f"embedded: {r.get('error') or r.get('stderr')}")
    return parse(r["stdout"])


def run_lua54(n: int, reps: int) -> Optional[Tuple[bool, Row]]:
    if shutil.which("lua5.4") is None:
        return None
    env = dict(os.environ, LUA_PATH=SRC + ";;")
    p = subprocess.run(
        ["lua5.4", "-"], input=chunk(n, reps, ""), capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    if p.returncode != 0:
        raise RuntimeError(f"lua5.4: {p.stderr.strip()}")
    return parse(p.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=4.0, help="sequence length in megabytes (default 4)")
    ap.add_argument("--reps", type=int, default=3, help="calls per function; the best counts (default 3)")
    args = ap.parse_args()
    n = int(args.mb * 1_000_000)
    print(f"== bio_compute native kernels: {n:,}-base sequence, best of {args.reps} ==", flush=True)

    columns: List[Tuple[str, Row]] = []
    nat_on, nat = run_embedded(n, args.reps, True)
    if not nat_on:
        print("embedded: bio_compute.native_kernels is false (native module missing?)")
        return 1
    columns.append(("embedded native", nat))
    pure_on, pure = run_embedded(n, args.reps, False)
    if pure_on:
        print("embedded: native kernels still in use after removing the preload entry")
        return 1
    columns.append(("embedded pure Lua", pure))
    lua = run_lua54(n, args.reps)
    if lua is None:
        print("lua5.4 not installed: no baseline")
        return 1
    if lua[0]:
        print("lua5.4: native kernels reported in use?")
        return 1
    columns.append(("lua5.4", lua[1]))

    ok = True
    for f in FUNCTIONS:
        sums = {name: row[f][1] for name, row in columns}
        if len(set(sums.values())) != 1:
            print(f"!!! MISMATCH in {f}: {sums}")
            ok = False

    hdr = f"{'function':<24}" + "".join(f"{name:>19}" for name, _ in columns) + f"{'native/lua5.4':>15}{'speedup':>9}"
    print()
    print(hdr)
    print("-" * len(hdr))
    beats = True
    tot = {name: 0.0 for name, _ in columns}
    for f in FUNCTIONS:
        line = f"{f:<24}"
        for name, row in columns:
            line += f"{row[f][0]:>18.4f}s"
            tot[name] += row[f][0]
        ratio = nat[f][0] / lua[1][f][0]
        beats = beats and ratio < 1
        line += f"{ratio:>15.3f}{1 / ratio:>8.1f}x"
        print(line)
    print("-" * len(hdr))
    ratio = tot["embedded native"] / tot["lua5.4"]
    line = f"{'total':<24}" + "".join(f"{tot[name]:>18.4f}s" for name, _ in columns)
    print(line + f"{ratio:>15.3f}{1 / ratio:>8.1f}x")
    print("\nTimes in seconds (lower is better); ratios: embedded native / lua5.4 pure Lua.")
    print(f"Target: embedded native beats lua5.4 on every function: {'MET' if beats else 'NOT MET'}")
    print(f"Checksums: {'all engines agree' if ok else 'MISMATCH'}")
    return 0 if ok and beats else 1


if __name__ == "__main__":
    sys.exit(main())
