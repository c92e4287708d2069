"""LuaProcess: the original library's VM class name, kept for existing code."""

from __future__ import annotations

from typing import Optional

from .vm import DEFAULT_LUA_EXECUTABLE, BasicLuaVM


class LuaProcess(BasicLuaVM):
    """``LuaProcess(name="LuaVM", lua_executable="lua", debug_mode=False)``.

    The original ran every call in a new ``lua`` process. This one is a
    :class:`BasicLuaVM`: the embedded engine unless ``lua_executable`` names
    another interpreter (or ``engine="process"``), a clean Lua environment per
    call, and the same result dicts.
    """

    def __init__(
        self,
        name: str = "LuaVM",
        lua_executable: str = DEFAULT_LUA_EXECUTABLE,
        debug_mode: bool = False,
        *,
        engine: Optional[str] = None,
        persistent: bool = False,
    ) -> None:
        super().__init__(
            name, engine=engine, lua_executable=lua_executable, persistent=persistent, debug_mode=debug_mode
        )
