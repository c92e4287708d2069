"""Package management: the spec's examples verbatim, environments, repositories,
lock files and bad input — against the real luarocks and the local rocks
repository built from lua/ (no network)."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from pylua_bioxen_vm_lib import VMManager, create_vm
from pylua_bioxen_vm_lib import exceptions as exc

pytestmark = pytest.mark.skipif(shutil.which("luarocks") is None, reason="luarocks is not installed")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own environments and repository list."""
    monkeypatch.setenv("PYLUA_BIOXEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_spec_package_example():
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller, search_packages

    # Search and install a package
    installer = PackageInstaller()
    packages = search_packages("bio_compute")
    installer.install_package("bio_compute")

    assert packages[0]["name"] == "bio_compute"
    assert installer.curator.is_package_installed("bio_compute")


def test_spec_pattern_4(capsys):
    from pylua_bioxen_vm_lib import VMManager
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    # Install package
    installer = PackageInstaller()
    installer.install_package("bio_compute")

    # Use package in VM
    with VMManager() as manager:
        session = manager.create_interactive_vm("package_vm")

        # Load and use package
        manager.send_input("package_vm", 'require("bio_compute")\nprint(bio_compute.compute(10))')
        time.sleep(0.5)
        print(manager.read_output("package_vm"))

    out = capsys.readouterr().out
    assert "error" not in out.lower()
    assert session is not None
    expected = create_vm("check").execute_string('require("bio_compute") return bio_compute.compute(10)')["stdout"]
    assert expected in out.splitlines()


def test_spec_complete_example(capsys):
    import os
    import time

    from pylua_bioxen_vm_lib import VMLogger, VMManager
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    # Set up logging
    logger = VMLogger(debug_mode=os.getenv("PYLUA_DEBUG", "false").lower() == "true", component="BioApp")

    # Install required package
    installer = PackageInstaller()
    installer.install_package("bio_compute")

    # Use the package in a VM
    with VMManager(debug_mode=True) as manager:
        # Create interactive session
        session = manager.create_interactive_vm("bio_vm")

        # Load package and analyze sequence
        manager.send_input(
            "bio_vm",
            """
        require("bio_compute")
        result = bio_compute.analyze_sequence("ATCG")
        print("Analysis result:", result)
    """,
        )

        # Get results
        time.sleep(0.5)
        print(manager.read_output("bio_vm"))

        # Clean up
        manager.terminate_vm_session("bio_vm")

    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("Analysis result:"))
    assert "table: 0x" not in line
    assert "0.5" in line  # GC content of ATCG
    assert logger is not None and session is not None


@pytest.mark.parametrize(
    "kind, executable",
    [("embedded", "lua"), ("process", "lua5.4"), ("process", "lua5.1"), ("process", "luajit")],
)
def test_installed_package_on_every_engine(kind, executable):
    if executable != "lua" and shutil.which(executable) is None:
        pytest.skip(f"{executable} is not installed")
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    PackageInstaller().install_package("bio_compute")
    vm = create_vm("eng", engine=kind, lua_executable=executable)
    result = vm.execute_string('local bc = require("bio_compute") return bc.analyze_sequence("ATCG").gc_content')
    assert result["success"], result["stderr"]
    assert result["values"] == [0.5]
    vm.close()


def test_two_environments_do_not_see_each_other():
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.package_manager import PackageManager

    PackageManager("lab_a").install("bio_compute")
    EnvironmentManager().create_environment("lab_b")
    in_a = create_vm("a", environment="lab_a").execute_string('return pcall(require, "bio_compute")')
    in_b = create_vm("b", environment="lab_b").execute_string('return (pcall(require, "bio_compute"))')
    assert in_a["values"][0] is True
    assert in_b["values"] == [False]
    with pytest.raises(exc.EnvironmentNotFoundError):
        create_vm("c", environment="nope").execute_string("return 1")


