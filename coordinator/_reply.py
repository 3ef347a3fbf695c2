"""A one-shot reply: how a request's answer (or error) gets back to the caller's task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import outcome
import trio

__all__ = ["Reply"]

T = TypeVar("T")

_ABANDONED: outcome.Outcome[object] = outcome.Error(RuntimeError("reply abandoned"))


class Reply(Generic[T]):
    """The answer slot a caller puts in its request and awaits.

    The actor answers with :meth:`ok` or :meth:`error` — synchronous and never blocking, so an
    actor can answer a caller that has gone away. Only the first answer counts. The caller awaits
    :meth:`receive`, which returns the value or raises the error *in the caller's task*.

    If the caller is cancelled while waiting, the reply is *abandoned*: later answers are dropped,
    and the callback the owning actor installed with :meth:`on_abandon` runs at once, so a parked
    waiter does not outlive its caller.

    A caller that is not a Trio task (the RPC bridge) passes ``on_answer`` instead of awaiting
    :meth:`receive`: it is called with the outcome, synchronously, in the answering actor's task —
    no task is spent per call — and must not block. Such a caller gives up with :meth:`abandon`.
    """

    __slots__ = ("_event", "_outcome", "_on_abandon", "_on_answer")

    def __init__(self, on_answer: Callable[[outcome.Outcome[T]], object] | None = None) -> None:
        # only a Trio caller awaits it (the bridge's calls are answered through on_answer)
        self._event = trio.Event() if on_answer is None else None
        self._outcome: outcome.Outcome[T] | None = None
        self._on_abandon: Callable[[], object] | None = None
        self._on_answer = on_answer

    @property
    def answered(self) -> bool:
        """True once answered or abandoned: nobody is waiting for an answer any more."""
        return self._outcome is not None

    def ok(self, value: T) -> None:
        """Answer with ``value`` (ignored if already answered or abandoned)."""
        if self._outcome is None:
            self._answer(outcome.Value(value))

    def error(self, exc: BaseException) -> None:
        """Answer with an exception to raise in the caller (ignored if already answered)."""
        if self._outcome is None:
            self._answer(outcome.Error(exc))

    def _answer(self, result: outcome.Outcome[T]) -> None:
        self._outcome = result
        if self._on_answer is None:
            assert self._event is not None
            self._event.set()
        else:
            # called once: dropped, so that what it holds (the bridge's call, which holds
            # this reply) is freed now, not by the garbage collector
            on_answer, self._on_answer = self._on_answer, None
            on_answer(result)

    def on_abandon(self, callback: Callable[[], object] | None) -> None:
        """Run ``callback`` (synchronously, in the caller's task) if the caller gives up waiting."""
        self._on_abandon = callback

    def abandon(self) -> None:
        """Give up waiting: drop any later answer and remove the parked waiter, if any."""
        if self._outcome is None:
            self._outcome = _ABANDONED  # type: ignore[assignment]
            self._on_answer = None  # never called now (see _answer)
            callback, self._on_abandon = self._on_abandon, None
            if callback is not None:
                callback()

    async def receive(self) -> T:
        """Wait for the answer; return its value or raise its error.

        Cancellation abandons the reply (see the class docstring) and propagates. (Not for
        a reply made with ``on_answer``.)
        """
        assert self._event is not None, "a reply with on_answer is not awaited"
        try:
            await self._event.wait()
        except BaseException:
            self.abandon()
            raise
        result = self._outcome
        assert result is not None
        return result.unwrap()
