"""One unit of the workspace file: its keys, what each may hold, and the values they become.

The keys are ``unitsync run``'s options, spelled as in TOML (an underscore where the option has
a dash): ``run`` (the command), ``after``, ``before``, ``requires``, ``ready`` (the
``--ready-*`` probes), ``timeout`` (``--timeout``: the wait for the dependencies),
``run_timeout`` (``--run-timeout``), ``kill_after``, ``cwd`` and ``env``.
Values are checked with the command line's own parsers (``parse_duration``, ``parse_address``,
``parse_regex``, ``parse_url``, ``validate_name``), so a value ``run`` refuses is refused here
with the same words. Every problem is reported (``report(message, *key_path)``) and reading
goes on with a default, so that one pass finds them all.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from coordinator import InvalidName, Status, validate_name

from ._duration import parse_duration
from ._probes import (
    CommandProbe,
    HttpProbe,
    LogProbe,
    Probe,
    TcpProbe,
    parse_address,
    parse_regex,
    parse_url,
)

__all__ = [
    "KILL_AFTER",
    "READY_INTERVAL",
    "READY_KEYS",
    "REQUIREMENTS",
    "UNIT_KEYS",
    "ReadySpec",
    "Reference",
    "Report",
    "UnitSpec",
    "did_you_mean",
    "read_groups",
    "read_unit",
]

#: The keys of a ``[units.NAME]`` table, and of its ``ready`` table.
UNIT_KEYS = ("run", "after", "before", "requires", "ready", "timeout", "run_timeout", "kill_after",
             "cwd", "env")
READY_KEYS = ("log", "tcp", "http", "cmd", "interval", "timeout")
_REFERENCE_KEYS = ("unit", "requires")
#: The keys that only mean something to a unit with a ``run``.
_NEED_RUN = ("ready", "timeout", "run_timeout", "kill_after", "cwd", "env")

#: ``run``'s defaults for ``--kill-after`` and ``--ready-interval`` (a test pins them equal).
KILL_AFTER = 10.0
READY_INTERVAL = 0.5

#: What an edge may require, by its spelling.
REQUIREMENTS = {s.value: s for s in (Status.STARTED, Status.COMPLETED, Status.FINISHED)}


class Report(Protocol):
    """Where problems go: ``report('unit "x": ...', "units", "x", "after")`` — the message and
    the key path it is about (for its line)."""

    def __call__(self, message: str, *where: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadySpec:
    """A unit's readiness probes (``ready``), parsed, with how often they are tried and how
    long the unit has to pass them (0: no limit): ``run``'s ``--ready-*`` options."""

    probes: tuple[Probe, ...] = ()
    interval: float = READY_INTERVAL
    timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class Reference:
    """One entry of ``after`` or ``before`` as written: a unit, ``@group`` or ``*``, with the
    entry's own requirement (None: the default, see ``_workspace``)."""

    name: str
    requires: Status | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitSpec:
    """One ``[units.NAME]`` table, checked. ``run`` is a shell command (``sh -c``), an argv,
    or None: a unit some outside script reports (``unitsync complete NAME``). ``line`` is where
    the unit's table starts (None if the scan did not find it, see ``_toml_lines``)."""

    name: str
    run: str | tuple[str, ...] | None = None
    after: tuple[Reference, ...] = ()
    before: tuple[Reference, ...] = ()
    requires: Status = Status.COMPLETED
    ready: ReadySpec = ReadySpec()
    #: How long ``up`` lets the command wait for its dependencies (0: as long as it takes).
    timeout: float = 0.0
    #: How long the command may run (0: no limit).
    run_timeout: float = 0.0
    kill_after: float = KILL_AFTER
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    line: int | None = None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean "after"?)`` when one of ``choices`` is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def read_unit(name: str, table: object, base: Path, line: int | None,
              report: Report) -> UnitSpec:
    """The :class:`UnitSpec` of ``[units.NAME]`` = ``table``, its problems reported (a bad
    value is replaced by its default). Relative ``cwd`` values are taken from ``base``."""
    unit = _UnitReader(name, report)
    unit.check_name()  # a bad name is reported; the rest is read all the same
    if not isinstance(table, dict):
        unit.problem(f"must be a table ([units.{name}]), not {_kind(table)}")
        return UnitSpec(name=name, line=line)
    for key in table:
        if key not in UNIT_KEYS:
            unit.problem(f'unknown key "{key}"{did_you_mean(key, UNIT_KEYS)}', key)
    run = unit.run(table.get("run"))
    if "run" not in table:
        for key in _NEED_RUN:
            if key in table:
                unit.problem(f'"{key}" needs "run" (a unit without run is reported by '
                             f"another process: unitsync complete {name})", key)
    return UnitSpec(
        name=name,
        run=run,
        after=unit.references(table.get("after", []), "after"),
        before=unit.references(table.get("before", []), "before"),
        requires=unit.requirement(table.get("requires", "completed"), "requires"),
        ready=unit.ready(table.get("ready")),
        timeout=unit.duration(table.get("timeout"), "timeout", default=0.0),
        run_timeout=unit.duration(table.get("run_timeout"), "run_timeout", default=0.0),
        kill_after=unit.duration(table.get("kill_after"), "kill_after", default=KILL_AFTER),
        cwd=unit.cwd(table.get("cwd"), base),
        env=unit.env(table.get("env", {})),
        line=line,
    )