def test_session_set_environment():
    from pylua_bioxen_vm_lib.package_manager import PackageManager

    PackageManager("bioenv").install("bio_compute")
    with VMManager() as manager:
        session = manager.create_interactive_vm("s")
        assert session.execute_interactive('return (pcall(require, "bio_compute"))')["values"] == [False]
        session.set_environment("bioenv")
        assert session.execute_interactive('return require("bio_compute").compute(10)')["success"]
        with pytest.raises(exc.EnvironmentNotFoundError):
            session.set_environment("missing")


def test_dependency_chain_and_lock_round_trip(tmp_path):
    from pylua_bioxen_vm_lib.package_manager import PackageManager

    source = PackageManager("src")
    installed = source.install("seq_utils")
    names = {p["name"] for p in installed}
    assert {"seq_utils", "bio_compute"} <= names
    lock_path = tmp_path / "bioxen.lock"
    lock = source.lock(lock_path)
    assert {p["name"] for p in lock["packages"]} == {"seq_utils", "bio_compute"}
    assert all(len(p["sha256"]) == 64 for p in lock["packages"])
    assert json.loads(lock_path.read_text())["packages"] == lock["packages"]
    copy = PackageManager("copy")
    copy.install_from_lock(lock_path)
    assert {p["name"] for p in copy.list_installed()} == {"seq_utils", "bio_compute"}


def test_unknown_package_names_close_matches():
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    with pytest.raises(exc.PackageError) as info:
        PackageInstaller().install_package("bio_compte")
    assert "bio_compute" in str(info.value)


def test_unreachable_repository_changes_nothing(tmp_path):
    from pylua_bioxen_vm_lib.package_manager import PackageManager, RepositoryManager

    manager = PackageManager()
    manager.install("bio_compute")
    before = manager.list_installed()
    repos = RepositoryManager()
    for repo in repos.list_repositories():
        repos.remove_repository(repo["name"])
    repos.add_repository(tmp_path / "nowhere", name="gone")
    with pytest.raises(exc.RepositoryUnreachableError) as info:
        manager.install("seq_utils")
    assert "reachable" in str(info.value)
    assert isinstance(info.value, exc.PackageError) and isinstance(info.value, exc.VMConnectionError)
    assert not isinstance(info.value, exc.LuaRocksError)  # luarocks never ran
    assert manager.list_installed() == before


def test_repositories_order_and_search(tmp_path):
    from pylua_bioxen_vm_lib.package_manager import RepositoryManager
    from pylua_bioxen_vm_lib.utils.curator import search_packages

    repos = RepositoryManager()
    shipped = repos.list_repositories()
    assert shipped and shipped[0]["url"].startswith("file://")
    repos.add_repository("https://rocks.example.invalid", name="remote", index=0)
    assert [r["name"] for r in repos.list_repositories()][0] == "remote"
    repos.move_repository("remote", 5)
    assert [r["name"] for r in repos.list_repositories()][-1] == "remote"
    with pytest.raises(exc.InvalidArgumentError):
        repos.move_repository("nowhere", 0)
    results = search_packages("sequence")
    assert any(r["name"] == "bio_compute" for r in results)
    with pytest.raises(exc.LuaVMError):
        repos.add_repository("ftp://nope")


def test_repository_listings_show_no_password(isolated_home):
    from pylua_bioxen_vm_lib.package_manager import RepositoryManager

    repos = RepositoryManager()
    listed = repos.add_repository("https://alice:S3cr3t@rocks.example.invalid/r", name="priv", index=0)
    assert listed[0] == {"name": "priv", "url": "https://***@rocks.example.invalid/r"}
    for listing in (repos.list_repositories(), repos.move_repository("priv", 9), repr(repos.list_repositories())):
        assert "S3cr3t" not in str(listing)
    # The credentials are kept for the repository itself (moved by name).
    saved = (isolated_home / "repos.json").read_text()
    assert "alice:S3cr3t@" in saved
    assert repos.list_repositories()[-1]["name"] == "priv"
    repos.remove_repository("https://***@rocks.example.invalid/r")
    assert all(r["name"] != "priv" for r in repos.list_repositories())


