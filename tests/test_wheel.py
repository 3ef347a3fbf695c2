"""A clean install: the wheel built from this repository, installed into a fresh virtualenv
(its dependencies from the package index, nothing of the source tree on the path), runs
``unitsync serve``, the README's git -> claude flow and a workspace file's ``up``, with the
schema loaded from inside the installed package. Marked slow: building the wheel and the virtualenv takes tens of seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import trio

from coordinator import __version__

from .cli_support import read_line
from .waits import WAIT

ROOT = Path(__file__).resolve().parents[1]

#: Building the wheel, making the venv, installing (pip's cache is warm on a developer's
#: machine and in CI after the first install; a cold one downloads pycapnp).
INSTALL_LIMIT = 300.0


async def run(argv: list[str], **kwargs: object) -> str:
    """Run ``argv`` to completion (bounded by :data:`INSTALL_LIMIT`); its stdout, exit 0 asserted."""
    with trio.fail_after(INSTALL_LIMIT):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False, **kwargs)
    assert done.returncode == 0, (argv, done.stdout.decode(), done.stderr.decode())
    return done.stdout.decode()


@pytest.mark.slow
async def test_the_wheel_installs_into_a_clean_venv_and_runs_the_git_claude_flow(
    tmp_path: Path, sock_dir: Path
) -> None:
    wheels = tmp_path / "wheels"
    await run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(wheels), "--no-deps",
               "-q"])
    [wheel] = wheels.glob("unitsync-*.whl")
    assert wheel.name.startswith(f"unitsync-{__version__}-py3-none-any"), wheel.name
    with zipfile.ZipFile(wheel) as archive:  # the wire contract ships inside the package
        assert "coordinator/rpc/schema/unitsync.capnp" in archive.namelist()

    venv = tmp_path / "venv"
    await run([sys.executable, "-m", "venv", str(venv)])
    python, unitsync = venv / "bin" / "python", venv / "bin" / "unitsync"
    await run([str(python), "-m", "pip", "install", "-q", str(wheel)])

    # from the venv alone: nothing of the source tree or this test's venv on the path
    path = sock_dir / "unitsync.sock"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "XDG_RUNTIME_DIR", "PYTHONDONTWRITEBYTECODE")}
    env.update(UNITSYNC_SOCKET=str(path), PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    code = "from coordinator.rpc._schema import schema_path; import cli; " \
        "print(schema_path()); print(cli.__file__)"
    where = await run([str(python), "-c", code], env=env, cwd=tmp_path)
    for line in where.splitlines():
        assert Path(line).is_relative_to(venv), where
    assert (await run([str(unitsync), "--version"], env=env, cwd=tmp_path)).strip() == __version__

    server = await trio.lowlevel.open_process([str(unitsync), "serve"], env=env, cwd=tmp_path,
                                              stderr=subprocess.PIPE)
    try:
        assert server.stderr is not None
        with trio.fail_after(WAIT * 2):
            assert await read_line(server.stderr) == (
                f"unitsync: {__version__} serving on {path} (state: {sock_dir / 'unitsync.state'})\n"
            )

        async def unitsync_(*args: str) -> str:
            return await run([str(unitsync), *args], env=env, cwd=tmp_path)

        assert await unitsync_("want", "claude", "git") == \
            'Unit "claude" declared dependencies: [git]\n'
        claude = await trio.lowlevel.open_process(
            [str(unitsync), "start", "claude", "--timeout", "30s"], env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            assert claude.stderr is not None and claude.stdout is not None
            with trio.fail_after(WAIT * 2):  # it waits: parked on git, said so
                assert await read_line(claude.stderr) == \
                    'Unit "claude" is waiting for dependencies to be satisfied: [git]\n'
            assert await unitsync_("start", "git") == 'Unit "git" started with no dependencies\n'
            assert await unitsync_("complete", "git") == "Success\n"
            with trio.fail_after(WAIT * 2):  # woken by git's completion: start returns
                assert await claude.wait() == 0
                assert await read_line(claude.stdout) == \
                    'Unit "claude" finished waiting for dependencies: [git]\n'
        finally:
            claude.kill()
            with trio.CancelScope(shield=True):
                await claude.wait()
        assert '"status": "started"' in await unitsync_("status", "claude", "-o", "json")
        # a plain `up` line (read without cyclopts) runs the workspace file on the same server
        (tmp_path / "unitsync.toml").write_text('[units.hello]\nrun = "echo hi"\n')
        out = await unitsync_("up")
        assert "hello | hi" in out and "completed" in out, out
        server.terminate()
        with trio.fail_after(WAIT * 2):
            assert await server.wait() == 0
    finally:
        server.kill()
        with trio.CancelScope(shield=True):
            await server.wait()
