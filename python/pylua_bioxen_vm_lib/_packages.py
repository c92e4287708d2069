"""Private: the bridge to the core's package manager (bioxen_packages).

Where things live:

* environments: ``$PYLUA_BIOXEN_HOME/envs/<name>`` (default home
  ``$XDG_DATA_HOME/pylua_bioxen_vm_lib``, i.e. ``~/.local/share/...``), one
  LuaRocks tree each;
* repositories: ``$PYLUA_BIOXEN_HOME/repos.json``; until it exists, the
  rocks repository shipped inside this package (``rocks/``, built from the
  rockspecs in the source tree) is the only one, so everything works offline;
* catalogs: ``catalog/*.json`` shipped inside this package, plus any files
  named by ``PYLUA_BIOXEN_CATALOGS`` (``:``-separated) or passed explicitly.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import _ffi
from . import exceptions as exc

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_REPO = PACKAGE_DIR / "rocks"
SHIPPED_CATALOGS = PACKAGE_DIR / "catalog"
DEFAULT_ENV = "default"


def home() -> Path:
    explicit = os.environ.get("PYLUA_BIOXEN_HOME")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pylua_bioxen_vm_lib"


def default_catalogs() -> List[str]:
    files = sorted(str(p) for p in SHIPPED_CATALOGS.glob("*.json")) if SHIPPED_CATALOGS.is_dir() else []
    extra = os.environ.get("PYLUA_BIOXEN_CATALOGS", "")
    files += [f for f in extra.split(":") if f]
    return files


def default_repos() -> List[Dict[str, str]]:
    if (SHIPPED_REPO / "manifest").exists():
        return [{"name": "bioxen-local", "url": SHIPPED_REPO.as_uri()}]
    return []


def call(op: str, catalogs: Optional[Sequence[str]] = None, **fields: Any) -> Any:
    """Run one operation in the core; raises the library's exceptions. An
    ``env`` field is checked first (the core reads "" as "default")."""
    if "env" in fields:
        check_env_name(fields["env"])
    for key, value in fields.items():
        # The core would read a value of another type as a bad request.
        if value is None or key in ("home", "create", "allow_build_commands", "lock"):
            continue
        wanted = int if key == "index" else str
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise exc.ArgumentTypeError(f"{key} must be {wanted.__name__}, not {type(value).__name__}")
    request = {
        "op": op,
        "home": str(fields.pop("home", None) or home()),
        "catalogs": list(catalogs) if catalogs is not None else default_catalogs(),
        "default_repos": default_repos(),
    }
    request.update({k: v for k, v in fields.items() if v is not None})
    try:
        return _ffi.json_call(_ffi.packages, request, f"packages: {op}")
    except exc.LuaFileNotFoundError as err:
        if "environment: no environment" in str(err):
            # The core's ErrFileNotFound for an unknown environment name:
            # the library's own class for that, as create_vm raises.
            raise exc.EnvironmentNotFoundError(str(err), code=err.code) from err
        raise
    except exc.VMConnectionError as err:
        # Local package operations reach no host but the repositories.
        raise exc.RepositoryUnreachableError(str(err), code=err.code) from err
    except exc.LuaProcessError as err:
        if type(err) is not exc.LuaProcessError:
            raise  # a timeout, say: keep its own class
        raise package_error(err) from err


def package_error(err: exc.LuaVMError) -> exc.PackageError:
    """The PackageError for a failed package operation. The core's engine
    error (a plain LuaProcessError) is luarocks failing (a build, a refused
    build type, a broken rock): LuaRocksError, still a LuaProcessError for
    code that caught that. A PackageError stays as it is."""
    if isinstance(err, exc.PackageError):
        return err
    if type(err) is exc.LuaProcessError:
        return exc.LuaRocksError(str(err), code=err.code)
    return exc.PackageError(str(err), code=err.code)


def build_commands_opt_in(allow: bool) -> Optional[bool]:
    """The request field for ``allow_build_commands``: True, or None (the
    core's default, refusing a rockspec's own build steps and hooks)."""
    if not isinstance(allow, bool):
        raise exc.ArgumentTypeError("allow_build_commands must be True or False")
    return True if allow else None


def check_profile(profile: Any) -> str:
    """profile, or ArgumentTypeError unless it is a str (a list made the
    profiles lookup raise a bare TypeError)."""
    if not isinstance(profile, str):
        raise exc.ArgumentTypeError(f"a profile name must be a str, not {type(profile).__name__}")
    return profile


def env_exists(name: str) -> bool:
    return (home() / "envs" / name).is_dir()


def lua_versions_for(engine: str, executable: str) -> List[str]:
    """Which tree parts a VM can load: the embedded engine and 5.1-family
    interpreters use 5.1; lua5.4 uses 5.4 (and pure-Lua modules of 5.1)."""
    if engine == "embedded":
        return ["5.1"]
    name = os.path.basename(executable)
    if not re.search(r"5\.[1-4]|jit", name):
        # "lua", or another name without its version: Debian's
        # /usr/bin/lua is a link (through /etc/alternatives) to the
        # interpreter it runs, lua5.4 say.
        found = shutil.which(executable)
        if found:
            name = os.path.basename(os.path.realpath(found))
    if "5.4" in name:
        return ["5.4", "5.1"]
    if "5.3" in name:
        return ["5.3", "5.1"]
    return ["5.1"]


def env_paths(name: str, engine: str, executable: str) -> Optional[Dict[str, str]]:
    """package.path/cpath templates of an environment for a VM, or None when
    the environment does not exist."""
    if not env_exists(name):
        return None
    versions = lua_versions_for(engine, executable)
    tree = home() / "envs" / name / "tree"
    path = ";".join(f"{tree}/share/lua/{v}/?.lua;{tree}/share/lua/{v}/?/init.lua" for v in versions)
    cpath = f"{tree}/lib/lua/{versions[0]}/?.so" if engine != "embedded" else ""
    return {"path": path, "cpath": cpath}


def check_env_name(name: str) -> str:
    """name, or InvalidArgumentError (a ValueError) as the core would raise
    for it: 1-64 letters, digits, '_', '.', '-', not starting with '_',
    '.' or '-' (so never "..", and no trailing newline)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise exc.InvalidArgumentError(f"invalid environment name {name!r} (letters, digits, '_', '.', '-')")
    return name