def test_repository_moves_and_names_show_no_password(isolated_home):
    # move_repository("https://u:pw@host/...") quoted the password in its
    # error, and a name that is a URL with credentials (the default name
    # once was) showed them in every listing.
    from pylua_bioxen_vm_lib.package_manager import RepositoryManager

    repos = RepositoryManager()
    secret = "https://alice:S3cr3t@rocks.example.invalid/r"
    repos.add_repository(secret, name="priv", index=0)
    with pytest.raises(exc.InvalidArgumentError) as info:
        repos.move_repository("https://bob:Pa55word@rocks.example.invalid/other", 0)
    assert "Pa55word" not in str(info.value)
    listed = repos.move_repository("https://***@rocks.example.invalid/r", 9)
    assert listed[-1]["name"] == "priv"
    listed = repos.add_repository(secret, name=secret)
    assert "S3cr3t" not in str(listed) and "S3cr3t" not in str(repos.list_repositories())
    assert "alice:S3cr3t@" in (isolated_home / "repos.json").read_text()


def test_bad_catalog_names_file_and_line(tmp_path):
    from pylua_bioxen_vm_lib.utils.curator import Curator

    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "packages": [\n    {"name": "x",}\n  ]\n}\n')
    with pytest.raises(exc.LuaVMError) as info:
        Curator(packages_catalog=str(bad)).catalog()
    assert "bad.json:3:" in str(info.value)


def test_curator_catalog_dicts_leave_no_temporary_files():
    """The original's injected catalogs (dicts) are written to temporary
    JSON files for the core; they were never removed (two per Curator)."""
    import gc

    from pylua_bioxen_vm_lib.utils.curator import Curator

    curator = Curator(
        packages_catalog={"mypkg": {"summary": "mine", "versions": ["1.0-1"]}},
        profiles_catalog={"mine": {"description": "d", "packages": ["mypkg"]}},
    )
    files = [f for f in curator.catalogs if os.path.basename(f).startswith("bioxen-catalog-")]
    assert len(files) == 2 and all(os.path.exists(f) for f in files)
    assert curator.get_profile("mine")["packages"] == ["mypkg"]
    del curator
    gc.collect()
    assert not any(os.path.exists(f) for f in files)


def test_curator_profiles_health_and_bootstrap():
    from pylua_bioxen_vm_lib.utils.curator import bootstrap_lua_environment, get_curator

    curator = get_curator()
    profiles = curator.get_available_profiles()
    assert {"minimal", "standard", "full"} <= set(profiles)
    result = bootstrap_lua_environment("boot", profile="bioxen-minimal")
    assert result["success"], result
    health = get_curator("boot").health_check()
    assert health["luarocks_available"] and health["installed_packages"] >= 1
    assert health["catalog_size"] >= 5


def test_c_module_is_a_clear_error_on_the_embedded_engine():
    result = create_vm("cmod").execute_string('return pcall(require, "lfs")')
    ok, message = result["values"]
    assert ok is False and "lfs" in message


def test_percent_encoded_file_uri_repository(tmp_path):
    """A repository in a directory with a space, given as Path.as_uri()
    (file:///...a%20b/rocks), is the decoded directory."""
    from pylua_bioxen_vm_lib import _packages
    from pylua_bioxen_vm_lib.package_manager import PackageManager, RepositoryManager

    spaced = tmp_path / "a b" / "rocks"
    shutil.copytree(_packages.SHIPPED_REPO, spaced)
    repos = RepositoryManager()
    for repo in repos.list_repositories():
        repos.remove_repository(repo["name"])
    repos.add_repository(spaced.as_uri(), name="spaced")
    assert "%20" in repos.list_repositories()[0]["url"]
    installed = PackageManager().install("bio_compute")
    assert any(p["name"] == "bio_compute" for p in installed)