def read_groups(raw: object, units: Mapping[str, object], report: Report
                ) -> dict[str, tuple[str, ...]]:
    """``[groups]``: each group's members, checked to be units of the file (duplicates
    dropped); problems reported."""
    if not isinstance(raw, dict):
        report(f'"groups" must be a table (name = ["unit", ...]), not {_kind(raw)}', "groups")
        return {}
    groups: dict[str, tuple[str, ...]] = {}
    for group, members in raw.items():
        def problem(message: str, group: str = group) -> None:
            report(f'group "{group}": {message}', "groups", group)

        _check_name(group, "group", problem)
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            problem(f"must be a list of unit names, not {_kind(members)}")
            continue
        for member in members:
            if member.startswith("@"):
                problem(f'"{member}": a group lists units, not groups')
            elif member not in units:
                problem(f'unknown unit "{member}"{did_you_mean(member, units)}')
        groups[group] = tuple(dict.fromkeys(m for m in members if m in units))
    return groups


class _UnitReader:
    """Reads the keys of one unit's table, reporting each problem with the unit's name."""

    def __init__(self, name: str, report: Report) -> None:
        self.name = name
        self._report = report

    def problem(self, message: str, *key: str) -> None:
        self._report(f'unit "{self.name}": {message}', "units", self.name, *key)

    def check_name(self) -> bool:
        """Whether the unit's name is valid (``validate_name``, and no ``@`` or ``*``)."""
        if self.name.startswith("@") or self.name == "*":
            self.problem('a unit name may not start with "@" (a group) or be "*" (every unit)')
            return False
        return _check_name(self.name, "unit", self.problem)

    def run(self, value: object) -> str | tuple[str, ...] | None:
        """``run``: a non-empty string (``sh -c``) or a non-empty list of strings (an argv)."""
        if value is None:
            return None
        if isinstance(value, str) and value.strip():
            return value
        if (isinstance(value, list) and value and all(isinstance(v, str) for v in value)
                and value[0]):
            return tuple(value)
        self.problem('"run" must be a non-empty string (run by sh -c) or a non-empty list of '
                     f"strings (the command and its arguments, no shell), not {_kind(value)}",
                     "run")
        return None

    def requirement(self, value: object, *key: str) -> Status:
        """``requires``: started, completed or finished (completed if not one of them)."""
        if isinstance(value, str) and value in REQUIREMENTS:
            return REQUIREMENTS[value]
        self.problem(f'{".".join(key)}: must be "started", "completed" or "finished", '
                     f"not {_kind(value)}", *key)
        return Status.COMPLETED

    def references(self, value: object, key: str) -> tuple[Reference, ...]:
        """``after``/``before``: unit names, ``@group``, (before) ``*``, or tables with
        ``unit`` and ``requires``; a single string counts as a list of one."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.problem(f"{key}: must be a list of unit names, not {_kind(value)}", key)
            return ()
        found = [self._reference(entry, key) for entry in value]
        return tuple(ref for ref in found if ref is not None)

    def _reference(self, entry: object, key: str) -> Reference | None:
        requires: Status | None = None
        if isinstance(entry, dict):
            for extra in entry.keys() - set(_REFERENCE_KEYS):
                self.problem(f'{key}: unknown key "{extra}" in an entry'
                             f"{did_you_mean(extra, _REFERENCE_KEYS)}", key)
            if "requires" in entry:
                requires = self.requirement(entry["requires"], key, "requires")
            if "unit" not in entry:
                self.problem(f'{key}: an entry table needs "unit" (a unit name or "@group")',
                             key)
                return None
            entry = entry["unit"]
        if not isinstance(entry, str):
            self.problem(f'{key}: an entry is a unit name, "@group" or a table '
                         f'{{unit = "...", requires = "..."}}, not {_kind(entry)}', key)
            return None
        name, kind = (entry[1:], "group") if entry.startswith("@") else (entry, "unit")
        def problem(message: str) -> None:
            self.problem(f"{key}: {message}", key)

        if entry != "*" and not _check_name(name, kind, problem):
            return None
        return Reference(entry, requires)

    def duration(self, value: object, *key: str, default: float) -> float:
        """A duration (``"30s"``, ``"5m"``, or a number of seconds); ``default`` if the key is
        absent (None) or after reporting a value that is not a duration."""
        if value is None:
            return default
        try:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise TypeError(f'must be a duration such as "30s" or "5m", not {_kind(value)}')
            return parse_duration(str(value))
        except (TypeError, ValueError) as exc:
            self.problem(f"{'.'.join(key)}: {exc}", *key)
            return default

    def ready(self, value: object) -> ReadySpec:
        """``ready``: the probes (``log``, ``tcp``, ``http``, ``cmd``; all must pass),
        ``interval`` and ``timeout``. None (no ``ready``): no probe."""
        if value is None:
            return ReadySpec()
        if not isinstance(value, dict):
            self.problem(f"ready: must be a table such as {{ tcp = \"127.0.0.1:5432\" }}, "
                         f"not {_kind(value)}", "ready")
            return ReadySpec()
        for key in value:
            if key not in READY_KEYS:
                self.problem(f'ready: unknown key "{key}"{did_you_mean(key, READY_KEYS)}',
                             "ready", key)
        probes: list[Probe] = []
        makers: list[tuple[str, Callable[[str], Probe]]] = [
            ("log", lambda text: LogProbe(parse_regex(text))),
            ("tcp", lambda text: TcpProbe(*parse_address(text))),
            ("http", lambda text: HttpProbe(parse_url(text))),
            ("cmd", self._command_probe),
        ]
        for key, make in makers:
            if key not in value:
                continue
            try:
                if not isinstance(value[key], str):
                    raise TypeError(f"must be a string, not {_kind(value[key])}")
                probes.append(make(value[key]))
            except (TypeError, ValueError) as exc:
                self.problem(f"ready.{key}: {exc}", "ready", key)
        if not any(key in value for key, _ in makers):
            self.problem("ready: no probe: give log, tcp, http or cmd", "ready")
        interval = self.duration(value.get("interval"), "ready", "interval",
                                 default=READY_INTERVAL)
        if interval == 0:
            self.problem("ready.interval: must be more than 0", "ready", "interval")
            interval = READY_INTERVAL
        timeout = self.duration(value.get("timeout"), "ready", "timeout", default=0.0)
        return ReadySpec(probes=tuple(probes), interval=interval, timeout=timeout)

    @staticmethod
    def _command_probe(text: str) -> Probe:
        if not text.strip():
            raise ValueError("needs a command")
        return CommandProbe(text)

    def cwd(self, value: object, base: Path) -> Path | None:
        """``cwd``: a directory, ``~`` expanded, relative to the workspace file's directory."""
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problem(f"cwd: must be a directory (a string), not {_kind(value)}", "cwd")
            return None
        return base / Path(value).expanduser()

    def env(self, value: object) -> Mapping[str, str]:
        """``env``: a table of strings, added to the environment of the unit's command."""
        if not isinstance(value, dict):
            self.problem(f"env: must be a table of strings (NAME = \"value\"), not {_kind(value)}",
                         "env")
            return types.MappingProxyType({})
        for name, text in value.items():
            if not name or "=" in name or "\0" in name:
                self.problem(f"env: invalid variable name {name!r}", "env", name)
            if not isinstance(text, str):
                self.problem(f'env: "{name}" must be a string, not {_kind(text)}', "env", name)
        return types.MappingProxyType({n: t for n, t in value.items() if isinstance(t, str)})


def _check_name(name: str, kind: str, problem: Callable[[str], None]) -> bool:
    """``validate_name``'s verdict on a unit's or a group's name, reported as ``problem``."""
    try:
        validate_name(name)
    except InvalidName as exc:
        shown = name if len(name) <= 64 else name[:61] + "..."
        problem(f"invalid {kind} name {shown!r}: {exc.why}")
        return False
    return True


def _kind(value: Any) -> str:
    """A value as a message shows it: ``"pending"``, ``3``, ``a table``, ``an empty list``."""
    match value:
        case str():
            return f'"{value}"'
        case bool():
            return str(value).lower()
        case int() | float():
            return repr(value)
        case dict():
            return "a table"
        case []:
            return "an empty list"
        case list():
            return "a list"
        case _:
            return type(value).__name__
