"""The history through the command line: ``status``'s History, ``timeline`` (text, JSON, SVG,
``--watch``, ``--since``), ``blame``, ``critical-chain``, ``why``'s durations and ``watch
--since`` — against a real ``unitsync serve``, killed with ``kill -9`` and started again."""

from __future__ import annotations

import json
import signal
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import trio

from coordinator import Coordinator, Status

from .cli_support import (
    OK,
    USAGE,
    Served,
    background,
    env_for,
    read_line,
    reap,
    start_serve,
    table,
    usage,
)
from .waits import WAIT

ERROR = 1

async def play(coord: Coordinator) -> None:
    """git -> claude, git failing once and re-run, report (needing claude finished) skipped."""
    claude, git, report = coord.unit("claude"), coord.unit("git"), coord.unit("report")
    await claude.want("git")
    await report.want("claude", requires=Status.FINISHED)
    await git.start()
    await git.fail("exit code 1")
    await report.skip("not needed")
    await git.start()
    await git.complete()
    await claude.start()
    await claude.complete()

TIMELINE = [
    ("claude", "registered (pending)"),
    ("claude", "depends on git (completed)"),
    ("report", "registered (pending)"),
    ("report", "depends on claude (finished)"),
    ("git", "not registered -> started"),
    ("git", "started -> failed: exit code 1"),
    ("report", "pending -> skipped: not needed"),
    ("git", "failed -> started"),
    ("git", "started -> completed"),
    ("claude", "pending -> started"),
    ("claude", "started -> completed"),
]


async def test_the_history_commands_after_kill_9_and_a_restart(sock_dir: Path) -> None:
    path, journal = sock_dir / "unitsync.sock", sock_dir / "unitsync.state"
    served = Served(path, env_for(path))
    with trio.fail_after(WAIT * 4):
        server = await start_serve(path, served.env, "--state", str(journal))
        try:
            before = time.time()
            async with served.client() as client:  # the scene; the commands read it below
                await play(client)
            after = time.time()
        finally:
            server.kill()  # kill -9: nothing is flushed on the way out
            await reap(server)
        server = await start_serve(path, served.env, "--state", str(journal))
        try:
            status = await served.run("status", "claude", check=True)
            status_json = json.loads((await served.run("status", "claude", "-o", "json")).stdout)
            timeline = json.loads((await served.run("timeline", "-o", "json")).stdout)
            text = (await served.run("timeline", check=True)).stdout
            blame = json.loads((await served.run("blame", "-o", "json")).stdout)
            chain = json.loads((await served.run("critical-chain", "-o", "json")).stdout)
            chain_text = (await served.run("critical-chain", "claude", check=True)).stdout
            svg = (await served.run("timeline", "-o", "svg", check=True)).stdout
            since = json.loads((await served.run("timeline", "-o", "json", "--since", "9")).stdout)
            missing = await served.run("critical-chain", "nobody")
            await served.run("want", "late", "claude", check=True)
            later = json.loads((await served.run("timeline", "-o", "json", "--since", "11")).stdout)
        finally:
            await reap(server)

    # status: the unit's own events, coder's layout; the start says what it waited for
    history = status.stdout.split("History:\n", 1)[1]
    rows = table(history)
    assert rows[0] == ["TIME", "ELAPSED", "EVENT"]
    assert [" ".join(row[2:]) for row in rows[1:]] == [
        "registered (pending)", "depends on git (completed)", "pending -> started",
        "started -> completed",
    ]
    assert rows[1][1] == "+0.0s"
    assert [e["event"] for e in status_json["history"]] == [
        "registered (pending)", "depends on git (completed)", "pending -> started",
        "started -> completed",
    ]
    assert status_json["history"][2]["waited_for"] == "git"
    assert status_json["status"] == "completed"

    # timeline: every event, in order, survived the kill
    assert [(e["unit_name"], e["event"]) for e in timeline] == TIMELINE
    assert [e["seq"] for e in timeline] == list(range(1, 12))
    assert all(before - 0.01 <= e["time"] <= after + 0.01 for e in timeline)
    assert [e["elapsed"] for e in timeline] == sorted(e["elapsed"] for e in timeline)
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "ELAPSED", "UNIT", "EVENT"] and len(lines) == 12
    assert lines[10].endswith("for git)") and "pending -> started (waited" in lines[10]

    # blame: slowest running first; report never ran
    assert {row["unit_name"] for row in blame} == {"claude", "git", "report"}
    assert blame[-1]["unit_name"] == "report" and blame[-1]["running"] is None
    assert all(row["total"] >= (row["running"] or 0) for row in blame)

    # critical chain: claude (the last to finish) waited for git
    assert [link["unit_name"] for link in chain] == ["claude", "git"]
    assert chain[1]["required_status"] == "completed"
    assert chain[0]["at"] >= chain[1]["at"] > 0
    assert chain_text.splitlines()[-2].startswith("claude @")
    assert chain_text.splitlines()[-1].startswith("└─git @")
    assert missing.returncode == ERROR
    assert missing.stderr == 'unitsync: unit "nobody" has no event in the kept history\n'

    # the picture: one row per unit, bars where they ran
    root = ET.fromstring(svg)
    units = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "unit" in g.get("class", "").split()]
    assert sorted(g.get("data-unit") for g in units) == ["claude", "git", "report"]

    # --since SEQ: the events after it; after the restart seq went on from the journal's
    assert [e["seq"] for e in since] == [10, 11]
    assert [(e["seq"], e["unit_name"], e["event"]) for e in later] == [
        (12, "late", "registered (pending)"), (13, "late", "depends on claude (completed)"),
    ]