def test_build_commands_run_only_when_allowed(tmp_path):
    # A rockspec whose build step is a shell command: refused by default on
    # every API (the opt-in was Go-only), run when the caller allows it.
    # (The command writes the module it installs: luarocks may write
    # nothing outside the environment's tree.)
    import subprocess

    from pylua_bioxen_vm_lib import _packages
    from pylua_bioxen_vm_lib.package_manager import PackageManager
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    repo, work = tmp_path / "repo", tmp_path / "work" / "evil-1.0"
    repo.mkdir()
    work.mkdir(parents=True)
    (work / "evil.lua").write_text("return {}\n")
    tarball = work.parent / "evil-1.0.tar.gz"
    subprocess.run(["tar", "-C", str(work.parent), "-czf", str(tarball), "evil-1.0"], check=True)
    spec = work.parent / "evil-1.0-1.rockspec"
    spec.write_text(
        f'package = "evil"\nversion = "1.0-1"\n'
        f'source = {{ url = "{tarball.as_uri()}" }}\n'
        'description = { summary = "runs a command" }\ndependencies = { "lua >= 5.1" }\n'
        'build = { type = "command", build_command = "echo \'return [[ran]]\' > evil.lua", '
        'install = { lua = { evil = "evil.lua" } } }\n'
    )
    # A source rock, as repositories serve them.
    subprocess.run(["luarocks", "pack", str(spec)], cwd=repo, check=True, capture_output=True)
    subprocess.run(["luarocks-admin", "make_manifest", str(repo)], check=True, capture_output=True)
    PackageManager().repositories.add_repository(repo, name="evil", index=0)

    def built() -> bool:
        # (A failed install removes the environment it created.)
        tree = _packages.home() / "envs" / "default" / "tree"
        module = os.path.join(tree, "share", "lua", "5.1", "evil.lua")
        return os.path.exists(module) and "ran" in open(module).read()

    with pytest.raises(exc.PackageError, match="accepted_build_types"):
        PackageManager().install("evil")
    # Also what code written for the earlier LuaProcessError catches.
    with pytest.raises(exc.LuaProcessError, match="accepted_build_types") as info:
        PackageInstaller().install_package("evil")
    assert isinstance(info.value, exc.LuaRocksError)
    assert not built()
    with pytest.raises(TypeError):
        PackageManager(allow_build_commands="yes")  # type: ignore[arg-type]

    installed = PackageManager(allow_build_commands=True).install("evil")
    assert built()
    assert any(p["name"] == "evil" for p in installed)
    PackageManager().remove("evil")
    assert not built()
    assert PackageInstaller(allow_build_commands=True).install_package("evil")["installed_version"] == "1.0-1"
    assert built()


