"""Builds libbioxen.so from the Go sources one directory up and ships it in
the wheel, so `pip install ./python` gives a working package. Needs Go."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class BuildWithGo(build_py):
    def run(self) -> None:
        super().run()
        if not (ROOT / "capi").is_dir():
            raise RuntimeError(f"the Go sources (capi/) were not found next to {HERE}; build from a checkout")
        go = shutil.which("go")
        if go is None:
            raise RuntimeError("building pylua_bioxen_vm_lib needs Go (https://go.dev) on PATH")
        target = Path(self.build_lib) / "pylua_bioxen_vm_lib" / "libbioxen.so"
        target.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, CGO_ENABLED="1")
        subprocess.run(
            [go, "build", "-trimpath", "-buildmode=c-shared", "-o", str(target), "./capi"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        header = target.with_suffix(".h")
        if header.exists():
            header.unlink()
        # The catalogs and the local rocks repository built from lua/.
        catalog = target.parent / "catalog"
        shutil.rmtree(catalog, ignore_errors=True)
        shutil.copytree(ROOT / "lua" / "catalog", catalog)
        if shutil.which("luarocks"):
            rocks = target.parent / "rocks"
            shutil.rmtree(rocks, ignore_errors=True)
            subprocess.run(["bash", str(ROOT / "lua" / "build_repo.sh"), str(rocks)], cwd=ROOT, check=True)


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildWithGo}, distclass=BinaryDistribution)
