"""A nursery for background service tasks around a body of user code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["open_service_nursery"]


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """Yield a nursery for service tasks; when the body ends, cancel them and wait for them.

    An exception raised in the body propagates **unchanged**, not wrapped in an
    ExceptionGroup: the services end by cancellation (which the nursery absorbs), so the body's
    exception is the only one. If a service crashes, its error propagates as the nursery's
    ExceptionGroup, and the body is cancelled; if the body had raised an error of its own
    (not that cancellation), it is a member of that group too: nothing is lost.
    """
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                body_error = exc
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if body_error is None or isinstance(body_error, trio.Cancelled):
            raise
        raise group.derive([*group.exceptions, body_error]) from None
    if body_error is not None:
        raise body_error