def _pure_lua_repo(tmp_path, name, versions):
    """A repository of source rocks of a one-module pure-Lua package, one
    per version (the module returns its version)."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    for version in versions:
        upstream = version.rsplit("-", 1)[0]
        work = tmp_path / "work" / f"{name}-{upstream}"
        work.mkdir(parents=True)
        (work / f"{name}.lua").write_text(f'return "{version}"\n')
        tarball = work.parent / f"{name}-{upstream}.tar.gz"
        subprocess.run(["tar", "-C", str(work.parent), "-czf", str(tarball), work.name], check=True)
        spec = work.parent / f"{name}-{version}.rockspec"
        spec.write_text(
            f'package = "{name}"\nversion = "{version}"\nsource = {{ url = "{tarball.as_uri()}" }}\n'
            'description = { summary = "test" }\ndependencies = { "lua >= 5.1" }\n'
            f'build = {{ type = "builtin", modules = {{ {name} = "{name}.lua" }} }}\n'
        )
        subprocess.run(["luarocks", "pack", str(spec)], cwd=repo, check=True, capture_output=True)
    subprocess.run(["luarocks-admin", "make_manifest", str(repo)], check=True, capture_output=True)
    return repo


def test_installer_update_package_updates(tmp_path):
    """PackageInstaller.update_package installs the newest version; it
    returned at once when the package was installed, updating nothing."""
    from pylua_bioxen_vm_lib.package_manager import RepositoryManager
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    repo = _pure_lua_repo(tmp_path, "upd", ["1.0-1", "1.1-1"])
    RepositoryManager().add_repository(repo, name="upd", index=0)
    installer = PackageInstaller()
    assert installer.install_package("upd", "1.0-1")["installed_version"] == "1.0-1"
    result = installer.update_package("upd")
    assert result["success"] and result["installed_version"] == "1.1-1", result
    assert create_vm("u").execute_string('return require("upd")')["values"] == ["1.1-1"]


def test_installer_result_lists_the_package_dependencies():
    """``dependencies`` names what the package depends on, not every other
    package of the environment."""
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    installer = PackageInstaller()
    assert installer.install_package("seq_utils")["dependencies"] == ["bio_compute"]
    assert installer.install_package("bio_compute")["dependencies"] == []
    assert installer.install_package("bio_compute", "1.0.0-1")["dependencies"] == []


def test_interpreter_named_lua_gets_the_tree_of_its_version(tmp_path):
    """An interpreter named without its version ("lua", Debian's link to the
    one chosen by update-alternatives) was given the Lua 5.1 part of the
    environment even when it is lua5.4, whose C modules live in the 5.4
    part."""
    lua54 = shutil.which("lua5.4")
    if lua54 is None:
        pytest.skip("lua5.4 is not installed")
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    PackageInstaller().install_package("bio_compute")
    tree = EnvironmentManager().get_paths("default")["tree"]
    link = tmp_path / "bin" / "lua"
    link.parent.mkdir()
    link.symlink_to(lua54)
    with create_vm("named_lua", engine="process", lua_executable=str(link)) as vm:
        result = vm.execute_string('return package.path, package.cpath, require("bio_compute").version')
        path, cpath, version = result["values"]
        assert f"{tree}/share/lua/5.4/" in path and f"{tree}/lib/lua/5.4/" in cpath, result
        assert version == "1.0.0"


def test_removing_a_needed_package_is_refused():
    """remove ran luarocks with --force: removing bio_compute under seq_utils
    succeeded and left seq_utils unable to load."""
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    installer = PackageInstaller()
    installer.install_package("seq_utils")
    with pytest.raises(exc.PackageError, match="needed by seq_utils"):
        installer.remove_package("bio_compute")
    assert create_vm("dep").execute_string('return require("seq_utils").version')["values"] == ["1.0.0"]
    assert installer.remove_package("seq_utils") and installer.remove_package("bio_compute")
    assert installer.list_installed() == []


def test_queries_on_an_unknown_environment_create_nothing(isolated_home):
    """Listing, validating or locking a misspelt environment raised nothing
    and created it (so create_vm(environment=<typo>) worked afterwards), or
    raised LuaFileNotFoundError; it is EnvironmentNotFoundError now, and
    listing an environment that does not exist yet gives []."""
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.package_manager import PackageManager
    from pylua_bioxen_vm_lib.utils.curator import Curator

    manager = EnvironmentManager()
    for call in (
        lambda: manager.list_packages("ghost"),
        lambda: manager.validate_environment("ghost"),
        lambda: manager.get_paths("ghost"),
        lambda: manager.lock("ghost"),
        lambda: PackageManager("ghost").remove("bio_compute"),
    ):
        with pytest.raises(exc.EnvironmentNotFoundError):
            call()
    assert manager.list_packages() == []
    assert PackageManager("ghost").list_installed() == []
    assert PackageManager("ghost").is_installed("bio_compute") is False
    assert Curator(env_name="ghost").is_package_installed("bio_compute") is False
    for call in (
        lambda: manager.validate_environment(""),
        lambda: manager.lock(""),
        lambda: manager.lock(None),  # type: ignore[arg-type]
        lambda: manager.restore("", "x.lock"),
        lambda: manager.install_profile_packages("bioxen-minimal", env_name=""),
    ):
        # "" (or None, dropped from the request) was the default environment.
        with pytest.raises(exc.InvalidArgumentError):
            call()
    assert manager.list_environments() == []
    with pytest.raises(exc.EnvironmentNotFoundError):
        create_vm("v", environment="ghost").execute_string("return 1")


def test_environment_names_and_lua_versions_are_checked(tmp_path):
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.package_manager import PackageManager

    # As the core checks them: InvalidArgumentError (a ValueError), and a
    # trailing newline is no exception.
    for bad in ("../x", "default\n", "", ".hidden"):
        with pytest.raises(exc.InvalidArgumentError):
            PackageManager(bad)
        with pytest.raises(exc.InvalidArgumentError):
            create_vm("v", environment=bad)
    EnvironmentManager().create_environment("default")
    with pytest.raises(exc.InvalidArgumentError):
        EnvironmentManager().get_paths("default", "../../../etc")
    assert EnvironmentManager().get_paths("default", "5.4")["path"].endswith("/share/lua/5.4/?/init.lua")


def test_input_files_must_be_regular_and_bounded(tmp_path):
    from pylua_bioxen_vm_lib.package_manager import PackageManager

    # /dev/zero as a lock file ended the process (out of memory).
    with pytest.raises(exc.InvalidArgumentError):
        PackageManager("default").install_from_lock("/dev/zero")


def test_many_luajit_starts_stay_in_sync():
    # A driver ~1 KiB longer once made ~4% of LuaJIT starts hang or read a
    # request from its middle ("unknown frame"; a CI run hung here): when
    # the driver and policy frames outgrew the pipe, the host dropped the
    # policy bytes still unwritten at the driver's hello. This loop found it.
    if shutil.which("luajit") is None:
        pytest.skip("luajit is not installed")
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    PackageInstaller().install_package("bio_compute")
    for i in range(200):
        vm = create_vm("sync", engine="process", lua_executable="luajit")
        try:
            result = vm.execute_string('return require("bio_compute").analyze_sequence("ATCG").gc_content', timeout=10)
            assert result["values"] == [0.5], (i, result)
        finally:
            vm.close()


def test_relative_home_is_the_current_directorys(tmp_path, monkeypatch):
    """A relative PYLUA_BIOXEN_HOME installed into luarocks' own temporary
    directory (removed afterwards) and reported success: nothing could be
    required."""
    from pylua_bioxen_vm_lib.utils.curator import PackageInstaller

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYLUA_BIOXEN_HOME", "rel-home")
    result = PackageInstaller().install_package("bio_compute")
    assert result["installed_version"] == "1.0.0-1"
    assert (tmp_path / "rel-home" / "envs" / "default" / "tree").is_dir()
    for engine in ("embedded", "process"):
        out = create_vm("v", engine=engine).execute_string('require("bio_compute") return bio_compute.compute(10)')
        assert out["success"], (engine, out)


@pytest.mark.parametrize("bad", ["a;b", "a?b"])
def test_home_that_package_path_cannot_hold_is_refused(tmp_path, monkeypatch, bad):
    """package.path is ';'-separated with '?' for the module name: an
    install under such a home succeeded and require never found it."""
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.package_manager import PackageManager

    monkeypatch.setenv("PYLUA_BIOXEN_HOME", str(tmp_path / bad))
    with pytest.raises(exc.InvalidArgumentError, match="package.path"):
        PackageManager().install("bio_compute")
    with pytest.raises(exc.InvalidArgumentError):
        EnvironmentManager().create_environment("e")
    assert not (tmp_path / bad / "envs" / "default").exists()


def test_curator_catalogs_given_as_paths_or_bad_data(tmp_path, monkeypatch):
    """A catalog given as a pathlib.Path was taken for data: TypeError (not
    JSON serializable), leaving a temporary file behind; an entry of the
    original's dict that is no dict was AttributeError."""
    from pathlib import Path

    from pylua_bioxen_vm_lib.utils.curator import Curator

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    catalog = tmp_path / "mine.json"
    catalog.write_text(json.dumps({"packages": [{"name": "mypkg", "summary": "mine"}]}))
    curator = Curator(packages_catalog=Path(catalog))
    assert curator.catalog()["packages"]["mypkg"]["summary"] == "mine"
    for bad in ({"x": 1}, {"x": {"summary": object()}}, object()):
        with pytest.raises(exc.ArgumentTypeError):
            Curator(packages_catalog=bad)  # type: ignore[arg-type]
    with pytest.raises(exc.ArgumentTypeError):
        Curator(profiles_catalog={"p": {"packages": [object()]}})
    assert os.listdir(tmp_path / "tmp") == []


