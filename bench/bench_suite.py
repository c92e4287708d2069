"""Bio workload suite: embedded engine vs process engine vs lua5.4 direct.

Run from the repository root:

    PYTHONPATH=python python3 bench/bench_suite.py [--quick]

1. Bio workloads in plain Lua 5.1-compatible code, each returning an integer
   checksum, run on: the embedded engine (create_vm), the process engine with
   lua5.4 and with luajit, and lua5.4 directly (`lua5.4 -e code`, one process
   per workload). Every engine must return the same checksum (MISMATCH -> exit 1).
   Times: wall clock around execute_string (VM creation excluded); for lua5.4
   direct both the wall clock around subprocess.run (includes process start and
   parsing) and the in-Lua os.clock() time of the kernel. Ratios are against
   the in-Lua lua5.4 time (the strictest baseline).
2. Memory per live embedded VM and creation time, in a fresh process.
3. Throughput of 2 Python threads on 2 embedded VMs vs 1 thread on 1 VM, in
   paired rounds against the same measure of two lua5.4 processes.

Targets (from the issue): whole suite embedded <= 5x lua5.4 (ambition 1.5x);
no builtin-heavy workload > 2x; process engine on luajit >= 3x faster than
lua5.4; 10,000 live embedded VMs <= 1 GB RSS; 2 threads >= 1.8x.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from pylua_bioxen_vm_lib import create_vm

TIMEOUT = 120.0

# --------------------------------------------------------------------------
# Lua workloads. Every chunk defines `local function run() ... end` returning
# an integer checksum. All arithmetic stays below 2^53 so Lua 5.1 doubles and
# Lua 5.4 integers agree. `gen_seq` is shared: a 4096-base block made with a
# Park-Miller LCG, then n bases assembled from 64-base slices of that block
# picked by the same LCG.
# --------------------------------------------------------------------------

PRELUDE = r"""
local floor = math.floor
local byte, sub, char = string.byte, string.sub, string.char
local concat = table.concat
local MOD = 1000000007
local function lcg(x) return (x * 16807) % 2147483647 end
local function gen_seq(n, seed)
  local x = seed
  local bases = {"A", "C", "G", "T"}
  local blk = {}
  for i = 1, 4096 do
    x = lcg(x)
    blk[i] = bases[floor(x / 65536) % 4 + 1]
  end
  local block = concat(blk)
  local parts = {}
  local np = floor((n + 63) / 64)
  for i = 1, np do
    x = lcg(x)
    local off = x % (4096 - 64)
    parts[i] = sub(block, off + 1, off + 64)
  end
  return sub(concat(parts), 1, n)
end
local function hash_sample(s, stride)
  local h = #s
  for i = 1, #s, stride do
    h = (h * 31 + byte(s, i)) % MOD
  end
  return h
