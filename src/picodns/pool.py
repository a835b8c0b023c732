"""Worker Pool: at most N items being handled at once, and a bounded queue for the rest.
Knows nothing about DNS.

A "worker" is a slot, not a task: the miss path is a chain of callbacks (ARCHITECTURE.md), so
an item is handled by calling the handler, which starts the work and returns; the work calls
:meth:`Pool.release` once when it is over, and that frees the slot for the next queued item.

Rules kept here (STYLE.md rule 8):
- :meth:`Pool.submit` never blocks and never awaits: with every slot busy, the item waits in a
  queue of at most `queue_size`; a full queue drops the item and counts it.
- An item that waited longer than `max_wait` is dropped and counted rather than handled late:
  its client has given up.
- An exception escaping the handler is counted and logged here (`on_error` answers for it),
  and the pool goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Pool"]

T = TypeVar("T")
_log = logging.getLogger("picodns.pool")


class Pool(Generic[T]):
    """`workers` slots for handling items, and a queue of at most `queue_size` waiting ones."""

    def __init__(
        self,
        handler: Callable[[T], None],
        workers: int,
        queue_size: int,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[T], None] | None = None,
        on_drop: Callable[[T], None] | None = None,
    ) -> None:
        self.handler = handler
        """Starts handling an item; whatever it starts calls :meth:`release` once, when done
        (also when the handler raised and `on_error` answered instead)."""
        self.on_error = on_error
        """Called with the item whose handler raised (e.g. to answer SERVFAIL)."""
        self.on_drop = on_drop
        """Called with an item dropped from the queue unhandled (too old, or at shutdown)."""
        self.workers = workers
        self.capacity = queue_size
        self.max_wait = max_wait
        self.clock = clock
        self._queue: deque[tuple[float, T]] = deque()
        self._pumping = False
        self._idle: asyncio.Event | None = None
        self.busy = 0
        # Counters, read by metrics.
        self.dropped_full = 0
        self.dropped_expired = 0
        self.errors = 0
        self.handled = 0

    @property
    def depth(self) -> int:
        """Items waiting in the queue."""
        return len(self._queue)

    def start(self) -> None:
        """Nothing to start: slots are counters. Kept so the pool's life cycle reads the same."""

    def submit(self, item: T, now: float) -> bool:
        """Handle `item` received at `now` now if a slot is free, else queue it; return False
        (and count it) when the queue is full."""
        if self.busy < self.workers and not self._queue:
            self.busy += 1  # _run, inline: this is every miss's way in
            try:
                self.handler(item)
            except Exception:
                self._failed(item)
            return True
        if len(self._queue) >= self.capacity:
            self.dropped_full += 1
            return False
        self._queue.append((now, item))
        return True

    def _run(self, item: T) -> None:
        self.busy += 1
        try:
            self.handler(item)
        except Exception:
            self._failed(item)

    def _failed(self, item: T) -> None:
        # The handler's edge: count, log, answer, keep serving.
        self.errors += 1
        _log.exception("unexpected error while handling a query")
        if self.on_error is not None:
            self.on_error(item)

    def release(self) -> None:
        """One handled item is done: free its slot and start queued items."""
        self.busy -= 1
        self.handled += 1
        if self._queue and not self._pumping:
            self._pump()
        if self._idle is not None and not self.busy and not self._queue:
            self._idle.set()

    def _pump(self) -> None:
        # A loop, not recursion: handlers that finish at once release from inside _run.
        self._pumping = True
        queue = self._queue
        try:
            while queue and self.busy < self.workers:
                received, item = queue.popleft()
                if self.clock() - received > self.max_wait:
                    self.dropped_expired += 1
                    if self.on_drop is not None:
                        self.on_drop(item)
                    continue
                self._run(item)
        finally:
            self._pumping = False

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for queued and running items; drop what is still queued."""
        self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(grace):
                while self.busy or self._queue:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            pass
        while self._queue:
            _received, item = self._queue.popleft()
            if self.on_drop is not None:
                self.on_drop(item)
