"""``serve --cpu``: keep the coordinator's threads on one CPU.

A call that enters Trio crosses two threads and back (the KJ thread hands it to Trio, Trio
answers on the KJ thread), and the two share the GIL, so only one of them runs at a time. Left
to the scheduler, each hand-over wakes the other thread on the other, idle, CPU — on a virtual
machine an interprocessor interrupt and the halted CPU's way back. Kept on one CPU, the
hand-over is a switch on the CPU that is already awake. What it gains, and what a busy process
kept on that same CPU costs it: stress/README.md, "2026-12-06 morning session".

``auto`` (the default) is the CPU the scheduler started ``serve`` on (so that the coordinators
of several workspaces on one machine spread as the scheduler spreads them), else the last it
may run on; ``all`` leaves the choice to the scheduler; a number is that CPU. Only ``serve``:
a program nesting the library, or ``up`` (whose commands would inherit it), keeps its own
affinity.
"""

from __future__ import annotations

import os

__all__ = ["keep_to_cpu", "parse_cpu"]


def parse_cpu(value: str) -> int | None:
    """The CPU ``--cpu VALUE`` keeps ``serve`` on (None: ``all``, or a system that cannot pin
    threads); ValueError naming the CPUs allowed for one it may not run on."""
    value = value.strip().lower()
    if value == "all":
        return None
    allowed = _allowed()
    if value == "auto":
        if not allowed:
            return None
        current = _current_cpu()
        return current if current in allowed else max(allowed)
    try:
        cpu = int(value)
    except ValueError:
        raise ValueError(f"--cpu {value!r}: use auto, all or a CPU number") from None
    if allowed is None:
        raise ValueError(f"--cpu {cpu}: this system cannot keep a process to a CPU (use auto or all)")
    if cpu not in allowed:
        raise ValueError(f"--cpu {cpu}: this process may only run on CPU {_ranges(allowed)}")
    return cpu


def keep_to_cpu(value: str) -> None:
    """Do what ``--cpu VALUE`` says (:func:`parse_cpu`). ValueError for a bad value, or a
    CPU given by number that the system refuses; ``auto`` where it refuses (a sandbox) leaves
    the threads to the scheduler."""
    cpu = parse_cpu(value)
    if cpu is None:
        return
    try:
        _keep_to_one_cpu(cpu)
    except OSError as error:
        if value.strip().lower() != "auto":
            raise ValueError(f"--cpu {cpu}: {error.strerror or error}") from None


def _keep_to_one_cpu(cpu: int) -> None:
    """Keep every thread of this process on ``cpu`` (threads started later inherit it).
    Before any other thread starts, in practice; the threads listed are all set anyway."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # this thread: the ones started later inherit it
    for tid in threads:
        try:
            os.sched_setaffinity(tid, {cpu})
        except ProcessLookupError:  # a thread that has just ended
            pass


def _allowed() -> set[int] | None:
    """The CPUs this process may run on; None where affinity is not supported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    return set(os.sched_getaffinity(0))


def _current_cpu() -> int | None:
    """The CPU this thread runs on now (Linux: field 39 of its /proc stat), None if unknown."""
    try:
        with open("/proc/thread-self/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _ranges(cpus: set[int]) -> str:
    """``0-3,6`` for {0, 1, 2, 3, 6}, as taskset and /proc say them."""
    spans: list[list[int]] = []
    for cpu in sorted(cpus):
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
