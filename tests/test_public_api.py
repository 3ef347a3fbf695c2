"""The public names, and what importing them costs."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

import coordinator
import coordinator.rpc

PACKAGES = ("coordinator", "coordinator.rpc")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_and_says_where_it_is_public(package: str) -> None:
    """``__all__`` is read from the package's one list (its TYPE_CHECKING block); each name
    resolves, is in ``dir()``, and a class or function reports the package as its module."""
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        value = getattr(module, name)
        assert name in dir(module)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ == package, name
    with pytest.raises(AttributeError):
        module.NoSuchName  # noqa: B018


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_readme(package: str) -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in importlib.import_module(package).__all__ if f"`{n}" not in readme]
    assert missing == [], f"{package}: public but not in README.md"


def test_an_error_raised_inside_the_library_names_its_public_class() -> None:
    """trio's fixup_module_metadata, our way: a traceback says ``coordinator.CycleError``,
    even when the program never named the class itself."""
    code = (
        "import trio, coordinator\n"
        "async def main():\n"
        "    async with coordinator.open_coordinator() as coord:\n"
        "        await coord.unit('a').want('a')\n"
        "trio.run(main)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "coordinator.CycleError: dependency cycle refused: a -> a" in done.stderr
    assert "coordinator._errors" not in done.stderr


#: Codes of errors a client makes itself: they never cross the wire.
CLIENT_SIDE = {"unitsync.unreachable", "unitsync.address-in-use", "unitsync.store-unreachable",
               "unitsync.store-lost"}  # never cross the wire (README "RPC")


def test_every_error_is_a_unitsync_error_with_a_documented_code() -> None:
    """README lists every code; the schema's header, which other languages read, every code
    that crosses the wire."""
    readme = (ROOT / "README.md").read_text()
    schema = (ROOT / "schema" / "unitsync.capnp").read_text()
    errors = [getattr(coordinator, n) for n in coordinator.__all__]
    errors += [getattr(coordinator.rpc, n) for n in coordinator.rpc.__all__]
    errors = [e for e in errors if isinstance(e, type) and issubclass(e, Exception)]
    assert coordinator.CycleError in errors and coordinator.rpc.AddressInUse in errors
    for error in errors:
        assert issubclass(error, coordinator.UnitsyncError)
        assert error.code.startswith("unitsync."), error
        assert f"`{error.code.removeprefix('unitsync.')}`" in readme, error.code
        assert error.code in CLIENT_SIDE or re.search(rf"{error.code}\b", schema), error.code


@pytest.mark.parametrize("error", [
    coordinator.CycleError(("a", "b", "a")),
    coordinator.DependencyFailed("git", "exit 1", ("claude", "git")),
    coordinator.AlreadyInStatus("x", coordinator.Status.STARTED),
    coordinator.CoordinatorUnreachable("/tmp/x.sock", "no such file"),
    coordinator.Lagged(7, 1024),
])
def test_errors_keep_their_data_through_pickle(error: coordinator.UnitsyncError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert vars(back) == vars(error)


def _signature(function: object) -> list[tuple[str, object, object]]:
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in parameters]


@pytest.mark.parametrize(("protocol", "implementations"), [
    ("UnitHandle", ("coordinator._coordinator:LocalUnit", "coordinator.rpc._remote:RemoteUnit")),
    ("Coordinator", (
        "coordinator._coordinator:LocalCoordinator", "coordinator.rpc._remote:RemoteCoordinator",
    )),
])
def test_both_coordinators_implement_the_protocols(
    protocol: str, implementations: tuple[str, ...]
) -> None:
    """Code written against ``UnitHandle``/``Coordinator`` runs on either coordinator: every
    method the protocol declares exists on both, with parameters the protocol's call fits."""
    declared = getattr(coordinator, protocol)
    methods = [n for n, v in vars(declared).items() if callable(v) and not n.startswith("_")]
    assert "unit" in methods or "hold" in methods
    for implementation in implementations:
        module, _, name = implementation.partition(":")
        cls = getattr(importlib.import_module(module), name)
        for method in methods:
            wanted = _signature(getattr(declared, method))
            given = _signature(getattr(cls, method))
            assert given[: len(wanted)] == wanted, (name, method)
            assert all(p[2] is not inspect.Parameter.empty for p in given[len(wanted):]), method


def test_the_command_line_imports_only_public_names() -> None:
    """cli/ uses ``coordinator`` and ``coordinator.rpc`` as any other program would."""
    for path in sorted((ROOT / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "coordinator":
                    continue
                assert node.module in PACKAGES, f"{path.name} imports {node.module}"
                public = importlib.import_module(node.module).__all__
                for alias in node.names:
                    assert alias.name in public, f"{path.name}: {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("coordinator.") for a in node.names), path.name


def imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return {m.split(".")[0] for m in out.stdout.split()}


def test_importing_coordinator_loads_neither_capnp_nor_trio() -> None:
    loaded = imported_after("import coordinator")
    assert "capnp" not in loaded and "trio" not in loaded


def test_using_the_library_does_not_load_capnp() -> None:
    loaded = imported_after("import coordinator; coordinator.open_coordinator")
    assert "trio" in loaded
    assert "capnp" not in loaded


def test_cli_help_loads_neither_capnp_nor_trio() -> None:
    loaded = imported_after(
        "import cli, contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.app(['--help'])"
    )
    assert "cyclopts" in loaded  # the help really was produced in that process
    assert "capnp" not in loaded and "trio" not in loaded


def test_client_commands_load_capnp_but_not_trio(tmp_path: object) -> None:
    """DESIGN §7: a client command runs on pycapnp's asyncio loop; importing Trio alone would
    cost ~110 ms of every `unitsync complete x`. (No coordinator here: the command gets as far
    as connecting, which needs capnp, then exits 69.)"""
    for command in (["ping"], ["complete", "x"], ["run", "x", "--", "true"], ["watch"]):
        loaded = imported_after(
            "import cli, contextlib\n"
            "from coordinator import CoordinatorUnreachable\n"
            "with contextlib.suppress(CoordinatorUnreachable):\n"
            f"    cli.app({command + ['--socket', f'{tmp_path}/none.sock']!r}, "
            "result_action='return_value')"
        )
        assert "capnp" in loaded, command
        assert "trio" not in loaded, command


def test_console_script_answers_help_and_version() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "cli", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == coordinator.__version__
    helptext = subprocess.run(
        [sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "unitsync" in helptext.stdout


def test_a_command_start_is_not_collected_over_and_over() -> None:
    """``cli`` raises the collector's threshold before its imports (``COMMAND_GC_THRESHOLDS``):
    what ``up`` imports — ~37,000 objects that live as long as the process — is made with at
    most one young collection (Python's default threshold made 46)."""
    code = (
        "import gc\n"
        "before = gc.get_stats()[0]['collections']\n"
        "import cli, cli._up_run, cli._display, cli._autostart, cli._inprocess, coordinator.rpc._client\n"
        "print(gc.get_stats()[0]['collections'] - before, gc.get_threshold() == "
        "cli.COMMAND_GC_THRESHOLDS)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    collections, thresholds = out.stdout.split()
    assert int(collections) <= 1 and thresholds == "True"
