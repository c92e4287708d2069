"""Curator: package metadata, recommendations and installs, from catalogs.

Package metadata and profiles come from catalog files (JSON) — the ones
shipped with the library and any given by path — not from hard-coded
dictionaries. Installs go to a package environment (``default`` unless
named) through the core's package manager and the real ``luarocks``; after
``PackageInstaller().install_package("bio_compute")``, any new VM can
``require("bio_compute")``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import _packages
from .. import exceptions as exc

logger = logging.getLogger("pylua_bioxen_vm_lib.curator")

CatalogSource = Union[str, "os.PathLike[str]", Mapping[str, Any], Sequence[Any], None]


@dataclass
class Package:
    """A package as the original's Curator described it."""

    name: str
    version: str = "latest"
    category: str = ""
    description: str = ""
    dependencies: List[str] = field(default_factory=list)
    installed: bool = False
    install_date: Optional[str] = None
    source: str = "catalog"
    priority: int = 0
    tags: List[str] = field(default_factory=list)


def _remove_files(paths: List[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _catalog_files(packages_catalog: CatalogSource, profiles_catalog: CatalogSource) -> Tuple[List[str], List[str]]:
    """Shipped catalogs plus the given ones, and the temporary files among
    them: paths (str or os.PathLike) are used as they are; dicts/lists (the
    original's injected catalogs) are written to a temporary JSON file,
    which the caller removes when done. Data that is no catalog is
    ArgumentTypeError, and leaves no temporary file."""
    files = _packages.default_catalogs()
    temporary: List[str] = []
    try:
        for key, source in (("packages", packages_catalog), ("profiles", profiles_catalog)):
            if source is None:
                continue
            if isinstance(source, (str, os.PathLike)):
                files.append(os.fsdecode(source))
                continue
            text = _catalog_json(key, source)
            with tempfile.NamedTemporaryFile("w", suffix=f"-{key}.json", delete=False, prefix="bioxen-catalog-") as tmp:
                temporary.append(tmp.name)
                tmp.write(text)
            files.append(tmp.name)
    except BaseException:
        _remove_files(temporary)
        raise
    return files, temporary


def _catalog_json(key: str, source: Any) -> str:
    """The JSON of an injected catalog (``key`` is "packages" or
    "profiles"), or ArgumentTypeError."""
    if not isinstance(source, (Mapping, list, tuple)):
        raise exc.ArgumentTypeError(f"{key}_catalog must be a path, a dict or a list, not {type(source).__name__}")
    data: Any = source
    if isinstance(source, Mapping) and key == "packages" and "packages" not in source:
        if not all(isinstance(v, Mapping) for v in source.values()):
            raise exc.ArgumentTypeError("packages_catalog: each package's entry must be a dict")
        data = [dict(v, name=v.get("name", k)) for k, v in source.items()]
    if key == "profiles" and not (isinstance(source, Mapping) and "profiles" in source):
        data = {"profiles": source}
    try:
        return json.dumps(data)
    except (TypeError, ValueError) as err:
        raise exc.ArgumentTypeError(f"{key}_catalog is not JSON data: {err}") from err


def _check_name(name: Any) -> None:
    if not isinstance(name, str):
        raise exc.ArgumentTypeError(f"a package name must be a str, not {type(name).__name__}")


class Curator:
    """Catalog-driven package curation for one environment.
    ``allow_build_commands`` as for :class:`PackageManager`."""

    def __init__(
        self,
        lua_path: Optional[str] = None,
        manifest_path: Optional[str] = None,
        packages_catalog: CatalogSource = None,
        profiles_catalog: CatalogSource = None,
        env_name: str = _packages.DEFAULT_ENV,
        *,
        allow_build_commands: bool = False,
    ) -> None:
        self._build_commands = _packages.build_commands_opt_in(allow_build_commands)
        self.allow_build_commands = allow_build_commands
        self.lua_path = lua_path
        self.manifest_path = manifest_path
        self.env_name = _packages.check_env_name(env_name)
        self.catalogs, temporary = _catalog_files(packages_catalog, profiles_catalog)
        if temporary:
            # Written for this Curator's calls; removed with it (or at exit).
            weakref.finalize(self, _remove_files, temporary)

    def _call(self, op: str, **fields: Any) -> Any:
        return _packages.call(
            op, catalogs=self.catalogs, env=self.env_name, allow_build_commands=self._build_commands, **fields
        )

    # -- catalog ---------------------------------------------------------
    def catalog(self) -> Dict[str, Any]:
        return self._call("catalog")

    def get_available_profiles(self) -> List[str]:
        return sorted(self.catalog().get("profiles") or {})

    def get_profile(self, profile: str) -> Dict[str, Any]:
        _packages.check_profile(profile)
        prof = (self.catalog().get("profiles") or {}).get(profile)
        if prof is None:
            raise exc.PackageError(f"unknown profile {profile!r} (known: {', '.join(self.get_available_profiles())})")
        return prof

    def _package(self, name: str, meta: Optional[Mapping[str, Any]], installed: Dict[str, str]) -> Package:
        meta = meta or {}
        versions = meta.get("versions") or []
        return Package(
            name=name,
            version=installed.get(name) or (versions[0] if versions else "latest"),
            category=meta.get("category", ""),
            description=meta.get("summary", ""),
            dependencies=list(meta.get("dependencies") or []),
            installed=name in installed,
            source="catalog" if meta else "repository",
            priority=int(meta.get("priority") or 0),
            tags=list(meta.get("tags") or []),
        )

    def search(self, query: str) -> List[Dict[str, Any]]:
        return self._call("search", query=query)["matches"] or []

    # -- installs --------------------------------------------------------
    def install_package(self, name: str, version: str = "latest", force: bool = False) -> bool:
        """Install a package (and its dependencies) into the environment.
        Returns True; raises PackageError (unknown package with close
        matches, unreachable repository, luarocks failure) otherwise."""
        _check_name(name)
        if not force and version == "latest" and self.is_package_installed(name):
            return True
        return self._package_op("install", package=name, version=None if version == "latest" else version)

    def update_package(self, name: str) -> bool:
        """Update an installed package (and its dependencies) to the newest
        version the repositories have. Returns True; raises PackageError."""
        return self._package_op("update", package=name)

    def remove_package(self, name: str) -> bool:
        return self._package_op("remove", package=name)

    def _package_op(self, op: str, **fields: Any) -> bool:
        """Run a package operation; True, or PackageError for any failure."""
        try:
            self._call(op, **fields)
        except (exc.PackageError, exc.ArgumentTypeError):
            raise
        except exc.LuaVMError as err:
            raise _packages.package_error(err) from err
        return True

    def _installed(self) -> Dict[str, str]:
        if not _packages.env_exists(self.env_name):
            return {}  # listing does not create the environment
        return {p["name"]: p["version"] for p in self._call("list", create=False) or []}

    def is_package_installed(self, name: str) -> bool:
        return name in self._installed()

    def list_installed_packages(self) -> List[Package]:
        installed = self._installed()
        catalog = self.catalog().get("packages") or {}
        return [self._package(n, catalog.get(n), installed) for n in sorted(installed)]

    def curate_environment(self, profile: str = "bioxen-minimal") -> bool:
        """Install every package of a profile; True when all succeeded."""
        failed = []
        for name in self.get_profile(profile).get("packages") or []:
            try:
                self.install_package(name)
            except exc.PackageError as err:
                logger.warning("profile %s: %s not installed: %s", profile, name, err)
                failed.append(name)
        return not failed

    def get_recommendations(self, profile: Optional[str] = None) -> List[Package]:
        """Packages of the profile (default: every catalog package, highest
        priority first) that are not installed yet."""
        installed = self._installed()
        catalog = self.catalog()
        packages = catalog.get("packages") or {}
        names = self.get_profile(profile)["packages"] if profile else list(packages)
        recs = [self._package(n, packages.get(n), installed) for n in names if n not in installed]
        return sorted(recs, key=lambda p: (-p.priority, p.name))

    def health_check(self) -> Dict[str, Any]:
        """The original's health dict, from the core. An environment other
        than "default" that does not exist is EnvironmentNotFoundError (it
        is not created)."""
        health = self._call("health", create=self.env_name == _packages.DEFAULT_ENV)
        catalog = self.catalog()
        profiles = catalog.get("profiles") or {}
        critical = [n for p in profiles.get("bioxen-minimal", {}).get("packages", []) for n in [p]]
        installed = self._installed()
        ratio = (sum(1 for n in critical if n in installed) / len(critical)) if critical else 1.0
        return {
            "luarocks_available": health["luarocks_available"],
            "lua_version": health["lua_versions"],
            "installed_packages": health["installed_packages"],
            "manifest_valid": health["repositories_reached"] == health["repositories"],
            "catalog_size": health["catalog_size"],
            "available_profiles": sorted(profiles),
            "timestamp": time.time(),
            "critical_packages_ratio": ratio,
            "environment": health["environment"],
            "tree": health["tree"],
        }

    def get_lua_env(self) -> Dict[str, str]:
        """``LUA_PATH``/``LUA_CPATH`` of the environment, for an external
        interpreter. An environment other than "default" that does not
        exist is EnvironmentNotFoundError (it is not created)."""
        paths = self._call("paths", lua_version="5.1", create=self.env_name == _packages.DEFAULT_ENV)
        return {"LUA_PATH": paths["path"] + ";;", "LUA_CPATH": paths["cpath"] + ";;"}


_curators: Dict[str, Curator] = {}
_curators_lock = threading.Lock()


def get_curator(env_name: str = _packages.DEFAULT_ENV, **kwargs: Any) -> Curator:
    """A Curator for the environment (shared unless catalogs are given)."""
    _packages.check_env_name(env_name)  # before the lookup: a list is unhashable
    if kwargs:
        return Curator(env_name=env_name, **kwargs)
    with _curators_lock:  # one Curator per environment, also across threads
        if env_name not in _curators:
            _curators[env_name] = Curator(env_name=env_name)
        return _curators[env_name]


class PackageInstaller:
    """Installs packages into an environment (``default`` unless named)."""

    def __init__(
        self,
        env_name: str = _packages.DEFAULT_ENV,
        curator: Optional[Curator] = None,
        *,
        allow_build_commands: bool = False,
    ) -> None:
        """``allow_build_commands`` as for :class:`PackageManager` (for the
        curator made here; a given ``curator`` keeps its own)."""
        self.curator = curator or Curator(env_name=env_name, allow_build_commands=allow_build_commands)
        self.env_name = self.curator.env_name

    def install_package(self, package_name: str, version: Optional[str] = None) -> Dict[str, Any]:
        """Install a package; returns the original's result dict
        ``{success, package, version, installed_version, dependencies,
        error}``. Failures raise PackageError (with close matches for an
        unknown name)."""
        _check_name(package_name)
        meta = self._catalog_entry(package_name)
        before = self.curator._installed() if meta is None else {}  # only to find what came with it
        self.curator.install_package(package_name, version or "latest", force=version is not None)
        return self._result(package_name, version, before, meta)

    def _catalog_entry(self, package_name: str) -> Optional[Dict[str, Any]]:
        return (self.curator.catalog().get("packages") or {}).get(package_name)

    def _result(
        self, package_name: str, version: Optional[str], before: Dict[str, str], meta: Optional[Dict[str, Any]]
    ) -> Dict[str, Any]:
        """The result dict; ``dependencies`` are the package's own (from the
        catalog entry meta; for a package it does not describe, what came
        with it: what is installed now and was not before)."""
        installed = self.curator._installed()
        if meta is not None:
            names = (str(d).split()[0] for d in meta.get("dependencies") or [] if str(d).strip())
            deps = [n for n in names if n != "lua"]
        else:
            deps = sorted(n for n in installed if n not in before and n != package_name)
        return {
            "success": True,
            "package": package_name,
            "version": version or "latest",
            "installed_version": installed.get(package_name),
            "dependencies": deps,
            "error": None,
        }

    def install_packages(self, names: Sequence[str]) -> List[Dict[str, Any]]:
        return [self.install_package(n) for n in names]

    def remove_package(self, package_name: str) -> bool:
        return self.curator.remove_package(package_name)

    def update_package(self, package_name: str) -> Dict[str, Any]:
        """Update a package to the newest version the repositories have
        (installing it when missing); the result dict of install_package."""
        _check_name(package_name)
        before = self.curator._installed()
        if package_name in before:
            self.curator.update_package(package_name)
        else:
            self.curator.install_package(package_name)
        return self._result(package_name, None, before, self._catalog_entry(package_name))

    def list_installed(self) -> List[Package]:
        return self.curator.list_installed_packages()


def search_packages(query: str, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """Search the catalogs and the repositories' manifests, best first:
    ``[{name, summary, score, source, version, tags}]``; the first
    ``limit`` of them (0 or more) when given."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise exc.ArgumentTypeError(f"limit must be an int or None, not {type(limit).__name__}")
    if limit is not None and limit < 0:
        raise exc.InvalidArgumentError(f"limit must be 0 or more, not {limit}")
    matches = _packages.call("search", query=query)["matches"] or []
    return matches[:limit] if limit is not None else matches


def bootstrap_lua_environment(env_name: str = _packages.DEFAULT_ENV, profile: str = "bioxen-minimal") -> Dict[str, Any]:
    """Create an environment and install a profile into it."""
    from ..env import EnvironmentManager

    manager = EnvironmentManager(profile=profile)
    manager.create_environment(env_name)
    return manager.install_profile_packages(profile, env_name=env_name)


def quick_install(*names: str, env_name: str = _packages.DEFAULT_ENV) -> Dict[str, bool]:
    """Install packages by name; ``{name: True/False}``."""
    installer = PackageInstaller(env_name)
    out = {}
    for name in names:
        try:
            installer.install_package(name)
            out[name] = True
        except exc.PackageError as err:
            logger.warning("quick_install: %s: %s", name, err)
            out[name] = False
    return out
