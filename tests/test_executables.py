"""``cli._executables``: a command's path found once on PATH, the same as the child's own search
would find, even after a directory on PATH has changed."""

from __future__ import annotations

import os
from pathlib import Path

from cli._executables import ExecutablePaths


def tool(directory: Path, name: str = "tool") -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def bump(directory: Path) -> None:
    """Make sure the directory's modification time moves even on a coarse clock."""
    stat = directory.stat()
    os.utime(directory, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_finds_the_first_on_path_and_sees_a_new_one_earlier(tmp_path: Path) -> None:
    early, late = tmp_path / "early", tmp_path / "late"
    early.mkdir()
    found_late = tool(late)
    paths = ExecutablePaths()
    env = {"PATH": f"{early}:{late}"}
    assert paths.find("tool", env) == str(found_late)
    assert paths.find("tool", env) == str(found_late)  # remembered
    found_early = tool(early)  # installed meanwhile, earlier on PATH
    bump(early)
    assert paths.find("tool", env) == str(found_early)
    found_early.unlink()
    bump(early)
    assert paths.find("tool", env) == str(found_late)
    found_late.unlink()
    bump(late)
    assert paths.find("tool", env) is None


def test_leaves_the_search_to_the_child_when_it_cannot_answer_as_the_child_would(
    tmp_path: Path,
) -> None:
    tool(tmp_path / "bin")
    paths = ExecutablePaths()
    assert paths.find("./tool", {"PATH": str(tmp_path / "bin")}) is None  # a slash: no search
    assert paths.find("tool", {"PATH": f"bin:{tmp_path / 'bin'}"}) is None  # relative: the cwd's
    assert paths.find("tool", {"PATH": f":{tmp_path / 'bin'}"}) is None  # empty: the cwd
    assert paths.find("no-such-tool", {"PATH": str(tmp_path / "bin")}) is None
    assert paths.find("", {"PATH": str(tmp_path / "bin")}) is None


def test_each_path_has_its_own_answer(tmp_path: Path) -> None:
    one, two = tool(tmp_path / "one"), tool(tmp_path / "two")
    paths = ExecutablePaths()
    assert paths.find("tool", {"PATH": str(one.parent)}) == str(one)
    assert paths.find("tool", {"PATH": str(two.parent)}) == str(two)
    assert paths.find("tool", {"PATH": str(one.parent)}) == str(one)
