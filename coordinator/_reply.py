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
    """

    __slots__ = ("_event", "_outcome", "_on_abandon")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._outcome: outcome.Outcome[T] | None = None
        self._on_abandon: Callable[[], object] | None = None

    @property
    def answered(self) -> bool:
        """True once answered or abandoned: nobody is waiting for an answer any more."""
        return self._outcome is not None

    def ok(self, value: T) -> None:
        """Answer with ``value`` (ignored if already answered or abandoned)."""
        if self._outcome is None:
            self._outcome = outcome.Value(value)
            self._event.set()

    def error(self, exc: BaseException) -> None:
        """Answer with an exception to raise in the caller (ignored if already answered)."""
        if self._outcome is None:
            self._outcome = outcome.Error(exc)
            self._event.set()

    def on_abandon(self, callback: Callable[[], object] | None) -> None:
        """Run ``callback`` (synchronously, in the caller's task) if the caller gives up waiting."""
        self._on_abandon = callback

    async def receive(self) -> T:
        """Wait for the answer; return its value or raise its error.

        Cancellation abandons the reply (see the class docstring) and propagates.
        """
        try:
            await self._event.wait()
        except BaseException:
            if self._outcome is None:
                self._outcome = _ABANDONED  # type: ignore[assignment]
                callback, self._on_abandon = self._on_abandon, None
                if callback is not None:
                    callback()
            raise
        result = self._outcome
        assert result is not None
        return result.unwrap()