def test_health_check_creates_no_environment(isolated_home):
    """Curator(env_name=<typo>).health_check() created the environment (so
    create_vm(environment=<typo>) worked afterwards); the C request
    {"op": "health", "env": <typo>} too."""
    from pylua_bioxen_vm_lib import _packages
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.utils.curator import Curator

    with pytest.raises(exc.EnvironmentNotFoundError):
        Curator(env_name="ghost").health_check()
    with pytest.raises(exc.EnvironmentNotFoundError):
        _packages.call("health", env="ghost")
    with pytest.raises(exc.EnvironmentNotFoundError):
        Curator(env_name="ghost").get_lua_env()
    assert not (isolated_home / "envs" / "ghost").exists()
    assert "LUA_PATH" in Curator().get_lua_env()
    # "default" is always there to check.
    assert Curator().health_check()["environment"] == "default"
    assert EnvironmentManager().validate_environment()["environment"] == "default"


def test_failed_change_leaves_no_new_environment(isolated_home, tmp_path):
    """An install, update or lock restore that failed before installing
    anything still created its environment (so create_vm(environment=...)
    then worked on an empty one)."""
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.package_manager import PackageManager

    with pytest.raises(exc.InvalidArgumentError, match="unknown package"):
        PackageManager("fresh1").install("no_such_package")
    with pytest.raises(exc.InvalidArgumentError):
        PackageManager("fresh2").install("-bad")
    with pytest.raises(exc.LuaRocksError):
        PackageManager("fresh3").install("bio_compute", "9.9-1")
    with pytest.raises(exc.LuaFileNotFoundError):
        EnvironmentManager().restore("fresh4", tmp_path / "missing.lock")
    bad_lock = tmp_path / "bad.lock"
    bad_lock.write_text('{"format": 1, "packages": [{"name": "x", "version": "1-1", "rock": "../x", "repo": "r"}]}')
    with pytest.raises(exc.InvalidArgumentError):
        EnvironmentManager().restore("fresh5", bad_lock)
    assert EnvironmentManager().list_environments() == []
    # An environment that was there stays, with what it had.
    PackageManager("kept").install("bio_compute")
    with pytest.raises(exc.InvalidArgumentError):
        PackageManager("kept").install("no_such_package")
    assert PackageManager("kept").is_installed("bio_compute")
    assert EnvironmentManager().list_environments() == ["kept"]


