"""Shared fixtures: the execution contract runs against every local engine."""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest
from pylua_bioxen_vm_lib import BasicLuaVM, create_vm

# (engine, lua_executable): the embedded engine and the process engine on the
# interpreters CI installs.
ENGINES = [
    pytest.param(("embedded", "lua"), id="embedded"),
    pytest.param(("process", "lua5.4"), id="lua5.4"),
    pytest.param(("process", "luajit"), id="luajit"),
]


def _skip_missing(executable: str) -> None:
    if executable != "lua" and shutil.which(executable) is None:
        pytest.skip(f"{executable} is not installed")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> tuple:
    kind, executable = request.param
    _skip_missing(executable)
    return kind, executable


@pytest.fixture
def vm(engine: tuple) -> Iterator[BasicLuaVM]:
    kind, executable = engine
    machine = create_vm(f"test_{kind}", engine=kind, lua_executable=executable)
    yield machine
    machine.close()


@pytest.fixture
def persistent_vm(engine: tuple) -> Iterator[BasicLuaVM]:
    kind, executable = engine
    machine = create_vm(f"persist_{kind}", engine=kind, lua_executable=executable, persistent=True)
    yield machine
    machine.close()
