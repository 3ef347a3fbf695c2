"""``unitsync why UNIT``: the chains of unmet requirements down to their root causes. The graph
is declared through the library's RPC client on the same socket (``served.client()``): a
console script per step would cost ~0.15 s of CPU each, and ``want``/``start`` have tests of
their own."""

from __future__ import annotations

import json
import re

import trio

from coordinator import Status

from .cli_support import OK, Served
from .waits import WAIT



async def test_why_follows_unmet_requirements_to_the_root_causes(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        async with served.client() as client:
            claude, git, db, ssh_key, dotfiles = (client.unit(f"why-{name}") for name in (
                "claude", "git", "db", "ssh-key", "dotfiles"))
            await claude.want("why-git", "why-db")
            await git.want("why-ssh-key")
            await db.want("why-git", requires=Status.STARTED)
            await claude.want("why-dotfiles")
            await ssh_key.start()
            await ssh_key.fail("no key")
            await dotfiles.start()
            await dotfiles.complete()
        result = await served.run("why", "why-claude")
        assert result.returncode == OK, result
        # each unit says how long it has been as it is (test_cli_history checks the figures)
        assert re.sub(r" \d+(\.\d)?s\b", "", result.stdout).splitlines() == [
            "why-claude pending <- why-db pending <- why-git pending <- why-ssh-key failed: no key",
            "why-claude pending <- why-git pending (see above)",
        ]
        tree = json.loads((await served.run("why", "why-claude", "-o", "json", check=True)).stdout)
        assert (tree["unit_name"], tree["status"], tree["is_ready"]) == (
            "why-claude", "pending", False
        )
        db, git = tree["waiting_for"]  # why-dotfiles is satisfied: not listed
        assert (db["unit_name"], db["required_status"]) == ("why-db", "completed")
        assert [n["unit_name"] for n in db["waiting_for"]] == ["why-git"]
        assert db["waiting_for"][0]["required_status"] == "started"
        root = db["waiting_for"][0]["waiting_for"][0]
        assert (root["unit_name"], root["status"], root["reason"]) == (
            "why-ssh-key", "failed", "no key"
        )
        assert root["waiting_for"] == []
        assert (git["unit_name"], git.get("see_above")) == ("why-git", True)


async def test_why_of_a_unit_that_waits_for_nothing(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        async with served.client() as client:
            await client.unit("why-alone").start()
        result = await served.run("why", "why-alone")
        assert (result.returncode, result.stdout) == (
            OK, 'Unit "why-alone" is not waiting for anything (it is started, ready)\n'
        )
        nobody = await served.run("why", "why-nobody")
        assert nobody.stdout == (
            'Unit "why-nobody" is not waiting for anything (it is not registered, ready)\n'
        )