def test_fields_of_the_wrong_type_are_argument_type_errors():
    """A package name, version, query, URL or index of the wrong type went
    to the core as it was and came back as "bad request JSON"
    (InvalidArgumentError, or PackageError from the Curator)."""
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.package_manager import PackageManager, RepositoryManager
    from pylua_bioxen_vm_lib.utils.curator import Curator, PackageInstaller, search_packages

    for call in (
        lambda: PackageManager().install(123),  # type: ignore[arg-type]
        lambda: PackageManager().install("bio_compute", 1.0),  # type: ignore[arg-type]
        lambda: Curator().install_package(["bio_compute"]),  # type: ignore[arg-type]
        lambda: PackageInstaller().install_package("bio_compute", 1),  # type: ignore[arg-type]
        lambda: search_packages(123),  # type: ignore[arg-type]
        lambda: EnvironmentManager().get_paths("default", 5.1),  # type: ignore[arg-type]
        lambda: RepositoryManager().add_repository("/tmp", index="1"),  # type: ignore[arg-type]
        lambda: RepositoryManager().remove_repository(5),  # type: ignore[arg-type]
    ):
        with pytest.raises(exc.ArgumentTypeError):
            call()


def test_profile_and_names_of_the_wrong_type_are_typed_errors():
    """A profile or package name that is a list (unhashable) raised a bare
    TypeError ("unhashable type: 'list'") from a dict lookup, as did
    get_curator(["x"])."""
    from pylua_bioxen_vm_lib.env import EnvironmentManager
    from pylua_bioxen_vm_lib.utils.curator import (
        Curator,
        PackageInstaller,
        bootstrap_lua_environment,
        get_curator,
    )

    for call in (
        lambda: EnvironmentManager().install_profile_packages(["bioxen-minimal"]),  # type: ignore[arg-type]
        lambda: EnvironmentManager(profile=5).install_profile_packages(),  # type: ignore[arg-type]
        lambda: Curator().get_profile(["bioxen-minimal"]),  # type: ignore[arg-type]
        lambda: Curator().get_recommendations(["bioxen-minimal"]),  # type: ignore[arg-type]
        lambda: Curator().curate_environment(["bioxen-minimal"]),  # type: ignore[arg-type]
        lambda: bootstrap_lua_environment("boot", profile=["bioxen-minimal"]),  # type: ignore[arg-type]
        lambda: PackageInstaller().update_package(["bio_compute"]),  # type: ignore[arg-type]
    ):
        with pytest.raises(exc.ArgumentTypeError):
            call()
    with pytest.raises(exc.InvalidArgumentError):
        get_curator(["default"])  # type: ignore[arg-type]