end
"""

W_GC = r"""
local function run()
  local s = gen_seq(@N@, 12345)
  local a, c, g, t = 0, 0, 0, 0
  for i = 1, #s do
    local b = byte(s, i)
    if b == 65 then a = a + 1
    elseif b == 67 then c = c + 1
    elseif b == 71 then g = g + 1
    else t = t + 1 end
  end
  -- GC per mille, then the counts
  local gcpm = floor((g + c) * 1000 / #s)
  return ((((gcpm * 1000003 + a) % MOD) * 31 + c) % MOD * 31 + g) % MOD * 31 + t
end
"""

W_REVCOMP = r"""
local function run()
  local s = gen_seq(@N@, 777)
  local comp = {A = "T", C = "G", G = "C", T = "A"}
  local h = 0
  for rep = 1, 3 do
    local rc = string.gsub(string.reverse(s), ".", comp)
    h = (h * 31 + hash_sample(rc, 97)) % MOD
    s = rc
  end
  return h
end
"""

W_SIXFRAME = r"""
local function run()
  local s = gen_seq(@N@, 4242)
  local bases = "TCAG"
  local aas = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
  local code = {}
  local k = 0
  for i = 1, 4 do for j = 1, 4 do for l = 1, 4 do
    k = k + 1
    code[sub(bases, i, i) .. sub(bases, j, j) .. sub(bases, l, l)] = sub(aas, k, k)
  end end end
  local comp = {A = "T", C = "G", G = "C", T = "A"}
  local rc = string.gsub(string.reverse(s), ".", comp)
  local h, stops = 0, 0
  local strands = {s, rc}
  for si = 1, 2 do
    local seq = strands[si]
    local n = #seq
    for frame = 0, 2 do
      local prot = {}
      local m = 0
      for i = 1 + frame, n - 2, 3 do
        local aa = code[sub(seq, i, i + 2)]
        m = m + 1
        prot[m] = aa
        if aa == "*" then stops = stops + 1 end
      end
      local p = concat(prot)
      h = (h * 31 + hash_sample(p, 13)) % MOD
    end
  end
  return (h * 1000 + stops) % MOD
end
"""

W_KMER = r"""
local function run()
  local s = gen_seq(@N@, 999)
  local k = 6
  local counts = {}
  for i = 1, #s - k + 1 do
    local w = sub(s, i, i + k - 1)
    counts[w] = (counts[w] or 0) + 1
  end
  local distinct, sumsq, maxc = 0, 0, 0
  for _, v in pairs(counts) do
    distinct = distinct + 1
    sumsq = (sumsq + v * v) % MOD
    if v > maxc then maxc = v end
  end
  return ((distinct * 1000003 + sumsq) % MOD * 1009 + maxc) % MOD
end
"""

W_SW = r"""
local function sw(a, b)
  local n, m = #a, #b
  local match, mismatch, gap = 2, -1, -2
  local prev, cur = {}, {}
  for j = 0, m do prev[j] = 0 end
  local best = 0
  local bb = {}
  for j = 1, m do bb[j] = byte(b, j) end
  for i = 1, n do
    local ai = byte(a, i)
    cur[0] = 0
    for j = 1, m do
      local d = prev[j - 1] + ((ai == bb[j]) and match or mismatch)
      local u = prev[j] + gap
      local l = cur[j - 1] + gap
      local v = d
      if u > v then v = u end
      if l > v then v = l end
      if v < 0 then v = 0 end
      cur[j] = v
      if v > best then best = v end
    end
    local tmp = prev
    prev = cur
    cur = tmp
  end
  return best
end
local function run()
  local h = 0
  for p = 1, @N@ do
    local a = gen_seq(300, 1000 + p)
    local b = gen_seq(300, 5000 + p)
    h = (h * 31 + sw(a, b)) % MOD
  end
  return h
end
"""

W_FIB = r"""
local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end
local function run()
  return fib(@N@)
end
"""

W_CONCAT = r"""
local function run()
  local parts = {}
  local n = @N@
  for i = 1, n do
    parts[i] = tostring(i % 1000) .. ","
  end
  local s = concat(parts)
  local s2 = concat(parts, ";", 1, floor(n / 2))
  return ((#s * 1000003 + #s2) % MOD * 31 + hash_sample(s, 101)) % MOD
end
"""

W_PATTERNS = r"""
local function run()
  local s = gen_seq(@N@, 31337)
  local h = 0
  local n1 = 0
  for run_ in string.gmatch(s, "[GC][GC][GC]+") do n1 = n1 + #run_ end
  local n2 = 0
  for orf in string.gmatch(s, "ATG[ACGT]-TA[AG]") do n2 = n2 + 1 end
  local n3 = 0
  for p in string.gmatch(s, "()TATA") do n3 = (n3 + p) % MOD end
  local r, n4 = string.gsub(s, "GAATTC", "gaattc")
  local _, n5 = string.gsub(r, "%l+", "")
  local r2, n6 = string.gsub(s, "(A+)(T+)", "%2%1")
  local i, n7 = 1, 0
  while true do
    local a, b = string.find(s, "CG", i, true)
    if not a then break end
    n7 = n7 + 1
    i = b + 1
  end
  h = n1
  local xs = {n2, n3, n4, n5, n6, n7, hash_sample(r2, 53)}
  for j = 1, #xs do h = (h * 31 + xs[j]) % MOD end
  return h
end
"""

# (name, template, full size, quick size, builtin_heavy)
# In the name, {n} is replaced by the size used.
WORKLOADS: List[Tuple[str, str, int, int, bool]] = [
    ("gc_content {n}B", W_GC, 2_000_000, 200_000, False),
    ("revcomp {n}B x3", W_REVCOMP, 1_000_000, 200_000, True),
    ("sixframe {n}B", W_SIXFRAME, 500_000, 100_000, False),
    ("kmer6 {n}B", W_KMER, 1_000_000, 200_000, False),
    ("smith_waterman 300x300x{n}", W_SW, 10, 2, False),
    ("fib({n}) recursive", W_FIB, 30, 25, False),
    ("concat {n} pieces", W_CONCAT, 400_000, 400_000, True),
    ("gsub/gmatch {n}B", W_PATTERNS, 400_000, 400_000, True),
]


def short(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def workloads(quick: bool) -> List[Tuple[str, str, int, bool]]:
    out = []
    for name, tmpl, full_n, quick_n, bh in WORKLOADS:
        n = quick_n if quick else full_n
        out.append((name.replace("{n}", short(n)), tmpl, n, bh))
    return out


VM_TAIL = "\nlocal t0 = os.clock()\nlocal cs = run()\nreturn cs, os.clock() - t0\n"
DIRECT_TAIL = (
    '\nlocal t0 = os.clock()\nlocal cs = run()\nlocal dt = os.clock() - t0\nprint(string.format("%.0f %.6f", cs, dt))\n'
)


def build(template: str, size: int) -> str:
    return PRELUDE + template.replace("@N@", str(size))


def norm(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            f = float(v)
            return int(f) if f.is_integer() else v
        except ValueError:
            return v
    return v


# --------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------


class Result:
    def __init__(
        self,
        wall: Optional[float] = None,
        inner: Optional[float] = None,
        checksum: Any = None,
        error: Optional[str] = None,
    ):
        self.wall, self.inner, self.checksum, self.error = wall, inner, checksum, error


class VMEngine:
    def __init__(self, name: str, **kw: Any):
        self.name = name
        self.kw = kw
        self.vm = None
        self.skip: Optional[str] = None
        exe = kw.get("lua_executable")
        if exe and shutil.which(exe) is None:
            self.skip = f"{exe} not installed"
            return
        try:
            self.vm = create_vm(f"bench_suite_{name.replace(' ', '_')}", **kw)
            r = self.vm.execute_string("return 1", timeout=30)
            if not r["success"]:
                self.skip = f"warm-up failed: {r['error']}"
        except Exception as e:  # noqa: BLE001
            self.skip = f"create failed: {e!r}"

    def run(self, code: str) -> Result:
        t0 = time.perf_counter()
        try:
            r = self.vm.execute_string(code + VM_TAIL, timeout=TIMEOUT)
        except Exception as e:  # noqa: BLE001
            return Result(error=f"exception: {e!r}"[:300])
        wall = time.perf_counter() - t0
        if not r["success"]:
            return Result(wall=wall, error=str(r.get("error") or r.get("stderr"))[:300])
        vals = r.get("values") or []
        if len(vals) < 2:
            return Result(wall=wall, error=f"unexpected values {vals!r} stdout={r.get('stdout')!r}"[:300])
        return Result(wall=wall, inner=float(vals[1]), checksum=norm(vals[0]))

    def close(self) -> None:
        if self.vm is not None:
            with contextlib.suppress(Exception):
                self.vm.close()


class DirectEngine:
    def __init__(self, exe: str):
        self.name = f"{exe} direct"
        self.exe = exe
        self.skip = None if shutil.which(exe) else f"{exe} not installed"

    def run(self, code: str) -> Result:
        t0 = time.perf_counter()
        try:
            p = subprocess.run([self.exe, "-e", code + DIRECT_TAIL], capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return Result(error=f"timeout after {TIMEOUT}s")
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            return Result(wall=wall, error=(p.stderr or p.stdout).strip()[:300])
        try:
            cs, dt = p.stdout.strip().splitlines()[-1].split()
            return Result(wall=wall, inner=float(dt), checksum=norm(cs))
        except Exception:  # noqa: BLE001
            return Result(wall=wall, error=f"unparsable output {p.stdout!r}"[:300])

    def close(self) -> None:
        pass


def startup_cost(exe: str, n: int = 20) -> Optional[float]:
    if shutil.which(exe) is None:
        return None
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([exe, "-e", ""], capture_output=True, timeout=30)
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def fmt_t(x: Optional[float]) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f}ms" if x >= 0.1 else f"{x * 1000:.1f}ms"


def fmt_r(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}x"


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run_workloads(quick: bool, reps: int) -> Tuple[bool, List[str]]:
    engines: List[Any] = [
        VMEngine("embedded"),
        VMEngine("proc lua5.4", lua_executable="lua5.4"),
        VMEngine("proc luajit", lua_executable="luajit"),
        DirectEngine("lua5.4"),
        DirectEngine("luajit"),
    ]
    for e in engines:
        if e.skip:
            print(f"  SKIP engine {e.name}: {e.skip}")
    active = [e for e in engines if not e.skip]
    problems: List[str] = []
    mismatch = False
    # results[workload][engine] = best Result
    results: Dict[str, Dict[str, Result]] = {}
    wl = workloads(quick)
    for name, tmpl, size, _bh in wl:
        code = build(tmpl, size)
        results[name] = {}
        for e in active:
            best: Optional[Result] = None
            for _ in range(reps):
                r = e.run(code)
                if r.error:
                    best = r
                    break
                if best is None or r.wall < best.wall:
                    best = r
            results[name][e.name] = best
            if best.error:
                problems.append(f"{name} on {e.name}: {best.error}")
        sums = {en: r.checksum for en, r in results[name].items() if not r.error}
        if len(set(map(repr, sums.values()))) > 1:
            mismatch = True
            print(f"\n!!!!! MISMATCH in {name}: {sums} !!!!!\n")
        line = "  ".join(f"{en}={fmt_t(r.wall) if not r.error else 'FAIL'}" for en, r in results[name].items())
        print(f"  {name:<28} checksum={next(iter(sums.values()), '?')}  {line}", flush=True)

    base_name = "lua5.4 direct"
    cols = [e.name for e in active]
    print()
    print(
        f"Times: wall clock around execute_string / subprocess (best of {reps}); "
        "'lua5.4 direct wall' includes process start + parse,\n"
        "'lua5.4 in-Lua' is os.clock() around the kernel inside lua5.4. "
        "Ratios are vs lua5.4 in-Lua (lower is better)."
    )
    hdr = f"{'workload':<28}{'bh':>3}"
    for c in cols:
        hdr += f"{c + (' wall' if c == base_name else ''):>20}"
    hdr += f"{'lua5.4 in-Lua':>15}"
    for c in cols:
        if c != base_name:
            hdr += f"{'ratio ' + c:>20}"
    print(hdr)
    print("-" * len(hdr))
    totals: Dict[str, float] = {c: 0.0 for c in cols}
    total_inner = 0.0
    complete = {c: True for c in cols}
    bh_worst: Tuple[float, str] = (0.0, "")
    bh_all_ok = True
    for name, _t, _n, bh in wl:
        row = results[name]
        base = row.get(base_name)
        base_t = base.inner if base and not base.error else None
        line = f"{name:<28}{'*' if bh else '':>3}"
        for c in cols:
            r = row.get(c)
            line += f"{('FAIL' if r.error else fmt_t(r.wall)):>20}"
            if r.error:
                complete[c] = False
            else:
                totals[c] += r.wall
        line += f"{fmt_t(base_t):>15}"
        if base_t:
            total_inner += base_t
        for c in cols:
            if c == base_name:
                continue
            r = row.get(c)
            ratio = (r.wall / base_t) if (base_t and not r.error) else None
            line += f"{fmt_r(ratio):>20}"
            if c == "embedded" and bh and ratio is not None:
                if ratio > bh_worst[0]:
                    bh_worst = (ratio, name)
                if ratio > 2.0:
                    bh_all_ok = False
        print(line)
    print("-" * len(hdr))
    line = f"{'TOTAL':<31}"
    for c in cols:
        line += f"{fmt_t(totals[c]) + ('' if complete[c] else ' (partial)'):>20}"
    line += f"{fmt_t(total_inner):>15}"
    for c in cols:
        if c != base_name:
            line += f"{fmt_r(totals[c] / total_inner if total_inner else None):>20}"
    print(line)
    print("(bh * = builtin-heavy workload)")
    st = startup_cost("lua5.4")
    if st is not None:
        print(f"lua5.4 process start (lua5.4 -e '', best of 20): {st * 1000:.1f} ms")

    print("\nTargets:")
    if "embedded" in totals and total_inner and complete.get("embedded"):
        r = totals["embedded"] / total_inner
        print(f"  whole suite embedded <= 5x lua5.4:            {r:.2f}x  {met(r <= 5.0)}")
        print(f"  whole suite embedded <= 1.5x (ambition):      {r:.2f}x  {met(r <= 1.5)}")
        # Also against lua5.4 direct wall, for reference
        if complete.get(base_name):
            print(f"  (vs lua5.4 direct wall incl. process start:   {totals['embedded'] / totals[base_name]:.2f}x)")
    else:
        print("  whole suite embedded: n/a (engine skipped or failures)")
    if bh_worst[1]:
        print(
            f"  no builtin-heavy workload > 2x (embedded):    worst {bh_worst[0]:.2f}x ({bh_worst[1]})  "
            f"{met(bh_all_ok)}"
        )
    geo = geomean_ratio(results, "embedded", None)
    if geo is not None:
        print(f"    (geometric mean of the workloads' ratios, for reference: {geo:.2f}x)")
    if "proc luajit" in totals and "proc lua5.4" in totals and complete["proc luajit"] and complete["proc lua5.4"]:
        sp = totals["proc lua5.4"] / totals["proc luajit"]
        sp2 = total_inner / totals["proc luajit"] if total_inner else 0
        print(
            f"  process engine luajit >= 3x faster than lua5.4: {sp:.2f}x vs proc lua5.4, "
            f"{sp2:.2f}x vs lua5.4 in-Lua  {met(min(sp, sp2) >= 3.0)}"
        )
        # What LuaJIT itself gives on these workloads, outside the engine.
        jit = [results[n].get("luajit direct") for n in results]
        if total_inner and all(r is not None and not r.error and r.inner for r in jit):
            jit_inner = sum(r.inner for r in jit if r is not None and r.inner)
            print(
                f"    (luajit itself, in-Lua os.clock, no engine: {total_inner / jit_inner:.2f}x faster than lua5.4; "
                "the engine's driver adds a compiled string.gsub for one-character patterns, see docs/engines.md)"
            )
        geo = geomean_ratio(results, "proc lua5.4", "proc luajit")
        if geo is not None:
            print(
                f"    (geometric mean of the workloads' speed-ups, for reference: {geo:.2f}x; "
                "the target is judged on total time)"
            )
    else:
        print("  process engine luajit vs lua5.4: n/a (engine skipped or failures)")

    for e in engines:
        if not e.skip:
            e.close()
    return mismatch, problems


def geomean_ratio(results: Dict[str, Dict[str, Any]], num: str, den: Optional[str]) -> Optional[float]:
    """The geometric mean over the workloads of num's time / den's time
    (den None: lua5.4's in-Lua time), the usual summary of per-workload
    ratios; None if a workload lacks either time."""
    logs = []
    for row in results.values():
        a = row.get(num)
        if den is None:
            base = row.get("lua5.4 direct")
            b = base.inner if base is not None and not base.error else None
        else:
            d = row.get(den)
            b = d.wall if d is not None and not d.error else None
        if a is None or a.error or not b or not a.wall:
            return None
        logs.append(math.log(a.wall / b))
    return math.exp(sum(logs) / len(logs)) if logs else None


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_test(n: int) -> None:
    """Runs in a fresh interpreter: after the workloads the Go heap is large
    and shrinks while VMs are being made, which gave a negative cost per VM."""
    print(f"\n== Memory and creation: {n} live embedded VMs (fresh process) ==", flush=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", str(n), "--timeout", str(TIMEOUT)]
    r = subprocess.run(cmd, timeout=TIMEOUT + n * 0.01)
    if r.returncode != 0:
        print(f"  memory test failed: exit status {r.returncode}")


def memory_child(n: int) -> None:
    # Load the library and its runtime first, so the baseline holds them.
    warm = create_vm("mem_warm")
    warm.execute_string("return 1", timeout=TIMEOUT)
    gc.collect()
    before = rss_bytes()
    vms = []
    t_create = 0.0
    ok = True
    try:
        for i in range(n):
            t0 = time.perf_counter()
            vm = create_vm(f"mem_{i}")
            t_create += time.perf_counter() - t0
            vms.append(vm)
            r = vm.execute_string("return 1", timeout=TIMEOUT)
            if not r["success"]:
                ok = False
                print(f"  VM {i}: return 1 failed: {r['error']}")
                break
        after = rss_bytes()
        live = len(vms)
        per = (after - before) / max(live, 1)
        print(f"  RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB ({live} live VMs)")
        print(f"  bytes per live VM: {per:,.0f}  ({per / 1024:.1f} KiB)")
        print(f"  creation: {t_create / max(live, 1) * 1e6:.1f} us per create_vm")
        proj = per * 10000
        print(f"  target 10,000 live VMs <= 1 GB RSS: projected {proj / 1e9:.3f} GB  {met(ok and proj <= 1e9)}")
    finally:
        t0 = time.perf_counter()
        for vm in vms:
            with contextlib.suppress(Exception):
                vm.close()
        print(f"  closed {len(vms)} VMs in {time.perf_counter() - t0:.2f} s")
        vms.clear()
        warm.close()
        gc.collect()


THREAD_CHUNK = "local s = 0 for i = 1, 200000 do s = s + i end return s"


def lua_pair_round(reps: int, one_first: bool) -> float:
    """One paired round of the machine's own scaling: the throughput of 2
    lua5.4 processes running the thread test's loop `reps` times each at once
    vs 1 alone, timed back to back."""
    code = f"for r = 1, {reps} do {THREAD_CHUNK.replace('return s', '')} end"

    def run(procs: int) -> float:
        t0 = time.perf_counter()
        ps = [subprocess.Popen(["lua5.4", "-e", code]) for _ in range(procs)]
        for pr in ps:
            pr.wait(timeout=TIMEOUT)
        return time.perf_counter() - t0

    if one_first:
        one = run(1)
        two = run(2)
    else:
        two = run(2)
        one = run(1)
    return 2 * one / two


def lua_reps(seconds: float) -> int:
    """How many runs of the thread test's loop take lua5.4 about `seconds`."""
    reps = 10
    while True:
        code = f"for r = 1, {reps} do {THREAD_CHUNK.replace('return s', '')} end"
        t0 = time.perf_counter()
        subprocess.run(["lua5.4", "-e", code], check=True, timeout=TIMEOUT)
        t = time.perf_counter() - t0
        if t >= seconds / 4:
            return max(1, int(reps * seconds / t))
        reps *= 4


def quartiles(xs: List[float]) -> Tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def thread_test(calls: int, rounds: int) -> None:
    print(
        f"\n== Threads: 1 thread/1 VM vs 2 threads/2 VMs, {calls} calls of a 1..200000 sum loop "
        f"per measure, {rounds} paired rounds =="
    )
    expect = 200000 * 200001 // 2
    errors: List[str] = []

    def worker(vm: Any, k: int) -> None:
        for _ in range(k):
            r = vm.execute_string(THREAD_CHUNK, timeout=TIMEOUT)
            if not r["success"] or norm(r["values"][0]) != expect:
                errors.append(f"bad result {r['error'] or r['values']}")
                return

    # Two worker threads live for the whole test, one per VM, and run the
    # calls of both measures: a thread made per measure (as here until
    # session 16) paid for its start and its first call into the library
    # (~1 ms, a new OS thread entering Go) inside a 35 ms measure, which
    # took 0.15 off the median ratio; an application's threads outlive
    # their first call.
    class Worker(threading.Thread):
        def __init__(self, vm: Any) -> None:
            super().__init__(daemon=True)
            self.vm, self.k = vm, 0
            self.go, self.done = threading.Semaphore(0), threading.Semaphore(0)

        def run(self) -> None:
            while True:
                self.go.acquire()
                if self.k < 0:
                    return
                try:
                    worker(self.vm, self.k)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"exception: {e!r}"[:300])
                finally:
                    self.done.release()

    def measure(ws: List[Worker], k: int) -> float:
        t0 = time.perf_counter()
        for w in ws:
            w.k = k
            w.go.release()
        for w in ws:
            w.done.acquire()
        return time.perf_counter() - t0

    def one(ws: List[Worker]) -> float:
        return measure(ws[:1], calls)

    def two(ws: List[Worker]) -> float:
        return measure(ws, calls // 2)

    # This machine's speed drifts by up to 2x over seconds (the same lua5.4
    # loop takes 7 ms, then 13 ms): each round times both measures back to
    # back, first one then the other in turn, and the median of the rounds'
    # ratios is kept. The machine's own scaling, two lua5.4 processes vs
    # one, is measured the same way, one lua5.4 round after each engine round.
    sp: List[float] = []
    base: List[float] = []
    have_lua = shutil.which("lua5.4") is not None
    vms = [create_vm("thr_a"), create_vm("thr_b")]
    ws = [Worker(vm) for vm in vms]
    for w in ws:
        w.start()
    try:
        measure(ws, 3)
        reps = lua_reps(0.2) if have_lua else 0
        for i in range(rounds):
            if i % 2 == 0:
                t1 = one(ws)
                t2 = two(ws)
            else:
                t2 = two(ws)
                t1 = one(ws)
            sp.append(t1 / t2)
            if have_lua:
                base.append(lua_pair_round(reps, i % 2 == 0))
    finally:
        for w in ws:
            w.k = -1
            w.go.release()
            w.join(TIMEOUT)
        for vm in vms:
            vm.close()
    if errors:
        print(f"  ERRORS: {errors[:3]}")
    lo, med, hi = quartiles(sp)
    ok = med >= 1.8 and not errors
    print(
        f"  speed-up: median {med:.2f}x (quartiles {lo:.2f}-{hi:.2f}, range {min(sp):.2f}-{max(sp):.2f}; "
        f"cores: {os.cpu_count()})  target >= 1.8x  {met(ok)}"
    )
    if base:
        blo, bmed, bhi = quartiles(base)
        print(
            f"  baseline: 2 lua5.4 processes vs 1 on this machine: median {bmed:.2f}x "
            f"(quartiles {blo:.2f}-{bhi:.2f}); the engine reaches {med / bmed:.0%} of the machine's own scaling"
        )
        if bmed < 1.8:
            print("  (the machine itself scales two independent processes below 1.8x: the target cannot be met here)")


def main() -> None:
    global TIMEOUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, ~1 minute")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per workload/engine (best kept)")
    ap.add_argument("--vms", type=int, default=None, help="live VMs for the memory test")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="per-call timeout in seconds")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: workloads,memory,threads")
    args = ap.parse_args()
    TIMEOUT = args.timeout
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    reps = args.reps or (1 if args.quick else 3)
    # The target is about 10,000 VMs: fewer project badly (the collector lets
    # a small heap grow by 64 MiB of garbage first).
    n_vms = args.vms or 10000
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.perf_counter()
    mismatch = False
    problems: List[str] = []
    print(
        f"bench_suite ({'quick' if args.quick else 'full'} mode), python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cpus"
    )
    if "workloads" not in skip:
        print("\n== Workloads ==")
        mismatch, problems = run_workloads(args.quick, reps)
    if "threads" not in skip:
        thread_test(10 if args.quick else 20, 8 if args.quick else 20)
    if "memory" not in skip:
        memory_test(n_vms)
    if problems:
        print("\nFailures:")
        for p in problems:
            print(f"  {p}")
    print(f"\nTotal run time {time.perf_counter() - t_start:.1f} s")
    if mismatch:
        print("\n!!!!! MISMATCH: engines disagree on at least one checksum (see above) !!!!!")
        sys.exit(1)


if __name__ == "__main__":
    main()
