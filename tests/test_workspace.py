"""The workspace file (``unitsync.toml``): the model ``cli._workspace`` reads, each problem it
reports with its line, and ``unitsync check`` (in process, and once as a real subprocess)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from cli._check import summary
from cli._probes import CommandProbe, HttpProbe, LogProbe, TcpProbe
from cli._supervise import Limits
from cli._toml_lines import KeyLines
from cli._workspace import Problem, ReadySpec, Reference, WorkspaceError, load, parse
from coordinator import Status

from .cli_support import CYCLE, OK, UNITSYNC, USAGE
from .cli_support import usage as run_in_process

STARTED, COMPLETED, FINISHED = Status.STARTED, Status.COMPLETED, Status.FINISHED

#: The example of issue 14 (and of README "The workspace file"), line for line.
EXAMPLE = """\
[units.ssh-key]
run = "ssh-keygen -t ed25519 -N '' -f ~/.ssh/id_ed25519"
[units.git]
run = ["git", "clone", "https://example.com/repo", "repo"]   # a list: no shell
after = ["ssh-key"]
[units.db]
run = "postgres -D db"
ready = { tcp = "127.0.0.1:5432", timeout = "60s" }
[units.app]
run = "npm run dev"
after = ["git", { unit = "db", requires = "completed" }]
ready = { log = "ready on http" }
[units.dotfiles]        # no `run`: an outside script reports it (`unitsync complete dotfiles`)
[units.report]
run = "./report.sh"
after = ["@setup", "app"]
requires = "finished"   # the default requirement of this unit's `after` entries
[groups]
setup = ["ssh-key", "git", "dotfiles"]
"""


def problems(text: str) -> list[str]:
    """Every problem ``parse`` finds in ``text`` (dedented), as printed."""
    with pytest.raises(WorkspaceError) as caught:
        parse(textwrap.dedent(text))
    return [str(problem) for problem in caught.value.problems]


def usage(*args: str) -> tuple[int, str, str]:
    """``unitsync ARGS`` in this process: (exit code, stdout, stderr)."""
    result = run_in_process(*args)
    return result.returncode, result.stdout, result.stderr


def edges(text: str) -> list[tuple[str, str, Status]]:
    return parse(textwrap.dedent(text)).edges()


# --- the model ------------------------------------------------------------------------------


def test_the_example_resolves_to_its_edges_in_file_order() -> None:
    workspace = parse(EXAMPLE)
    assert list(workspace.units) == ["ssh-key", "git", "db", "app", "dotfiles", "report"]
    assert workspace.groups == {"setup": ("ssh-key", "git", "dotfiles")}
    assert workspace.edges() == [
        ("git", "ssh-key", COMPLETED),
        ("app", "git", COMPLETED),
        ("app", "db", COMPLETED),
        ("report", "ssh-key", FINISHED),
        ("report", "git", FINISHED),
        ("report", "dotfiles", FINISHED),
        ("report", "app", FINISHED),
    ]
    assert workspace.requirements() == [
        ("ssh-key", {}),
        ("git", {"ssh-key": COMPLETED}),
        ("db", {}),
        ("app", {"git": COMPLETED, "db": COMPLETED}),
        ("dotfiles", {}),
        ("report", {"ssh-key": FINISHED, "git": FINISHED, "dotfiles": FINISHED,
                    "app": FINISHED}),
    ]
    assert summary(workspace) == "6 units, 7 edges, 1 group: ok"


def test_the_example_units_hold_their_commands_probes_and_lines() -> None:
    units = parse(EXAMPLE).units
    assert units["ssh-key"].run == "ssh-keygen -t ed25519 -N '' -f ~/.ssh/id_ed25519"
    assert units["git"].run == ("git", "clone", "https://example.com/repo", "repo")
    assert units["dotfiles"].run is None
    assert units["db"].ready == ReadySpec(probes=(TcpProbe("127.0.0.1", 5432),), timeout=60.0)
    assert units["app"].ready.probes[0].pattern.pattern == b"ready on http"  # type: ignore[union-attr]
    assert units["app"].after == (Reference("git"), Reference("db", COMPLETED))
    assert units["report"].requires is FINISHED
    assert [u.line for u in units.values()] == [1, 3, 6, 9, 13, 14]


def test_every_key_of_a_unit() -> None:
    workspace = parse(textwrap.dedent("""\
        [units.web]
        run = "npm run dev"
        requires = "started"
        timeout = "10m"
        run_timeout = "1h30m"
        kill_after = 3
        cwd = "web"
        env = { PORT = "8000", NODE_ENV = "development" }
        [units.web.ready]
        log = "ready"
        tcp = "[::1]:8000"
        http = "http://127.0.0.1:8000/health"
        cmd = "curl -sf localhost:8000"
        interval = "250ms"
        timeout = "2m"
    """), "/work/project/unitsync.toml")
    web = workspace.units["web"]
    assert (web.requires, web.timeout, web.run_timeout, web.kill_after) == (
        STARTED, 600.0, 5400.0, 3.0
    )
    assert web.cwd == Path("/work/project/web")
    assert dict(web.env) == {"PORT": "8000", "NODE_ENV": "development"}
    assert web.ready.probes[1:] == (
        TcpProbe("::1", 8000), HttpProbe("http://127.0.0.1:8000/health"),
        CommandProbe("curl -sf localhost:8000"),
    )
    assert isinstance(web.ready.probes[0], LogProbe)
    assert (web.ready.interval, web.ready.timeout) == (0.25, 120.0)


def test_defaults_are_runs_defaults() -> None:
    """A unit says what `unitsync run` would do without the option."""
    unit = parse("[units.x]\nrun = 'true'\n").units["x"]
    limits = Limits()
    assert (unit.run_timeout, unit.kill_after) == (limits.run_timeout, limits.kill_after)
    assert unit.timeout == 0.0  # up waits for the dependencies as long as it takes
    assert (unit.ready.interval, unit.ready.timeout) == (limits.ready_interval,
                                                          limits.ready_timeout)
    assert (unit.requires, unit.ready.probes, unit.cwd, dict(unit.env)) == (COMPLETED, (), None, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        unit.run = "false"  # type: ignore[misc]


def test_before_is_the_reverse_edge_with_the_dependents_requirement() -> None:
    assert edges("""\
        [units.db]
        before = ["app", { unit = "web", requires = "started" }]
        [units.app]
        requires = "finished"
        [units.web]
    """) == [("app", "db", FINISHED), ("web", "db", STARTED)]


def test_before_star_comes_before_every_unit_that_does_not_say_so() -> None:
    assert edges("""\
        [units.app]
        after = [{ unit = "dotfiles", requires = "started" }]
        [units.dotfiles]
        before = ["*"]
        [units.motd]
        before = ["*"]
        [units.git]
        requires = "finished"
    """) == [
        ("app", "dotfiles", STARTED),  # an explicit edge wins over "*"
        ("app", "motd", COMPLETED),
        ("git", "dotfiles", FINISHED),
        ("git", "motd", FINISHED),
    ]  # dotfiles and motd are not ordered between themselves


def test_groups_in_after_and_before_and_duplicates_merged() -> None:
    assert edges("""\
        [groups]
        tools = ["go", "node", "go"]
        [units.go]
        [units.node]
        [units.build]
        after = ["@tools", "node"]
        [units.proxy]
        before = ["@tools"]
    """) == [
        ("go", "proxy", COMPLETED),
        ("node", "proxy", COMPLETED),
        ("build", "go", COMPLETED),
        ("build", "node", COMPLETED),
    ]


def test_units_and_groups_may_be_quoted_and_declared_in_other_forms() -> None:
    workspace = parse(textwrap.dedent("""\
        # a comment
        [units."my app"]
        run = "x"

        [units]
        tools.run = "y"
        lint = { run = "z", after = ["my app"] }
        [units.'quoted.dot'.ready]
        cmd = "true"
        [units.'quoted.dot']
        run = "w"
    """))
    lines = {name: unit.line for name, unit in workspace.units.items()}
    assert lines == {"my app": 2, "tools": 6, "lint": 7, "quoted.dot": 8}
    assert workspace.edges() == [("lint", "my app", COMPLETED)]


def test_key_lines_skip_multiline_strings_and_arrays() -> None:
    lines = KeyLines(textwrap.dedent('''\
        [units.a]
        run = """
        [units.b]
        fake = 1
        """
        after = [
          "x",
          { unit = "y" },
        ]
        [units.b]
        "quoted\\u0041".k = 2
    '''))
    assert lines.line("units", "a", "run") == 2
    assert lines.line("units", "a", "after") == 6
    assert lines.line("units", "b") == 10
    assert lines.line("units", "b", "quotedA", "k") == 11
    assert lines.line("units", "a", "after", "unit") == 6  # inside: the key's own line
    assert lines.line("nothing") is None


def test_the_readme_shows_the_example_and_a_valid_git_claude_file() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert EXAMPLE in blocks
    git_claude = parse(next(b for b in blocks if "[units.claude]" in b))
    assert git_claude.edges() == [("claude", "git", COMPLETED)]


# --- problems -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("[units.git]\nrun = 'x'\naftr = ['a']\n",
     'unitsync.toml:3: unit "git": unknown key "aftr" (did you mean "after"?)'),
    ("[units.git]\nkill-after = 3\n",
     'unitsync.toml:2: unit "git": unknown key "kill-after" (did you mean "kill_after"?)'),
    ("[unit.git]\n",
     ('unitsync.toml:1: unknown key "unit" (did you mean "units"?): a workspace file has '
     "[units.NAME] tables and [groups]")),
    ("[units.a]\n\n[units.b\n",
     ("unitsync.toml:3: invalid TOML: Expected ']' at the end of a table declaration "
     "(column 9)")),
    ("[units.a]\nrun = [\n",
     "unitsync.toml:2: invalid TOML: Invalid value (at the end of the file)"),
    ("", "unitsync.toml: no units: declare at least one [units.NAME] table"),
    ("[groups]\n", "unitsync.toml: no units: declare at least one [units.NAME] table"),
    ("units = 3\n", 'unitsync.toml:1: "units" must be a table of [units.NAME] tables'),
    ("[units]\na = 3\n", 'unitsync.toml:2: unit "a": must be a table ([units.a]), not 3'),
    ('[units."a\\tb"]\n',
     ("unitsync.toml:1: unit \"a\tb\": invalid unit name 'a\\tb': contains control character "
     "U+0009")),
    ('[units."@x"]\n',
     ('unitsync.toml:1: unit "@x": a unit name may not start with "@" (a group) or be "*" '
     "(every unit)")),
    ("[units.a]\nrun = ''\n",
     ('unitsync.toml:2: unit "a": "run" must be a non-empty string (run by sh -c) or a '
     'non-empty list of strings (the command and its arguments, no shell), not ""')),
    ("[units.a]\nrun = []\n",
     ('unitsync.toml:2: unit "a": "run" must be a non-empty string (run by sh -c) or a '
     "non-empty list of strings (the command and its arguments, no shell), not an empty list")),
    ("[units.a]\nrun = ['ls', 3]\n",
     ('unitsync.toml:2: unit "a": "run" must be a non-empty string (run by sh -c) or a '
     "non-empty list of strings (the command and its arguments, no shell), not a list")),
    (("[units.a]\nafter = ['b']\n[units.b]\n[units.c]\nafter = ['gti', '@stup']\n"
     "[groups]\nsetup = ['a']\n"),
     'unitsync.toml:5: unit "c": after: unknown unit "gti"'),
    ("[units.a]\nafter = ['@stup']\n[groups]\nsetup = ['a']\n",
     'unitsync.toml:2: unit "a": after: unknown group "@stup" (did you mean "setup"?)'),
    ("[units.a]\nbefore = ['bb']\n[units.b]\n",
     'unitsync.toml:2: unit "a": before: unknown unit "bb" (did you mean "b"?)'),
    ("[units.a]\nafter = ['*']\n",
     'unitsync.toml:2: unit "a": after: "*" (every other unit) is only allowed in before'),
    ("[units.a]\nafter = [{ requires = 'started' }]\n",
     'unitsync.toml:2: unit "a": after: an entry table needs "unit" (a unit name or "@group")'),
    ("[units.a]\nafter = [{ unit = 'a', require = 'started' }]\n",
     ('unitsync.toml:2: unit "a": after: unknown key "require" in an entry '
     '(did you mean "requires"?)')),
    ("[units.a]\nafter = [{ unit = 'a', requires = 'done' }]\n",
     ('unitsync.toml:2: unit "a": after.requires: must be "started", "completed" or '
     '"finished", not "done"')),
    ("[units.a]\nafter = [3]\n",
     ('unitsync.toml:2: unit "a": after: an entry is a unit name, "@group" or a table '
     '{unit = "...", requires = "..."}, not 3')),
    ("[units.a]\nafter = ['']\n",
     "unitsync.toml:2: unit \"a\": after: invalid unit name '': must not be empty"),
    ("[units.a]\nafter = ['@']\n",
     "unitsync.toml:2: unit \"a\": after: invalid group name '': must not be empty"),
    ("[units.a]\nafter = { unit = 'b' }\n",
     'unitsync.toml:2: unit "a": after: must be a list of unit names, not a table'),
    ("[units.a]\nrequires = 'pending'\n",
     ('unitsync.toml:2: unit "a": requires: must be "started", "completed" or "finished", '
     'not "pending"')),
    ("[units.a]\nrun = 'x'\ntimeout = '5q'\n",
     ("unitsync.toml:3: unit \"a\": timeout: invalid duration '5q': use e.g. 30s, 5m, 1h30m, "
     "250ms, or 0 for no timeout")),
    ("[units.a]\nrun = 'x'\nkill_after = -1\n",
     ("unitsync.toml:3: unit \"a\": kill_after: invalid duration '-1': must be 0 (no timeout) "
     "or positive")),
    ("[units.a]\nrun = 'x'\nrun_timeout = true\n",
     ('unitsync.toml:3: unit "a": run_timeout: must be a duration such as "30s" or "5m", '
      "not true")),
    ("[units.a]\nrun = 'x'\nready = { tcp = '5432' }\n",
     ("unitsync.toml:3: unit \"a\": ready.tcp: invalid address '5432': use HOST:PORT, "
     "e.g. 127.0.0.1:5432")),
    ("[units.a]\nrun = 'x'\n[units.a.ready]\nlog = 'a('\n",
     ("unitsync.toml:4: unit \"a\": ready.log: invalid regular expression 'a(': missing ), "
     "unterminated subpattern at position 1")),
    ("[units.a]\nrun = 'x'\nready.http = 'ftp://x/'\n",
     ("unitsync.toml:3: unit \"a\": ready.http: invalid URL 'ftp://x/': use "
     "http://HOST[:PORT]/PATH or https://...")),
    ("[units.a]\nrun = 'x'\nready = { cmd = ' ' }\n",
     'unitsync.toml:3: unit "a": ready.cmd: needs a command'),
    ("[units.a]\nrun = 'x'\nready = { tcp = 5432 }\n",
     'unitsync.toml:3: unit "a": ready.tcp: must be a string, not 5432'),
    ("[units.a]\nrun = 'x'\nready = { timeout = '1m' }\n",
     'unitsync.toml:3: unit "a": ready: no probe: give log, tcp, http or cmd'),
    ("[units.a]\nrun = 'x'\nready = { cmd = 'true', interval = 0 }\n",
     'unitsync.toml:3: unit "a": ready.interval: must be more than 0'),
    ("[units.a]\nrun = 'x'\nready = { cmd = 'true', tpc = 'h:1' }\n",
     'unitsync.toml:3: unit "a": ready: unknown key "tpc" (did you mean "tcp"?)'),
    ("[units.a]\nrun = 'x'\nenv = { A = 1 }\n",
     'unitsync.toml:3: unit "a": env: "A" must be a string, not 1'),
    ("[units.a]\nrun = 'x'\nenv = { 'A=B' = 'c' }\n",
     "unitsync.toml:3: unit \"a\": env: invalid variable name 'A=B'"),
    ("[units.a]\nrun = 'x'\ncwd = ''\n",
     'unitsync.toml:3: unit "a": cwd: must be a directory (a string), not ""'),
    ("[units.a]\ncwd = 'x'\n",
     ('unitsync.toml:2: unit "a": "cwd" needs "run" (a unit without run is reported by '
     "another process: unitsync complete a)")),
    ("[units.a]\n[groups]\nsetup = ['a', 'b']\n",
     'unitsync.toml:3: group "setup": unknown unit "b"'),
    ("[units.a]\n[groups]\nsetup = 'a'\nall = ['@setup']\n",
     'unitsync.toml:4: group "all": "@setup": a group lists units, not groups'),
    ("[units.a]\n[groups]\nsetup = 3\n",
     'unitsync.toml:3: group "setup": must be a list of unit names, not 3'),
    ("[units.a]\ngroups = 3\n", 'unitsync.toml:2: unit "a": unknown key "groups"'),
])
def test_each_problem_with_its_message_and_line(text: str, expected: str) -> None:
    assert expected in problems(text)


def test_conflicting_requirements_for_one_edge() -> None:
    assert problems("""\
        [units.app]
        after = [{ unit = "db", requires = "started" }]
        [units.db]
        before = ["app"]
        [units.web]
        after = ["db", { unit = "db", requires = "finished" }]
    """) == [
        ('unitsync.toml:4: conflicting requirements for one edge: app -> db is "started" in '
        "app's after and \"completed\" in db's before"),
        ('unitsync.toml:6: conflicting requirements for one edge: web -> db is "completed" in '
        "web's after and \"finished\" in web's after"),
    ]


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    assert problems("""\
        [units.git]
        run = ["git", 1]
        aftr = ["ssh-key"]
        [units.app]
        run = "npm run dev"
        after = ["gti"]
        timeout = "soon"
        ready = { tcp = "localhost" }
        [groups]
        setup = ["git", "dotfiles"]
    """) == [
        ('unitsync.toml:2: unit "git": "run" must be a non-empty string (run by sh -c) or a '
        "non-empty list of strings (the command and its arguments, no shell), not a list"),
        'unitsync.toml:3: unit "git": unknown key "aftr" (did you mean "after"?)',
        'unitsync.toml:6: unit "app": after: unknown unit "gti" (did you mean "git"?)',
        ("unitsync.toml:7: unit \"app\": timeout: invalid duration 'soon': use e.g. 30s, 5m, "
        "1h30m, 250ms, or 0 for no timeout"),
        ("unitsync.toml:8: unit \"app\": ready.tcp: invalid address 'localhost': use "
        "HOST:PORT, e.g. 127.0.0.1:5432"),
        'unitsync.toml:10: group "setup": unknown unit "dotfiles"',
    ]


def test_a_bad_run_is_not_also_a_missing_one() -> None:
    assert problems("[units.a]\nrun = 3\nready = { cmd = 'true' }\n") == [
        ('unitsync.toml:2: unit "a": "run" must be a non-empty string (run by sh -c) or a '
        "non-empty list of strings (the command and its arguments, no shell), not 3")
    ]


def test_cycles_are_reported_whole_and_apart() -> None:
    text = """\
        [units.a]
        after = ["b"]
        [units.b]
        after = ["c"]
        [units.c]
        after = ["a"]
        [units.solo]
        after = ["@self"]
        [groups]
        self = ["solo"]
    """
    assert problems(text) == [
        "unitsync.toml:1: dependency cycle refused: a -> b -> c -> a",
        "unitsync.toml:7: dependency cycle refused: solo -> solo",
    ]
    with pytest.raises(WorkspaceError) as caught:
        parse(textwrap.dedent(text))
    assert caught.value.only_cycles
    assert [p.cycle for p in caught.value.problems] == [("a", "b", "c", "a"), ("solo", "solo")]


def test_a_cycle_through_before_starts_at_the_first_unit_of_the_file() -> None:
    assert problems("""\
        [units.x]
        [units.app]
        after = ["db"]
        before = ["x"]
        [units.db]
        [units.y]
        after = ["x"]
        before = ["db"]
    """) == ["unitsync.toml:1: dependency cycle refused: x -> app -> db -> y -> x"]


def test_a_cycle_among_other_problems_is_listed_last_and_not_only_cycles() -> None:
    with pytest.raises(WorkspaceError) as caught:
        parse("[units.a]\nafter = ['a', 'b']\n")
    assert [str(p) for p in caught.value.problems] == [
        'unitsync.toml:2: unit "a": after: unknown unit "b"',
        "unitsync.toml:1: dependency cycle refused: a -> a",
    ]
    assert not caught.value.only_cycles


def test_load_reads_the_file_and_names_it_as_given(tmp_path: Path) -> None:
    (tmp_path / "ws.toml").write_text(EXAMPLE)
    assert load(tmp_path / "ws.toml").path == tmp_path / "ws.toml"
    (tmp_path / "bad.toml").write_bytes(b"[units.a]\nrun = '\xff'\n")
    with pytest.raises(WorkspaceError) as caught:
        load(tmp_path / "bad.toml")
    assert str(caught.value).startswith(f"{tmp_path}/bad.toml: not UTF-8 text: ")
    with pytest.raises(WorkspaceError) as caught:
        load(tmp_path / "none.toml")
    assert caught.value.problems == (
        Problem(f"{tmp_path}/none.toml", None, "cannot read it: No such file or directory"),
    )


# --- unitsync check -------------------------------------------------------------------------


def test_check_prints_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "unitsync.toml").write_text(EXAMPLE)
    monkeypatch.chdir(tmp_path)
    assert usage("check") == (OK, "6 units, 7 edges, 1 group: ok\n", "")
    (tmp_path / "one.toml").write_text("[units.a]\nafter = ['b']\n[units.b]\n")
    assert usage("check", "-f", "one.toml") == (OK, "2 units, 1 edge, 0 groups: ok\n", "")


def test_check_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "ws.toml"
    path.write_text("[units.a]\naftr = []\n[units.b]\nafter = ['a', 'c']\n")
    assert usage("check", "--file", str(path)) == (USAGE, "", (
        f'unitsync: {path}:2: unit "a": unknown key "aftr" (did you mean "after"?)\n'
        f'unitsync: {path}:4: unit "b": after: unknown unit "c"\n'
    ))


def test_check_exits_5_for_a_cycle_alone_and_2_with_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "ws.toml"
    path.write_text("[units.a]\nafter = ['b']\n[units.b]\nafter = ['a']\n")
    assert usage("check", "-f", str(path)) == (
        CYCLE, "", f"unitsync: {path}:1: dependency cycle refused: a -> b -> a\n"
    )
    path.write_text("[units.a]\nafter = ['b']\n[units.b]\nafter = ['a']\nrun = 3\n")
    code, _, stderr = usage("check", "-f", str(path))
    assert code == USAGE
    assert stderr.splitlines()[-1] == (
        f"unitsync: {path}:1: dependency cycle refused: a -> b -> a"
    )


def test_check_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert usage("check") == (
        USAGE, "", f"unitsync: no unitsync.toml in {tmp_path} (use -f FILE)\n"
    )
    assert usage("check", "-f", "gone.toml") == (
        USAGE, "", "unitsync: gone.toml: cannot read it: No such file or directory\n"
    )


def test_check_as_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "unitsync.toml").write_text(EXAMPLE)
    done = subprocess.run(UNITSYNC + ["check"], cwd=tmp_path, capture_output=True, text=True,
                          check=False, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (
        OK, "6 units, 7 edges, 1 group: ok\n", ""
    )
