"""PackageManager and RepositoryManager: Lua package operations.

The work is done by the core (Go), shared with C and Go users: it reads the
catalogs and the repositories' LuaRocks manifests, runs the real
``luarocks`` into the environment's tree under a lock, and rolls the tree
back when anything fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from . import _packages
from .env import EnvironmentManager


class RepositoryManager:
    """The ordered list of LuaRocks repositories (first = highest priority):
    file:// directories or http(s) URLs; a plain path means a directory.
    Until one is added, the rocks repository shipped with this package is
    used, so everything works offline. Listings show URLs without their
    credentials (``https://***@host/rocks``); repos.json keeps them."""

    def list_repositories(self) -> List[Dict[str, str]]:
        return _packages.call("repos") or []

    def add_repository(
        self, url: Union[str, Path], name: Optional[str] = None, index: Optional[int] = None
    ) -> List[Dict[str, str]]:
        return _packages.call("add_repo", url=str(url), name=name or "", index=index)

    def remove_repository(self, name_or_url: str) -> List[Dict[str, str]]:
        return _packages.call("remove_repo", name=name_or_url)

    def move_repository(self, name: str, index: int) -> List[Dict[str, str]]:
        return _packages.call("move_repo", name=name, index=index)

    def search(self, query: str) -> List[Dict[str, Any]]:
        return _packages.call("search", query=query)["matches"] or []


class PackageManager:
    """Install, update, remove, list and lock packages of one environment.

    A rockspec's own build steps and hooks (build types ``command``,
    ``make``, ``cmake``) run shell commands as you: they are refused unless
    ``allow_build_commands=True``, which is only for repositories you trust
    (``builtin`` rocks, C modules included, always install)."""

    def __init__(
        self,
        env_name: str = _packages.DEFAULT_ENV,
        catalogs: Optional[List[str]] = None,
        *,
        allow_build_commands: bool = False,
    ) -> None:
        self._build_commands = _packages.build_commands_opt_in(allow_build_commands)
        self.env_name = _packages.check_env_name(env_name)
        self.catalogs = catalogs if catalogs is not None else _packages.default_catalogs()
        self.allow_build_commands = allow_build_commands
        self.repositories = RepositoryManager()
        self.environments = EnvironmentManager()

    def _call(self, op: str, **fields: Any) -> Any:
        return _packages.call(
            op,
            catalogs=self.catalogs,
            env=self.env_name,
            allow_build_commands=self._build_commands,
            **fields,
        )

    def install(self, name: str, version: Optional[str] = None) -> List[Dict[str, str]]:
        """Install a package and its dependencies; returns what is installed."""
        return self._call("install", package=name, version=version)

    def update(self, name: str) -> List[Dict[str, str]]:
        return self._call("update", package=name)

    def remove(self, name: str) -> None:
        self._call("remove", package=name)

    def list_installed(self) -> List[Dict[str, str]]:
        """What is installed; [] while the environment does not exist
        (listing does not create it)."""
        if not _packages.env_exists(self.env_name):
            return []
        return self._call("list", create=False) or []

    def is_installed(self, name: str) -> bool:
        return any(p["name"] == name for p in self.list_installed())

    def search(self, query: str) -> List[Dict[str, Any]]:
        return _packages.call("search", catalogs=self.catalogs, query=query)["matches"] or []

    def install_profile(self, profile: str) -> Dict[str, Any]:
        return self.environments.install_profile_packages(profile, env_name=self.env_name)

    def lock(self, path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
        return self._call("lock", path=str(path) if path else None)

    def install_from_lock(self, path: Union[str, Path]) -> List[Dict[str, str]]:
        return self._call("install_lock", path=str(path))
