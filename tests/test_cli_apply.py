"""``unitsync apply``: a workspace file's units and edges, declared on a real coordinator."""

from __future__ import annotations

from pathlib import Path

import trio

from coordinator import Status

from .cli_support import CYCLE, OK, USAGE, Served
from .waits import WAIT

FILE = """\
[units.ap-ssh-key]
run = "true"
[units.ap-git]
run = ["git", "clone", "x"]
after = ["ap-ssh-key"]
[units.ap-dotfiles]
[units.ap-claude]
run = "claude"
after = ["ap-git", { unit = "ap-dotfiles", requires = "started" }]
"""


async def test_apply_declares_the_file_once_and_refuses_bad_files_whole(
    served: Served, tmp_path: Path
) -> None:
    path = tmp_path / "unitsync.toml"
    path.write_text(FILE)
    with trio.fail_after(WAIT * 2):
        first = await served.run("apply", "-f", str(path))
        async with served.client() as client:
            claude = await client.unit("ap-claude").info()
            dotfiles = await client.unit("ap-dotfiles").info()
            events = (await client.history()).last
        again = await served.run("apply", "-f", str(path))
        async with served.client() as client:
            assert (await client.history()).last == events  # nothing changed: no event

        # a cycle with what the coordinator holds: refused whole
        cyclic = tmp_path / "cycle.toml"
        cyclic.write_text(  # fine alone: the cycle goes through the coordinator's edges
            '[units.ap-ssh-key]\nafter = ["ap-claude"]\n[units.ap-claude]\n[units.ap-new]\n'
        )
        cycle = await served.run("apply", "-f", str(cyclic))
        # a file check refuses: the same messages, nothing sent
        bad = tmp_path / "bad.toml"
        bad.write_text('[units.ap-new]\naftr = ["ap-git"]\n')
        refused = await served.run("apply", "-f", str(bad))
        async with served.client() as client:
            new = await client.unit("ap-new").info()
            ssh = await client.unit("ap-ssh-key").info()

    assert (first.returncode, first.stdout) == (OK, "4 units, 3 edges, 0 groups: applied\n")
    assert (again.returncode, again.stdout) == (OK, first.stdout)
    assert claude.status is Status.PENDING and not claude.ready
    assert [(d.depends_on, d.required) for d in claude.dependencies] == [
        ("ap-dotfiles", Status.STARTED), ("ap-git", Status.COMPLETED),
    ]
    assert dotfiles.status is Status.PENDING  # registered, though nothing runs it
    assert cycle.returncode == CYCLE
    assert cycle.stderr == (
        "unitsync: dependency cycle refused: ap-ssh-key -> ap-claude -> ap-git -> ap-ssh-key\n"
    )
    assert refused.returncode == USAGE
    assert refused.stderr == (
        f'unitsync: {bad}:2: unit "ap-new": unknown key "aftr" (did you mean "after"?)\n'
    )
    assert new.status is Status.NOT_REGISTERED  # neither the cycle's file nor the bad one
    assert ssh.dependencies == ()
