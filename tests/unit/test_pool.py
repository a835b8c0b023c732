"""The worker pool on its own: slots, the bounded queue, expiry, errors. No sockets.

A handler "finishes" an item by calling release(), now or later, as the miss path does.
"""

from __future__ import annotations

import asyncio

import pytest

from picodns.pool import Pool


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_items_beyond_the_slots_wait_and_beyond_the_queue_are_dropped() -> None:
    held: list[int] = []
    pool: Pool[int] = Pool(held.append, workers=2, queue_size=3, max_wait=5.0, clock=Clock())
    accepted = [pool.submit(i, 0.0) for i in range(7)]
    assert accepted == [True] * 5 + [False] * 2
    assert held == [0, 1] and pool.busy == 2 and pool.depth == 3 and pool.dropped_full == 2
    pool.release()  # item 0 done: the oldest queued item starts
    assert held == [0, 1, 2] and pool.busy == 2 and pool.depth == 2
    for _ in range(4):
        pool.release()
    assert held == [0, 1, 2, 3, 4] and pool.busy == 0 and pool.handled == 5


def test_items_that_waited_too_long_are_dropped_when_their_turn_comes() -> None:
    clock = Clock()
    held: list[str] = []
    dropped: list[str] = []
    pool: Pool[str] = Pool(held.append, 1, 10, max_wait=1.0, clock=clock, on_drop=dropped.append)
    pool.submit("first", clock.now)
    pool.submit("stale", clock.now)
    clock.now = 0.5
    pool.submit("fresh", clock.now)
    clock.now = 1.2  # "stale" has waited 1.2 s, "fresh" 0.7 s
    pool.release()
    assert held == ["first", "fresh"] and dropped == ["stale"] and pool.dropped_expired == 1


def test_handlers_that_finish_at_once_drain_a_long_queue_without_recursion() -> None:
    # Each handler releases its slot from inside the call (a cache hit or an error reply on
    # the slow path); releasing starts the next queued item. A loop, not a call chain.
    blocked = True
    pool: Pool[int]
    done: list[int] = []

    def handler(item: int) -> None:
        if blocked:
            return
        done.append(item)
        pool.release()

    pool = Pool(handler, workers=1, queue_size=10_000, max_wait=5.0, clock=Clock())
    pool.submit(-1, 0.0)  # holds the only slot
    for i in range(5000):
        pool.submit(i, 0.0)
    blocked = False
    pool.release()
    assert done == list(range(5000)) and pool.busy == 0 and pool.depth == 0


def test_a_raising_handler_is_counted_answered_and_the_pool_goes_on() -> None:
    answered: list[int] = []
    pool: Pool[int]

    def handler(item: int) -> None:
        if item == 13:
            raise RuntimeError("injected")
        pool.release()

    def on_error(item: int) -> None:
        answered.append(item)
        pool.release()  # the error reply ends the item like any other

    pool = Pool(handler, 1, 10, 5.0, clock=Clock(), on_error=on_error)
    for i in (12, 13, 14):
        pool.submit(i, 0.0)
    assert answered == [13] and pool.errors == 1 and pool.handled == 3 and pool.busy == 0


def test_drain_waits_for_running_items_then_drops_the_queue() -> None:
    async def main() -> None:
        held: list[int] = []
        dropped: list[int] = []
        pool: Pool[int] = Pool(held.append, 1, 5, 5.0, clock=Clock(), on_drop=dropped.append)
        for i in range(3):
            pool.submit(i, 0.0)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, pool.release)  # item 0 finishes; item 1 starts and never does
        await pool.drain(0.3)
        assert held == [0, 1] and dropped == [2] and pool.busy == 1

    asyncio.run(main())


@pytest.mark.parametrize("workers", [1, 4])
def test_drain_returns_at_once_when_idle(workers: int) -> None:
    async def main() -> None:
        pool: Pool[int] = Pool(lambda item: None, workers, 5, 5.0)
        async with asyncio.timeout(1.0):
            await pool.drain(10.0)

    asyncio.run(main())
