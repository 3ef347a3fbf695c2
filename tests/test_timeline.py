"""coordinator._timeline and cli._history_text: a scripted run with a fake clock (explicit
times), analysed and printed. See tests/history_support.py for the run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from cli._history_text import (
    blame_json,
    blame_text,
    chain_json,
    chain_text,
    duration,
    history_json,
    history_text,
    timeline_json,
    timeline_text,
)
from coordinator import Status
from coordinator._timeline import Link, Met, blame, critical_chain, runs, timeline

from .history_support import T0, C, K, N, P, S, edge, run_events, status

HEADER = [
    ('The time when a unit reached what its dependent required is printed after the "@" '
     "character"),
    ("(for the first unit: its outcome, or its start if still running), counted from the first "
     "event."),
    'The time the unit took from its start to then is printed after the "+" character.',
    "",
]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC for the test (TIME columns), restored after."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def window() -> list:
    """The run from seq 13 on: it opens as deploy is skipped."""
    return [e for e in run_events() if e.seq >= 13]


# --- analysis ------------------------------------------------------------------------------


def test_runs_of_the_scripted_run() -> None:
    by_unit = {r.unit: r for r in runs(run_events())}
    assert list(by_unit) == ["repo", "git", "claude", "lint", "deploy", "docs"]
    git = by_unit["git"]
    assert (git.since, git.started, git.ended, git.status) == (T0, T0 + 0.1, T0 + 2.1, C)
    claude = by_unit["claude"]
    assert (claude.since, claude.started, claude.ended) == (T0 + 0.01, T0 + 2.104, T0 + 4.604)
    assert claude.start is not None
    # the edge on docs came after the start: not a requirement of that start
    assert claude.start.requirements == (
        Met(depends_on="git", requires=C, at=T0 + 2.1, seq=14),
    )
    assert claude.start.critical == claude.start.waited_for == claude.start.requirements[0]
    repo = by_unit["repo"]
    assert (repo.started, repo.ended, repo.status) == (T0 + 0.05, None, S)


def test_a_rerun_is_the_last_run_and_waits_from_the_previous_end() -> None:
    lint = {r.unit: r for r in runs(run_events())}["lint"]
    assert (lint.first_seen, lint.since, lint.started, lint.ended) == (
        T0 + 0.2, T0 + 1.3, T0 + 5.0, T0 + 5.5)
    assert (lint.status, lint.reason) == (C, "")


def test_a_skipped_unit_never_started_and_keeps_its_reason() -> None:
    deploy = {r.unit: r for r in runs(run_events())}["deploy"]
    assert (deploy.since, deploy.started, deploy.ended) == (T0 + 0.25, None, T0 + 1.3)
    assert (deploy.status, deploy.reason) == (K, "dependency lint failed")


def test_a_unit_only_mentioned_as_a_dependency() -> None:
    docs = {r.unit: r for r in runs(run_events())}["docs"]
    assert (docs.first_seen, docs.since, docs.started, docs.status) == (None, None, None, N)
    assert "docs" not in {row.unit for row in blame(run_events())}


def test_a_requirement_met_before_the_window_is_known_but_not_waited_for() -> None:
    events = [
        edge(7, 1.0, "app", "db", S, P),  # app and db existed before the window
        status(8, 2.0, "app", P, S),
    ]
    (app, db) = runs(events)
    assert app.start is not None
    assert app.start.requirements == (Met(depends_on="db", requires=S, at=None, seq=None),)
    assert app.start.critical is None and app.start.waited_for is None
    assert app.since == T0 + 1.0  # pending when the window opened
    assert (db.unit, db.first_seen) == ("db", None)


def test_a_requirement_met_before_registration_was_not_waited_for() -> None:
    events = [
        status(1, 0.0, "git", N, P), status(2, 0.1, "git", P, S), status(3, 1.0, "git", S, C),
        status(4, 2.0, "claude", N, P), edge(5, 2.0, "claude", "git", C, P),
        status(6, 2.5, "claude", P, S),
    ]
    claude = runs(events)[1].start
    assert claude is not None and claude.critical is not None
    assert claude.critical.depends_on == "git" and claude.waited_for is None
    assert timeline(events)[-1].start == claude


def test_the_critical_requirement_is_the_one_met_last() -> None:
    events = [
        status(1, 0.0, "a", N, P), status(2, 0.0, "b", N, P), status(3, 0.0, "x", N, P),
        edge(4, 0.0, "x", "a", C, P), edge(5, 0.0, "x", "b", S, P),
        status(6, 0.5, "b", P, S), status(7, 0.2, "a", P, S), status(8, 1.0, "a", S, C),
        status(9, 3.0, "b", S, C),  # b's requirement (started) was met at seq 6: stays met
        status(10, 3.0, "x", P, S),
    ]
    start = runs(events)[2].start
    assert start is not None and start.critical is not None
    assert (start.critical.depends_on, start.critical.at) == ("a", T0 + 1.0)


def test_a_dependency_rerun_makes_its_requirement_met_again_later() -> None:
    events = [
        status(1, 0.0, "a", N, P), status(2, 0.0, "x", N, P), edge(3, 0.0, "x", "a", C, P),
        status(4, 0.1, "a", P, S), status(5, 1.0, "a", S, C),
        status(6, 2.0, "a", C, S), status(7, 4.0, "a", S, C),  # re-run: unmet 2.0 -> 4.0
        status(8, 4.5, "x", P, S),
    ]
    assert runs(events)[1].start.critical == Met(depends_on="a", requires=C, at=T0 + 4, seq=7)
    assert critical_chain(events, "x") == [
        Link(unit="x", at=4.5, took=0.0),
        Link(unit="a", at=4.0, took=2.0, requires=C),
    ]


def test_window_starting_mid_history() -> None:
    by_unit = {r.unit: r for r in runs(window())}
    # git was running when the window opened: taken as started then, with no Start
    git = by_unit["git"]
    assert (git.since, git.started, git.ended, git.start) == (T0 + 1.3, T0 + 1.3, T0 + 2.1, None)
    # claude's edge on git is before the window: its start waited for nothing known
    claude = by_unit["claude"]
    assert claude.start is not None and claude.start.requirements == ()
    assert claude.since == T0 + 1.3


def test_blame_rows() -> None:
    rows = blame(run_events())
    assert [r.unit for r in rows] == ["repo", "claude", "git", "lint", "deploy"]
    got = {r.unit: (r.waiting, r.running, r.total, r.status, r.ongoing) for r in rows}
    assert got["repo"] == pytest.approx((0.05, 5.45, 5.5, S, True))
    assert got["claude"] == pytest.approx((2.094, 2.5, 4.594, C, False))
    assert got["lint"] == pytest.approx((3.7, 0.5, 4.2, C, False))
    assert got["deploy"] == pytest.approx((1.05, None, 1.05, K, False))
    # `now` closes what is still open
    assert blame(run_events(), now=T0 + 10)[0].running == pytest.approx(9.95)


def test_a_pending_unit_is_still_waiting() -> None:
    (row,) = blame([status(1, 0.0, "x", N, P)], now=T0 + 3)
    assert (row.waiting, row.running, row.ongoing, row.status) == (3.0, None, True, P)


def test_critical_chain() -> None:
    assert critical_chain(run_events(), "claude") == [
        Link(unit="claude", at=pytest.approx(4.604), took=pytest.approx(2.5)),
        Link(unit="git", at=pytest.approx(2.1), took=pytest.approx(2.0), requires=C),
        Link(unit="repo", at=pytest.approx(0.05), took=0.0, requires=S),
    ]
    # default: the unit whose outcome came last (lint's re-run, which waited for nothing)
    assert critical_chain(run_events()) == [
        Link(unit="lint", at=pytest.approx(5.5), took=pytest.approx(0.5))]
    # a still-running unit: at its start; a skipped one: at its skip, never started
    assert critical_chain(run_events(), "repo") == [
        Link(unit="repo", at=pytest.approx(0.05), took=0.0)]
    assert critical_chain(run_events(), "deploy") == [
        Link(unit="deploy", at=pytest.approx(1.3), took=None)]
    assert critical_chain(run_events(), "docs") == [Link(unit="docs", at=None, took=None)]
    assert critical_chain([]) == []
    with pytest.raises(ValueError, match="nobody"):
        critical_chain(run_events(), "nobody")


def test_timeline_rows() -> None:
    rows = timeline(run_events())
    assert [r.event.seq for r in rows] == list(range(1, 20))
    assert rows[14].elapsed == pytest.approx(2.104)
    start = rows[14].start
    assert start is not None and start.waited_for is not None
    assert start.waited_for.depends_on == "git"
    assert [r.start is not None for r in rows].count(True) == 5
    # events are taken in seq order whatever order they come in
    assert [r.event.seq for r in timeline(reversed(run_events()))] == list(range(1, 20))


# --- text and JSON -------------------------------------------------------------------------


def test_duration() -> None:
    assert duration(2.1044) == "2.104s"
    assert duration(0.0) == "0.000s"
    assert duration(63.2, digits=1) == "1min 3.2s"
    assert duration(59.9996) == "1min 0.000s"
    assert duration(3725.5) == "1h 2min 5.500s"
    assert duration(-0.25, digits=1) == "-0.2s"


def test_status_history_text(utc: None) -> None:
    assert history_text(run_events(), "claude").splitlines() == [
        "History:",
        "TIME          ELAPSED  EVENT",
        "22:13:20.010  +0.0s    registered (pending)",
        "22:13:20.010  +0.0s    depends on git (completed)",
        "22:13:22.104  +2.1s    pending -> started",
        "22:13:23.000  +3.0s    depends on docs (started)",
        "22:13:24.604  +4.6s    started -> completed",
    ]
    assert history_text(run_events(), "lint").splitlines()[-3:] == [
        "22:13:21.300  +1.1s    started -> failed: exit code 1",
        "22:13:25.000  +4.8s    failed -> started",
        "22:13:25.500  +5.3s    started -> completed",
    ]
    assert history_text(run_events(), "docs") == "History:\nNo events"


def test_status_history_json() -> None:
    rows = json.loads(history_json(run_events(), "deploy"))
    assert rows == [
        {"seq": 9, "time": T0 + 0.25, "elapsed": 0.0, "unit_name": "deploy",
         "event": "registered (pending)", "old_status": "", "new_status": "pending",
         "reason": "", "depends_on": "", "required_status": "", "waited": None,
         "waited_for": ""},
        {"seq": 10, "time": T0 + 0.25, "elapsed": 0.0, "unit_name": "deploy",
         "event": "depends on lint (completed)", "old_status": "pending",
         "new_status": "pending", "reason": "", "depends_on": "lint",
         "required_status": "completed", "waited": None, "waited_for": ""},
        {"seq": 13, "time": T0 + 1.3, "elapsed": 1.05, "unit_name": "deploy",
         "event": "pending -> skipped: dependency lint failed", "old_status": "pending",
         "new_status": "skipped", "reason": "dependency lint failed", "depends_on": "",
         "required_status": "", "waited": None, "waited_for": ""},
    ]
    assert json.loads(history_json(run_events(), "docs")) == []


def test_timeline_text(utc: None) -> None:
    lines = timeline_text(run_events()).splitlines()
    assert lines[0] == "TIME          ELAPSED  UNIT    EVENT"
    assert lines[7] == "22:13:20.100  +0.1s    git     pending -> started (waited 0.1s for repo)"
    assert lines[13] == "22:13:21.300  +1.3s    deploy  pending -> skipped: dependency lint failed"
    assert lines[15] == "22:13:22.104  +2.1s    claude  pending -> started (waited 2.1s for git)"
    assert lines[18] == "22:13:25.000  +5.0s    lint    failed -> started"
    assert len(lines) == 20 and max(map(len, lines)) <= 100
    assert timeline_text([]) == "No events"
    # a window: elapsed from its own first event
    assert timeline_text(window()).splitlines()[3] == (
        "22:13:22.104  +0.8s    claude  pending -> started")


def test_timeline_json() -> None:
    rows = json.loads(timeline_json(run_events()))
    assert len(rows) == 19
    assert rows[14] | {"time": 0} == {
        "seq": 15, "time": 0, "elapsed": 2.104, "unit_name": "claude",
        "event": "pending -> started", "old_status": "pending", "new_status": "started",
        "reason": "", "depends_on": "", "required_status": "", "waited": 2.094,
        "waited_for": "git",
    }


def test_blame_text() -> None:
    assert blame_text(run_events()).splitlines() == [
        "RUNNING  WAITING   TOTAL  UNIT    STATUS",
        " 5.450s   0.050s  5.500s  repo    still running",
        " 2.500s   2.094s  4.594s  claude  completed",
        " 2.000s   0.100s  2.100s  git     completed",
        " 0.500s   3.700s  4.200s  lint    completed",
        "      -   1.050s  1.050s  deploy  skipped",
    ]
    assert blame_text([status(1, 0.0, "x", N, P)], now=T0 + 63.25).splitlines()[1] == (
        "      -  1min 3.250s  1min 3.250s  x     still pending")
    assert blame_text([]) == "No units"


def test_blame_json() -> None:
    rows = json.loads(blame_json(run_events()))
    assert rows[0] == {"unit_name": "repo", "status": "started", "waiting": 0.05,
                       "running": 5.45, "total": 5.5, "ongoing": True}
    assert rows[-1] == {"unit_name": "deploy", "status": "skipped", "waiting": 1.05,
                        "running": None, "total": 1.05, "ongoing": False}


def test_critical_chain_text() -> None:
    assert chain_text(run_events(), "claude").splitlines() == [
        *HEADER,
        "claude @4.604s +2.500s",
        "└─git @2.100s +2.000s",
        "  └─repo @0.050s",
    ]
    assert chain_text(window(), "claude").splitlines()[-1] == "claude @3.304s +2.500s"
    assert chain_text([edge(1, 0.0, "a", "b", S, P)], "b").splitlines()[-1] == (
        "b @before the window")
    assert chain_text([]) == "No events"


def test_critical_chain_json() -> None:
    assert json.loads(chain_json(run_events(), "claude")) == [
        {"unit_name": "claude", "at": 4.604, "took": 2.5, "required_status": ""},
        {"unit_name": "git", "at": 2.1, "took": 2.0, "required_status": "completed"},
        {"unit_name": "repo", "at": 0.05, "took": 0.0, "required_status": "started"},
    ]


def test_names_and_reasons_are_printed_as_given() -> None:
    events = [status(1, 0.0, "a<&\"b", N, P), status(2, 1.0, "a<&\"b", P, Status.FAILED, "x\ny")]
    assert blame_text(events).splitlines()[1].split()[3] == 'a<&"b'
    assert json.loads(timeline_json(events))[1]["reason"] == "x\ny"