async def test_timeline_watch_prints_each_new_row_as_it_happens(fresh_served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        await fresh_served.run("want", "claude", "git", check=True)
        async with background(fresh_served, "timeline", "--watch") as watch:
            assert watch.stdout is not None and watch.stderr is not None
            assert await read_line(watch.stderr) == f"unitsync: watching {fresh_served.path}\n"
            header = await read_line(watch.stdout)
            first = [await read_line(watch.stdout) for _ in range(2)]
            await fresh_served.run("start", "git", check=True)
            await fresh_served.run("complete", "git", check=True)
            await fresh_served.run("start", "claude", check=True)
            live = [await read_line(watch.stdout) for _ in range(3)]
            watch.send_signal(signal.SIGTERM)
            assert await watch.wait() == OK
    assert header.split() == ["TIME", "ELAPSED", "UNIT", "EVENT"]
    assert [line.split(None, 3)[2:] for line in first] == [
        ["claude", "registered (pending)\n"], ["claude", "depends on git (completed)\n"],
    ]
    assert [line.split(None, 3)[2:] for line in live] == [
        ["git", "not registered -> started\n"], ["git", "started -> completed\n"],
        ["claude", "pending -> started (waited " + live[2].split("(waited ")[1]],
    ]
    assert live[2].rstrip().endswith("for git)")


async def test_watch_since_replays_the_kept_events_then_goes_live(fresh_served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        await fresh_served.run("want", "claude", "git", check=True)
        await fresh_served.run("start", "git", check=True)
        async with background(fresh_served, "watch", "-o", "json", "--since", "1") as watch:
            assert watch.stdout is not None
            replayed = [json.loads(await read_line(watch.stdout)) for _ in range(2)]
            await fresh_served.run("complete", "git", check=True)
            live = json.loads(await read_line(watch.stdout))
    assert [(e["seq"], e["depends_on"], e["new_status"]) for e in replayed] == [
        (2, "git", "pending"), (3, "", "started"),
    ]
    assert (live["seq"], live["unit_name"], live["new_status"]) == (4, "git", "completed")


async def test_why_says_how_long_each_unit_has_been_as_it_is(served: Served) -> None:
    with trio.fail_after(WAIT):
        before = time.time()
        await served.run("want", "why-h-app", "why-h-db", check=True)
        await served.run("start", "why-h-db", check=True)
        tree = json.loads((await served.run("why", "why-h-app", "-o", "json")).stdout)
        text = (await served.run("why", "why-h-app", check=True)).stdout
        bound = time.time() - before
    assert 0 <= tree["waiting_for"][0]["in_status_for"] <= bound
    assert 0 <= tree["in_status_for"] <= bound
    app, db = text.strip().split(" <- ")
    assert app.startswith("why-h-app pending ") and app.endswith("s")
    assert db.startswith("why-h-db started ") and db.endswith("s")


def test_history_options_are_checked_before_anything_is_sent() -> None:
    for args, message in [
        (("timeline", "--watch", "-o", "svg"), "--watch prints rows as they come"),
        (("timeline", "--since", "yesterday"), "invalid --since 'yesterday'"),
        (("blame", "--since", "-3"), "invalid --since '-3'"),
        (("watch", "--since", "-1"), "--since must be a seq"),
        (("serve", "--history", "-1"), "--history must be 0 or more"),
        (("critical-chain", "bad\nname"), "invalid"),
    ]:
        result = usage(*args)
        assert result.returncode == USAGE, (args, result)
        assert message in result.stderr, (args, result)
