"""``unitsync why UNIT``: the chains of unmet requirements down to their root causes."""

from __future__ import annotations

import json

import trio

from .cli_support import OK, Served
from .waits import WAIT



async def test_why_follows_unmet_requirements_to_the_root_causes(fresh_served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        for args in (
            ("want", "claude", "git", "db"), ("want", "git", "ssh-key"),
            ("want", "db", "git", "--requires", "started"), ("want", "claude", "dotfiles"),
            ("start", "ssh-key"), ("fail", "ssh-key", "--reason", "no key"),
            ("start", "dotfiles"), ("complete", "dotfiles"),
        ):
            await fresh_served.run(*args, check=True)
        result = await fresh_served.run("why", "claude")
        assert result.returncode == OK, result
        assert result.stdout.splitlines() == [
            "claude pending <- db pending <- git pending <- ssh-key failed: no key",
            "claude pending <- git pending (see above)",
        ]
        tree = json.loads((await fresh_served.run("why", "claude", "-o", "json", check=True)).stdout)
        assert (tree["unit_name"], tree["status"], tree["is_ready"]) == ("claude", "pending", False)
        db, git = tree["waiting_for"]  # dotfiles is satisfied: not listed
        assert (db["unit_name"], db["required_status"]) == ("db", "completed")
        assert [n["unit_name"] for n in db["waiting_for"]] == ["git"]
        assert db["waiting_for"][0]["required_status"] == "started"
        root = db["waiting_for"][0]["waiting_for"][0]
        assert (root["unit_name"], root["status"], root["reason"]) == ("ssh-key", "failed", "no key")
        assert root["waiting_for"] == []
        assert (git["unit_name"], git.get("see_above")) == ("git", True)


async def test_why_of_a_unit_that_waits_for_nothing(fresh_served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        await fresh_served.run("start", "git", check=True)
        result = await fresh_served.run("why", "git")
        assert (result.returncode, result.stdout) == (
            OK, 'Unit "git" is not waiting for anything (it is started, ready)\n'
        )
        nobody = await fresh_served.run("why", "nobody")
        assert nobody.stdout == 'Unit "nobody" is not waiting for anything (it is not registered, ready)\n'
