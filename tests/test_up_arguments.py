"""``up``'s command line read two ways: a plain line by ``_up_run.plain_arguments``, without
cyclopts (``_main.py``), everything else by the cyclopts application. Both readings of a plain
line must be the same ``UpArgs``, and a plain ``unitsync up`` must really not import cyclopts."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from cli._up_run import UpArgs, plain_arguments

from .cli_support import OK, UNITSYNC, USAGE, env_for, table, usage


def cyclopts_reading(tokens: list[str]) -> UpArgs | None:
    """What the cyclopts application makes of ``unitsync up TOKENS`` (None: it refused them)."""
    from cli._app import run

    made: list[UpArgs] = []
    with mock.patch("cli._up.run_up", made.append):
        code = run(["up", *tokens])
    assert made or code == USAGE, (tokens, code)
    return made[0] if made else None


NAMES = st.sampled_from(["git", "claude", "u-1", "a.b", "x=y", ""])
#: Up's options in their plain forms, each with values it may take.
VALUED = {
    ("-f", "--file"): ["w.toml", "", "dir/w.toml", "-x"], ("--log-dir",): ["logs", "a=b"],
    ("--grace",): ["5s", "0", "1h30m", "250ms", "2.5"], ("--socket",): ["/tmp/s.sock"],
}


@st.composite
def plain_lines(draw: st.DrawFn) -> list[str]:
    """A line ``plain_arguments`` reads: names and each option at most once, in any order and
    form (``--opt value``, ``--opt=value``, ``-f=value``; a value that starts with ``-`` only
    joined), maybe ``--`` and more names."""
    items: list[list[str]] = [[name] for name in draw(st.lists(NAMES, max_size=3))]
    for names, values in VALUED.items():
        if draw(st.booleans()):
            name, value = draw(st.sampled_from(names)), draw(st.sampled_from(values))
            joined = value.startswith("-") or draw(st.booleans())
            items.append([f"{name}={value}"] if joined else [name, value])
    for flag in ("--abort-on-failure", "--no-autostart"):
        if draw(st.booleans()):
            items.append([flag])
    line = [token for item in draw(st.permutations(items)) for token in item]
    if draw(st.booleans()):
        line += ["--", *draw(st.lists(st.sampled_from(["-odd", "git", "--help"]), max_size=2))]
    return line


#: Tokens of lines that may not be plain: help, negative flags, options of other commands,
#: values that look like options, repeated options.
TOKENS = st.sampled_from([
    "git", "-f", "--file", "w.toml", "--grace", "5s", "soon", "--grace=soon", "--socket",
    "--abort-on-failure", "--abort-on-failure=true", "--no-abort-on-failure", "--no-autostart",
    "--no-autostart=1",
    "--", "-x", "--help", "-h", "--version", "--timeout", "-fw.toml",
])


@settings(max_examples=300, deadline=None)
@given(plain_lines())
def test_a_plain_line_is_read_as_cyclopts_reads_it(tokens: list[str]) -> None:
    plain = plain_arguments(tokens)
    assert plain is not None, tokens
    assert cyclopts_reading(tokens) == plain, tokens


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=6))
def test_any_line_read_plainly_is_read_so_by_cyclopts_too(tokens: list[str]) -> None:
    plain = plain_arguments(tokens)
    if plain is not None:
        assert cyclopts_reading(tokens) == plain, tokens


def test_the_usual_lines_are_plain() -> None:
    usual = {
        (): UpArgs(),
        ("git", "claude"): UpArgs(units=("git", "claude")),
        ("-f", "w.toml", "--socket", "/tmp/s.sock"):
            UpArgs(file=Path("w.toml"), socket=Path("/tmp/s.sock")),
        ("--log-dir", "logs", "--abort-on-failure", "--grace", "1m30s", "git", "--no-autostart"):
            UpArgs(units=("git",), log_dir=Path("logs"), abort_on_failure=True, grace=90.0,
                   no_autostart=True),
        ("--file=w.toml", "--grace=0", "--", "-odd"):
            UpArgs(units=("-odd",), file=Path("w.toml"), grace=0.0),
    }
    for tokens, expected in usual.items():
        assert plain_arguments(tokens) == expected, tokens
        assert cyclopts_reading(list(tokens)) == expected, tokens


def test_anything_else_is_left_to_cyclopts_and_its_messages() -> None:
    for tokens in (["--help"], ["--no-abort-on-failure"], ["--grace", "soon"], ["-f"], ["-f", "-x"],
                   ["--file", "a", "--file", "b"], ["--abort-on-failure=yes"], ["-x"]):
        assert plain_arguments(tokens) is None, tokens
    refused = usage("up", "--grace", "soon")
    assert refused.returncode == USAGE
    assert "invalid duration 'soon'" in refused.stderr
    helped = usage("up", "--help")
    assert helped.returncode == OK and "--abort-on-failure" in helped.stdout


def test_a_plain_up_runs_without_importing_cyclopts(sock_dir: Path, tmp_path: Path) -> None:
    """Real ``unitsync up`` processes, with Python's import log on: the plain line runs its unit
    and imports no cyclopts; the same run with ``--no-abort-on-failure`` (not plain) goes
    through cyclopts, which shows the log would have named it."""
    (tmp_path / "w.toml").write_text(textwrap.dedent("""\
        [units.hello]
        run = "echo hi"
    """))
    env = {**env_for(sock_dir / "unitsync.sock"), "PYTHONPROFILEIMPORTTIME": "1"}
    imported: dict[str, bool] = {}
    for extra in ((), ("--no-abort-on-failure",)):
        done = subprocess.run([*UNITSYNC, "up", "-f", "w.toml", *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == OK, (extra, done.stdout, done.stderr[-2000:])
        assert "hello | hi" in done.stdout
        assert ["hello", "completed"] in [row[:2] for row in table(
            done.stdout[done.stdout.index("UNIT"):])]
        imported[" ".join(extra)] = " cyclopts\n" in done.stderr
    assert imported == {"": False, "--no-abort-on-failure": True}
