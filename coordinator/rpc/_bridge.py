"""The KJ thread: pycapnp's RPC runs on asyncio, so it gets a thread of its own, bridged to Trio.

* :func:`run_kj_thread` — from Trio, run an asyncio coroutine under ``capnp.kj_loop()`` in a new
  thread until Trio cancels it (ARCHITECTURE §4: ``to_thread.run_sync(abandon_on_cancel=False)`` so
  the nursery cannot exit before the thread has; stopped with ``call_soon_threadsafe(cancel)``).
* :class:`TrioPortal` — from the KJ thread, start work in Trio without blocking any thread:
  ``TrioToken.run_sync_soon`` in, ``loop.call_soon_threadsafe`` back out.
* :class:`AsyncioPortal` — from Trio, run a coroutine on the KJ thread's loop.
* :class:`Answer` and :func:`answer_task_factory` — a server call answered from Trio with no
  asyncio task of its own (see :meth:`TrioPortal.answer`).

Only plain Python values cross: results are converted on the KJ thread before they leave it.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import capnp
import outcome
import trio

__all__ = ["Answer", "AsyncioPortal", "TrioPortal", "answer_task_factory", "run_kj_thread"]

T = TypeVar("T")


class _Stopper:
    """Cancels the thread's main task, whether it has started yet or not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stopped = False

    def attach(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> bool:
        with self._lock:
            self._loop, self._task = loop, task
            return not self._stopped

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._loop is not None and self._task is not None:
                try:
                    self._loop.call_soon_threadsafe(self._task.cancel)
                except RuntimeError:
                    pass  # the loop has already closed


async def run_kj_thread(
    amain: Callable[[Callable[[Any], None]], Awaitable[None]],
    *,
    name: str = "unitsync-kj",
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``amain(started)`` on asyncio + KJ in a new thread, until cancelled.

    ``amain`` calls ``started(value)`` once it is ready; ``value`` goes to ``task_status``.
    If ``amain`` fails before that, its exception is raised here (so ``nursery.start`` re-raises
    it). Cancelling this task cancels ``amain`` and waits for the thread to end.
    """
    token = trio.lowlevel.current_trio_token()
    stopper = _Stopper()
    ready = trio.Event()
    box: list[Any] = []

    def started(value: Any) -> None:  # called on the KJ thread
        def in_trio() -> None:
            box.append(value)
            ready.set()

        token.run_sync_soon(in_trio)

    async def thread_main() -> None:
        if not stopper.attach(asyncio.get_running_loop(), asyncio.current_task()):  # type: ignore[arg-type]
            return
        async with capnp.kj_loop():
            await amain(started)

    errors: list[BaseException] = []

    def thread_body() -> None:
        threading.current_thread().name = name
        try:
            asyncio.run(thread_main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # raised below, in Trio, unwrapped
            errors.append(exc)

    async def run_thread() -> None:
        try:
            # a limiter of its own: a KJ thread lives as long as its connection or server, and
            # must not hold one of Trio's shared thread tokens (40 by default) all that time
            await trio.to_thread.run_sync(
                thread_body, abandon_on_cancel=False, limiter=trio.CapacityLimiter(1)
            )
        finally:
            ready.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_thread)
        try:
            await ready.wait()
            if box:
                task_status.started(box[0])
                await trio.sleep_forever()
        finally:
            stopper.stop()
    if errors:
        raise errors[0]


def _settle(future: asyncio.Future[outcome.Outcome[Any]], result: outcome.Outcome[Any]) -> None:
    if not future.done():
        future.set_result(result)


class _Handoff:
    """A FIFO of callbacks from one thread to another, woken once per batch.

    ``put`` (producer thread) appends, then wakes the consumer only if no wake-up is pending;
    ``run`` (consumer thread, scheduled by that wake-up) clears the flag, then runs everything
    queued. Append-then-check against clear-then-drain means no callback is ever stranded, and
    a burst of N callbacks costs one wake-up (one syscall and one thread switch) instead of N.
    Under the GIL, deque appends/pops and the flag are atomic; order is kept. (Why a run drains
    what is added meanwhile too: stress/README.md, "a hand-over that takes turns".)
    """

    __slots__ = ("_queue", "_pending", "_wake")

    def __init__(self, wake: Callable[[Callable[[], None]], object]) -> None:
        self._queue: collections.deque[Callable[[], object]] = collections.deque()
        self._pending = False
        self._wake = wake  # e.g. TrioToken.run_sync_soon, loop.call_soon_threadsafe

    def put(self, fn: Callable[[], object]) -> None:
        self._queue.append(fn)
        if not self._pending:
            self._pending = True
            self._wake(self._run)

    def _run(self) -> None:
        self._pending = False
        queue = self._queue
        while queue:
            queue.popleft()()


class _Call(asyncio.Future):  # type: ignore[type-arg]
    """One server call waiting for Trio's answer, in the place of its asyncio task.

    pycapnp keeps a call's task only to learn when it is done (``add_done_callback``, then
    ``cancelled``/``exception``/``result``) and to cancel it when the caller goes (a capnp
    Finish, a lost connection — and, harmlessly, after every call). A future does all that:
    :meth:`settle` finishes the call when Trio answers; :meth:`cancel` abandons it in Trio.
    """

    __slots__ = ("_finish", "_fulfiller", "_handle", "_portal")  # _fulfiller: set by pycapnp

    def __init__(
        self, portal: TrioPortal, finish: Callable[[outcome.Outcome[Any] | None], None]
    ) -> None:
        super().__init__(loop=portal._loop)
        self._portal = portal
        self._finish = finish
        self._handle: Any = None  # what ``start`` returned: its ``abandon()`` gives up

    def settle(self, result: outcome.Outcome[Any]) -> None:  # KJ thread, the answer from Trio
        if self.done():  # the caller gave up meanwhile
            return
        self._portal.pending -= 1
        try:
            self._finish(result)  # fills the results, or raises the call's error
        except BaseException as exc:
            self.set_exception(exc)
        else:
            self.set_result(None)

    def cancel(self, msg: Any = None) -> bool:  # KJ thread, from pycapnp
        if not super().cancel(msg):
            return False  # already answered
        self._portal.pending -= 1
        self._finish(None)
        self._portal.call_soon(self._abandon)  # after the call's begin: calls keep their order
        return True

    def _abandon(self) -> None:  # Trio thread
        if self._handle is not None:
            self._handle.abandon()


class Answer(collections.abc.Coroutine):  # type: ignore[type-arg]
    """What a server method returns to pycapnp for a call answered by :meth:`TrioPortal.answer`.

    pycapnp takes only a coroutine from a server method, and runs each as an asyncio task:
    creating it, stepping it into the await and out of it again, a weak reference to it. This
    is a coroutine that awaits the call's future, and the KJ loop's task factory
    (:func:`answer_task_factory`) hands pycapnp that future instead of a task. (Without the
    factory it runs as any coroutine would; cancelling it cancels the call.)
    """

    __slots__ = ("_steps", "call")

    def __init__(self, call: asyncio.Future[None]) -> None:
        self.call = call
        self._steps: Any = None

    def __await__(self) -> Any:
        return self.call.__await__()

    def send(self, value: Any) -> Any:
        if self._steps is None:
            self._steps = self.call.__await__()
        return self._steps.send(value)

    def throw(self, *args: Any) -> Any:
        if self._steps is None:
            self._steps = self.call.__await__()
        return self._steps.throw(*args)


def answer_task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
    """The KJ loop's task factory (``loop.set_task_factory``): an :class:`Answer`'s future is
    its own task; any other coroutine becomes an :class:`asyncio.Task`, as without a factory."""
    if type(coro) is Answer:
        return coro.call
    return asyncio.Task(coro, loop=loop, **kwargs)


class TrioPortal:
    """The KJ thread's way into Trio (and Trio's way back to the calls it answers).

    Create it in Trio; the KJ thread sets :attr:`loop` before first use. Calls into Trio go
    through one FIFO (:class:`_Handoff` over ``TrioToken.run_sync_soon``), so they keep their
    arrival order (E-order) and an abandon never overtakes its call; answers go back through
    another (over ``loop.call_soon_threadsafe``). All the answers of one Trio batch — a
    fan-out of ``ready``, say — cost one wake-up of the KJ thread.
    """

    __slots__ = ("_token", "_nursery", "_loop", "_into_trio", "_out_of_trio", "pending")

    def __init__(self, nursery: trio.Nursery) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._nursery = nursery
        self._loop: asyncio.AbstractEventLoop | None = None
        self._into_trio = _Handoff(self._wake_trio)
        self._out_of_trio: _Handoff | None = None
        #: Calls (``submit``/``run``) waiting for their answer from Trio (KJ thread only).
        self.pending = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set on the KJ thread, before the portal is used."""
        self._loop = loop
        self._out_of_trio = _Handoff(functools.partial(_wake_loop, loop))

    def _wake_trio(self, fn: Callable[[], None]) -> None:
        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            pass

    async def submit(self, start: Callable[[Callable[[outcome.Outcome[Any]], None]], Any]) -> Any:
        """Run ``start(on_answer)`` in the Trio thread (in submission order) and wait for
        ``on_answer(outcome)``. ``start`` returns an object with ``abandon()`` (a ``Reply``),
        called if this caller is cancelled (a capnp Finish) — no Trio task is spent per call.
        """
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        handle: list[Any] = []

        def on_answer(result: outcome.Outcome[Any]) -> None:  # Trio thread, in an actor
            self.to_loop(_settle, future, result)

        def begin() -> None:  # Trio thread
            try:
                handle.append(start(on_answer))
            except BaseException as exc:  # bad arguments, Overloaded, closed
                on_answer(outcome.Error(exc))

        self._into_trio.put(begin)
        self.pending += 1
        try:
            result = await future
        except asyncio.CancelledError:
            self.call_soon(lambda: handle and handle[0].abandon())
            raise
        finally:
            self.pending -= 1
        return result.unwrap()

    def answer(
        self,
        start: Callable[[Callable[[outcome.Outcome[Any]], None]], Any],
        finish: Callable[[outcome.Outcome[Any] | None], None],
    ) -> Answer:
        """:meth:`submit` for a server method that does not await: it returns this Answer.

        ``start(on_answer)`` runs in the Trio thread (in submission order); when Trio answers,
        ``finish(outcome)`` runs on the KJ thread — it fills the call's results, or raises the
        error the caller gets — and the call is done. If the caller gives up first,
        ``finish(None)`` runs instead and ``start``'s ``abandon()`` is called in Trio. No
        asyncio task is spent on the call (see :class:`Answer`): a fan-out of parked
        ``ready`` calls costs the KJ thread one future per waiter.
        """
        call = _Call(self, finish)

        def on_answer(result: outcome.Outcome[Any]) -> None:  # Trio thread, in an actor
            self.to_loop(call.settle, result)

        def begin() -> None:  # Trio thread
            try:
                call._handle = start(on_answer)
            except BaseException as exc:  # bad arguments, Overloaded, closed
                on_answer(outcome.Error(exc))

        self._into_trio.put(begin)
        self.pending += 1
        return Answer(call)

    def answered(self, error: BaseException | None = None) -> Answer:
        """An Answer already done: with ``error`` (what the caller gets), or without."""
        call = self._loop.create_future()  # type: ignore[union-attr]
        if error is None:
            call.set_result(None)
        else:
            call.set_exception(error)
        return Answer(call)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` as a Trio task; cancelled with this caller."""
        loop = self._loop
        assert loop is not None
        future: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        scope = trio.CancelScope()

        async def task() -> None:
            with scope:
                result = await outcome.acapture(fn, *args)
                self.to_loop(_settle, future, result)

        self.call_soon(lambda: self._nursery.start_soon(task))
        self.pending += 1
        try:
            result = await future
        except asyncio.CancelledError:
            self.call_soon(scope.cancel)
            raise
        finally:
            self.pending -= 1
        return result.unwrap()

    async def loop_turn(self) -> int:
        """From Trio: a round trip through the KJ loop after everything sent to it before;
        returns :attr:`pending` as the KJ thread saw it."""
        done = trio.Event()
        seen: list[int] = []

        def probe() -> None:  # KJ thread
            seen.append(self.pending)
            self.call_soon(done.set)

        self.to_loop(probe)
        await done.wait()
        return seen[0]

    def spawn(self, fn: Callable[[], Awaitable[object]]) -> None:
        """In the Trio thread: start ``fn()`` as a task of the server's nursery."""
        self._nursery.start_soon(fn)

    def to_loop(self, fn: Callable[..., object], *args: Any) -> None:
        """In the Trio thread: run ``fn(*args)`` on the KJ thread's loop, after everything sent
        before (dropped once the loop has closed)."""
        assert self._out_of_trio is not None
        self._out_of_trio.put(functools.partial(fn, *args))

    def call_soon(self, fn: Callable[[], object]) -> None:
        """From the KJ thread: run ``fn()`` in the Trio thread after everything sent before,
        fire and forget (dropped once Trio has finished)."""
        self._into_trio.put(fn)


def _wake_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass  # the KJ thread has stopped; nobody is waiting any more


class AsyncioPortal:
    """Trio's way into the KJ thread's asyncio loop. Create it on the KJ thread; use it from Trio."""

    __slots__ = ("_loop", "_token")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._loop = asyncio.get_running_loop()
        self._token = token

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` as an asyncio task on the KJ thread and return its result.

        ``fn`` must return plain Python values and raise plain Python exceptions (convert on the
        KJ thread). Cancelling the Trio caller cancels the asyncio task.
        """
        done = trio.Event()
        box: list[outcome.Outcome[T]] = []
        tasks: list[asyncio.Task[T]] = []
        token = self._token

        def finished(task: asyncio.Task[T]) -> None:  # KJ thread
            result = outcome.capture(task.result)

            def in_trio() -> None:
                box.append(result)
                done.set()

            try:
                token.run_sync_soon(in_trio)
            except trio.RunFinishedError:
                pass

        def begin() -> None:  # KJ thread
            task = self._loop.create_task(fn(*args))  # type: ignore[arg-type]
            tasks.append(task)
            task.add_done_callback(finished)

        try:
            self._loop.call_soon_threadsafe(begin)
        except RuntimeError:
            from .._errors import CoordinatorClosed

            raise CoordinatorClosed("the client's connection thread has stopped") from None
        try:
            await done.wait()
        except BaseException:
            self._loop.call_soon_threadsafe(lambda: tasks and tasks[0].cancel())
            raise
        return box[0].unwrap()

    def call_soon(self, fn: Callable[[], object]) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:
            pass
