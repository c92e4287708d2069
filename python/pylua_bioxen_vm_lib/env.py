"""EnvironmentManager: isolated Lua package environments.

Each environment is one LuaRocks tree (``$PYLUA_BIOXEN_HOME/envs/<name>``)
that the core installs into with the real ``luarocks``; a VM or an
interactive session bound to it gets its package.path/cpath, so ``require``
finds exactly what was installed there. With no environment named, VMs use
the ``default`` environment when it exists.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from . import _packages
from . import exceptions as exc
from .logger import enable_debug

logger = logging.getLogger("pylua_bioxen_vm_lib.env")


def _path_arg(what: str, value: Any) -> str:
    """A path argument as the core's str: ArgumentTypeError unless a str or
    an os.PathLike of str (str() made b"x" the file name "b'x'")."""
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str):
        raise exc.ArgumentTypeError(f"{what} must be a str or os.PathLike, not {type(value).__name__}")
    return path


class EnvironmentManager:
    """Create, inspect, lock and remove package environments.

    ``profile`` is the profile :meth:`install_profile_packages` installs by
    default; ``config_path`` is an extra catalog file (packages/profiles).
    """

    def __init__(
        self,
        profile: str = "bioxen-minimal",
        config_path: Optional[Union[str, Path]] = None,
        debug_mode: bool = False,
    ) -> None:
        self.profile = profile
        extra = [_path_arg("config_path", config_path)] if config_path is not None else []
        self.catalogs = _packages.default_catalogs() + [c for c in extra if c]
        self.debug_mode = debug_mode
        if debug_mode:
            enable_debug(logger)

    def _call(self, op: str, **fields: Any) -> Any:
        return _packages.call(op, catalogs=self.catalogs, **fields)

    @property
    def home(self) -> Path:
        return _packages.home()

    def list_environments(self) -> List[str]:
        return sorted(self._call("envs") or [])

    def create_environment(self, name: str = _packages.DEFAULT_ENV) -> Dict[str, str]:
        _packages.check_env_name(name)
        return self._call("create_env", env=name)

    def remove_environment(self, name: str) -> None:
        _packages.check_env_name(name)
        if name not in self.list_environments():
            raise exc.EnvironmentNotFoundError(f"no package environment {name!r}")
        self._call("remove_env", env=name)

    def get_paths(self, name: str = _packages.DEFAULT_ENV, lua_version: str = "5.1") -> Dict[str, str]:
        """``{"path", "cpath", "tree"}`` of an environment for a Lua version."""
        _packages.check_env_name(name)
        return self._call("paths", env=name, lua_version=lua_version, create=False)

    def get_environment_variables(self, name: str = _packages.DEFAULT_ENV, lua_version: str = "5.1") -> Dict[str, str]:
        """LUA_PATH/LUA_CPATH for running a stand-alone interpreter on the
        environment (";;" keeps the interpreter's defaults)."""
        paths = self.get_paths(name, lua_version)
        suffix = "" if lua_version == "5.1" else "_" + lua_version.replace(".", "_")
        return {f"LUA_PATH{suffix}": paths["path"] + ";;", f"LUA_CPATH{suffix}": paths["cpath"] + ";;"}

    def list_packages(self, name: str = _packages.DEFAULT_ENV) -> List[Dict[str, str]]:
        """The packages installed in an environment; [] for a "default"
        that does not exist yet, EnvironmentNotFoundError for another
        unknown name (nothing is created)."""
        if name == _packages.DEFAULT_ENV and not _packages.env_exists(name):
            return []
        return self._call("list", env=name, create=False) or []

    def install_profile_packages(
        self, profile: Optional[str] = None, env_name: str = _packages.DEFAULT_ENV
    ) -> Dict[str, Any]:
        """Install every package of a profile; returns
        ``{success, profile, environment, installed, failed}``."""
        profile = _packages.check_profile(profile or self.profile)
        _packages.check_env_name(env_name)
        catalog = self._call("catalog")
        prof = (catalog.get("profiles") or {}).get(profile)
        if prof is None:
            known = ", ".join(sorted(catalog.get("profiles") or {}))
            raise exc.PackageError(f"unknown profile {profile!r} (known: {known})")
        installed, failed = [], {}
        for pkg in prof.get("packages") or []:
            try:
                self._call("install", env=env_name, package=pkg)
                installed.append(pkg)
            except exc.LuaVMError as err:
                failed[pkg] = str(err)
                logger.warning("profile %s: %s not installed: %s", profile, pkg, err)
        return {
            "success": not failed,
            "profile": profile,
            "environment": env_name,
            "installed": installed,
            "failed": failed,
        }

    def validate_environment(self, name: str = _packages.DEFAULT_ENV) -> Dict[str, Any]:
        """Health of an environment: luarocks, Lua versions, repositories.
        An unknown name other than "default" raises EnvironmentNotFoundError
        (it is not created)."""
        _packages.check_env_name(name)
        if name != _packages.DEFAULT_ENV and not _packages.env_exists(name):
            raise exc.EnvironmentNotFoundError(f"no package environment {name!r}")
        return self._call("health", env=name, create=name == _packages.DEFAULT_ENV)

    def check_package_availability(self, package: str) -> bool:
        """True when some repository has the package."""
        result = self._call("search", query=package)
        return any(m["name"] == package and m["source"] != "catalog" for m in result["matches"])

    def lock(self, name: str = _packages.DEFAULT_ENV, path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
        """The environment's lock file (every rock, version and sha256);
        written to path when given."""
        target = _path_arg("path", path) if path is not None else ""
        return self._call("lock", env=name, path=target or None)

    def restore(self, name: str, lock_path: Union[str, Path]) -> List[Dict[str, str]]:
        """Reproduce a lock file in an environment (created if needed)."""
        return self._call("install_lock", env=name, path=_path_arg("lock_path", lock_path))
