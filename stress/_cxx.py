"""Building a C++ program against our schema: ``capnp compile -oc++`` of ``schema/unitsync.capnp``
and ``g++`` with ``pkg-config capnp-rpc``, as a client in another language would (Debian:
``apt-get install g++ capnproto libcapnp-dev pkg-config``). Used by ``stress wakeup``'s waiters
(``stress/wakeup_client.c++``) and by the interop test's client (``tests/interop/client.c++``).
:func:`cached` keeps what is built, per content, for any builder (``stress up``'s stamper too).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["SCHEMA", "BuildError", "build", "build_cached", "cached", "missing_tools"]

SCHEMA = Path(__file__).resolve().parents[1] / "schema" / "unitsync.capnp"


class BuildError(Exception):
    """A compile step failed; the message has its command and output."""


def missing_tools() -> list[str]:
    """What is missing to build (empty: everything is there)."""
    missing = [tool for tool in ("g++", "capnp", "pkg-config") if shutil.which(tool) is None]
    if "pkg-config" not in missing:
        found = subprocess.run(["pkg-config", "--exists", "capnp-rpc"], check=False)
        if found.returncode != 0:
            missing.append("pkg-config capnp-rpc (libcapnp-dev)")
    if "capnp" not in missing and not any(
        Path(root, "capnp/stream.capnp").is_file() for root in ("/usr/include", "/usr/local/include")
    ):  # capnp finds /capnp/stream.capnp under its default import paths
        missing.append("capnp/stream.capnp (libcapnp-dev)")
    return missing


def build(source: Path, directory: Path) -> Path:
    """``source`` compiled with the schema's generated code in ``directory`` (a copy of both
    there); returns the program (named as ``source`` without its suffix). BuildError if a
    step fails."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCHEMA, directory / "unitsync.capnp")
    shutil.copy(source, directory / source.name)
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "capnp-rpc"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    program = directory / source.stem
    for command in (
        ["capnp", "compile", "-I/usr/include", "-oc++", "unitsync.capnp"],
        ["g++", "-std=c++17", "-O2", "-o", program.name, source.name, "unitsync.capnp.c++",
         *flags],
    ):
        done = subprocess.run(command, cwd=directory, capture_output=True, text=True,
                              timeout=600, check=False)
        if done.returncode != 0:
            raise BuildError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return program


def build_cached(source: Path) -> Path:
    """:func:`build`, :func:`cached` per content of ``source`` and the schema."""
    return cached(source, build, SCHEMA)


def cached(source: Path, make: Callable[[Path, Path], Path], *also: Path) -> Path:
    """``make(source, directory)`` once per content of ``source`` (and of ``also``), kept in
    the temp directory (``unitsync-stress-UID/``, ours only) so that each run does not compile
    again (a few seconds); the program is named as ``source`` without its suffix. BuildError
    if ``make`` fails."""
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in (source, *also))).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"unitsync-stress-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    if cache.stat().st_uid != os.getuid() or cache.is_symlink():  # not ours: build afresh
        cache = Path(tempfile.mkdtemp(prefix="unitsync-stress-"))
    directory = cache / f"{source.stem}-{digest}"
    program = directory / source.stem
    if not program.is_file():
        staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache))
        make(source, staging)
        try:
            staging.rename(directory)  # whole or not at all: another run may have won
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return program
