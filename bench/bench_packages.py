"""Offline install of seq_utils (and its dependency bio_compute) into a fresh
environment, beside a plain `luarocks install --tree` of the same rocks from
the same local repository, in the same run.

The library's install does more than the plain one: it checks the package
exists (manifests), backs the tree up for an atomic change, takes a file
lock, and installs for every Lua version present (5.1 and 5.4 here).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time

from pylua_bioxen_vm_lib import _packages
from pylua_bioxen_vm_lib.package_manager import PackageManager

RUNS = 5


def main() -> None:
    repo = _packages.SHIPPED_REPO
    if not (repo / "manifest").exists():
        raise SystemExit("build the local rocks repository first (make build)")
    plain, ours = [], []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as tree:
            t = time.perf_counter()
            subprocess.run(
                ["luarocks", "--lua-version=5.1", f"--only-server={repo}", f"--tree={tree}", "install", "seq_utils"],
                check=True,
                capture_output=True,
            )
            plain.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as home:
            os.environ["PYLUA_BIOXEN_HOME"] = home
            t = time.perf_counter()
            installed = PackageManager("bench").install("seq_utils")
            ours.append(time.perf_counter() - t)
            assert {p["name"] for p in installed} >= {"seq_utils", "bio_compute"}
    p, o = statistics.median(plain), statistics.median(ours)
    versions = sorted({v for v in _packages.lua_versions_for("process", "lua5.4")})
    print(f"\noffline install of seq_utils + bio_compute into a fresh tree (median of {RUNS})")
    print(f"plain luarocks install --tree (Lua 5.1 only):        {p * 1e3:7.0f} ms")
    print(f"PackageManager.install (Lua {', '.join(versions)}, atomic): {o * 1e3:7.0f} ms  ({o / p:.1f}x)")


if __name__ == "__main__":
    main()
