"""Worker Pool: a bounded queue in front of N workers. Knows nothing about DNS.

Rules kept here (STYLE.md rule 8):
- :meth:`Pool.submit` never blocks and never awaits: a full queue drops the item and counts it.
- An item that waited longer than `max_wait` is dropped and counted rather than handled late:
  its client has given up.
- The handler is the worker edge's business: an exception escaping it is counted and logged
  here, and the worker goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Pool"]

T = TypeVar("T")
_log = logging.getLogger("picodns.pool")


class Pool(Generic[T]):
    """`workers` tasks taking items from a queue of at most `queue_size`."""

    def __init__(
        self,
        handler: Callable[[T], Awaitable[None]],
        workers: int,
        queue_size: int,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[T], None] | None = None,
        on_drop: Callable[[T], None] | None = None,
    ) -> None:
        self.handler = handler
        self.on_error = on_error
        """Called with the item whose handler raised (e.g. to answer SERVFAIL)."""
        self.on_drop = on_drop
        """Called with an item dropped from the queue unhandled (too old, or at shutdown)."""
        self.workers = workers
        self.capacity = queue_size
        self.max_wait = max_wait
        self.clock = clock
        self._queue: asyncio.Queue[tuple[float, T]] = asyncio.Queue(queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self.busy = 0
        # Counters, read by metrics.
        self.dropped_full = 0
        self.dropped_expired = 0
        self.errors = 0
        self.handled = 0

    @property
    def depth(self) -> int:
        """Items waiting in the queue."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the workers on the running loop."""
        for _ in range(self.workers):
            self._tasks.append(asyncio.ensure_future(self._work()))

    def submit(self, item: T, now: float) -> bool:
        """Queue `item` received at `now`; return False (and count it) when the queue is full."""
        try:
            self._queue.put_nowait((now, item))
        except asyncio.QueueFull:
            self.dropped_full += 1
            return False
        return True

    async def _work(self) -> None:
        queue = self._queue
        while True:
            received, item = await queue.get()
            try:
                if self.clock() - received > self.max_wait:
                    self.dropped_expired += 1
                    if self.on_drop is not None:
                        self.on_drop(item)
                    continue
                self.busy += 1
                try:
                    await self.handler(item)
                except Exception:  # the worker edge: count, log, keep serving
                    self.errors += 1
                    _log.exception("unexpected error while handling a query")
                    if self.on_error is not None:
                        self.on_error(item)
                finally:
                    self.busy -= 1
                self.handled += 1
            finally:
                queue.task_done()

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for queued and running items, then stop the workers."""
        try:
            async with asyncio.timeout(grace):
                await self._queue.join()
        except TimeoutError:
            pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