def test_environment_manager_paths_of_the_wrong_type_are_argument_type_errors(tmp_path, monkeypatch):
    """EnvironmentManager passed config_path, lock's path and restore's
    lock_path through str(): b"x.lock" became the file name "b'x.lock'"
    (lock wrote it into the current directory), and a dict or an int was
    looked for as a file (LuaFileNotFoundError "cannot read 5")."""
    from pathlib import Path

    from pylua_bioxen_vm_lib.env import EnvironmentManager

    monkeypatch.chdir(tmp_path)
    manager = EnvironmentManager()
    manager.create_environment("default")
    for call in (
        lambda: EnvironmentManager(config_path=5).list_environments(),  # type: ignore[arg-type]
        lambda: EnvironmentManager(config_path={"packages": []}),  # type: ignore[arg-type]
        lambda: EnvironmentManager(config_path=b"catalog.json"),  # type: ignore[arg-type]
        lambda: manager.lock("default", b"x.lock"),  # type: ignore[arg-type]
        lambda: manager.restore("other", 5),  # type: ignore[arg-type]
    ):
        with pytest.raises(exc.ArgumentTypeError):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]
    manager.lock("default", Path("ok.lock"))
    assert (tmp_path / "ok.lock").is_file()


def test_search_packages_limit_zero_and_negative():
    """search_packages(q, limit=0) returned every match (0 was read as "no
    limit") and limit=-1 every match but the last (a negative slice)."""
    from pylua_bioxen_vm_lib.utils.curator import search_packages

    assert len(search_packages("bio")) >= 2
    assert search_packages("bio", limit=0) == []
    assert len(search_packages("bio", limit=1)) == 1
    with pytest.raises(exc.InvalidArgumentError, match="limit"):
        search_packages("bio", limit=-1)


def test_get_curator_is_shared_across_threads():
    """get_curator() called at once on several threads made a Curator per
    thread (each found none cached), though it is documented as shared."""
    import sys
    import threading

    from pylua_bioxen_vm_lib.utils import curator

    curator._curators.pop("shared-env", None)
    seen = []
    barrier = threading.Barrier(8)

    def get():
        barrier.wait()
        seen.append(curator.get_curator("shared-env"))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=get) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        curator._curators.pop("shared-env", None)
    assert len({id(c) for c in seen}) == 1
