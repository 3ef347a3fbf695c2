"""The public names, and what importing them costs."""

from __future__ import annotations

import subprocess
import sys

import coordinator

PUBLIC = {
    "AlreadyInStatus", "AlreadyRegistered", "Coordinator", "CoordinatorClosed",
    "CoordinatorUnreachable", "Lease", "connect", "serve",
    "CoordinatorStatistics", "CycleError", "Dependency", "DependencyFailed", "Event",
    "InvalidArgument", "InvalidName", "Lagged", "LocalCoordinator", "LocalUnit",
    "MAX_NAME_BYTES", "NotHeld", "NotReady", "Overloaded", "Status", "UnitHandle", "UnitInfo", "UnitNotFound",
    "UnitsyncError", "__version__", "open_coordinator", "validate_name",
}


def test_public_names_are_pinned() -> None:
    assert set(coordinator.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(coordinator, name) is not None
        assert name in dir(coordinator)


def test_every_error_is_a_unitsync_error_with_a_code() -> None:
    errors = [getattr(coordinator, n) for n in PUBLIC if n not in ("UnitsyncError",)]
    errors = [e for e in errors if isinstance(e, type) and issubclass(e, Exception)]
    assert len(errors) == 13
    for error in errors:
        assert issubclass(error, coordinator.UnitsyncError)
        assert error.code.startswith("unitsync.")


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
