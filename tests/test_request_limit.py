"""RequestLimit: slots, a FIFO queue, refusal past it, and cancellation, on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

from hostkit.request_limit import RequestLimit

pytestmark = pytest.mark.anyio


class Queued:
    """What a metrics object is told about the queue: its length after every change."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def queued(self, delta: int) -> None:
        self.lengths.append((self.lengths[-1] if self.lengths else 0) + delta)


async def wait_for_waiters(limit: RequestLimit, count: int) -> None:
    with anyio.fail_after(5):
        while limit.waiting != count:
            await anyio.sleep(0)


async def test_past_the_slots_requests_wait_and_past_the_queue_they_are_refused_at_once() -> None:
    queued = Queued()
    limit = RequestLimit(2, 1, queued)  # type: ignore[arg-type]
    assert await limit.enter() and await limit.enter()
    assert limit.in_use == 2
    entered = anyio.Event()

    async def third() -> None:
        assert await limit.enter()
        entered.set()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(third)
        await wait_for_waiters(limit, 1)
        with anyio.fail_after(0.5):  # no wait: the queue is full
            assert await limit.enter() is False
        assert not entered.is_set()
        limit.leave()
    assert entered.is_set()
    assert (limit.in_use, limit.waiting) == (2, 0)
    assert queued.lengths == [1, 0]
    limit.leave()
    limit.leave()
    assert limit.in_use == 0


async def test_a_slot_given_back_goes_to_the_oldest_waiter() -> None:
    limit = RequestLimit(1, 10)
    assert await limit.enter()
    order: list[int] = []

    async def waiter(number: int) -> None:
        assert await limit.enter()
        order.append(number)
        limit.leave()

    async with anyio.create_task_group() as task_group:
        for number in range(5):
            task_group.start_soon(waiter, number)
            await wait_for_waiters(limit, number + 1)
        limit.leave()
    assert order == [0, 1, 2, 3, 4]
    assert (limit.in_use, limit.waiting) == (0, 0)


async def test_a_free_slot_is_not_taken_ahead_of_a_waiter() -> None:
    limit = RequestLimit(1, 10)
    assert await limit.enter()
    order: list[str] = []

    async def waiter() -> None:
        assert await limit.enter()
        order.append("waiter")
        limit.leave()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(waiter)
        await wait_for_waiters(limit, 1)
        limit.leave()  # the slot is the waiter's now, though it has not run yet
        assert limit.in_use == 1
        assert await limit.enter() is True  # the newcomer waits behind it
        order.append("newcomer")
        limit.leave()
    assert order == ["waiter", "newcomer"]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    queued = Queued()
    limit = RequestLimit(1, 1, queued)  # type: ignore[arg-type]
    assert await limit.enter()
    with anyio.move_on_after(0.05) as scope:
        await limit.enter()
    assert scope.cancelled_caught
    assert limit.waiting == 0
    assert queued.lengths == [1, 0]
    # its place in the queue is free again, and the slot still goes to the next waiter
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(limit.enter)
        await wait_for_waiters(limit, 1)
        limit.leave()
    assert (limit.in_use, limit.waiting) == (1, 0)


async def test_a_waiter_cancelled_as_it_is_given_the_slot_hands_it_on() -> None:
    limit = RequestLimit(1, 5)
    assert await limit.enter()
    served: list[str] = []

    async def first(scope: anyio.CancelScope) -> None:
        with scope:
            await limit.enter()
            served.append("first")  # never: the cancellation comes first

    async def second() -> None:
        assert await limit.enter()
        served.append("second")
        limit.leave()

    async with anyio.create_task_group() as task_group:
        scope = anyio.CancelScope()
        task_group.start_soon(first, scope)
        await wait_for_waiters(limit, 1)
        task_group.start_soon(second)
        await wait_for_waiters(limit, 2)
        scope.cancel()  # the first waiter is cancelled, and before it runs again...
        limit.leave()  # ...is handed the slot
    assert served == ["second"]  # the slot was not lost with the cancelled waiter
    assert (limit.in_use, limit.waiting) == (0, 0)


async def test_with_no_queue_a_request_past_the_slots_is_refused() -> None:
    limit = RequestLimit(1, 0)
    assert await limit.enter()
    assert await limit.enter() is False
    limit.leave()
    assert await limit.enter()


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="max_concurrent must be >= 1"):
        RequestLimit(0, 1)


def test_try_enter_takes_a_free_slot_only_when_nobody_waits() -> None:
    limit = RequestLimit(1, 1)
    assert limit.try_enter() is True
    assert limit.try_enter() is False  # no slot: it neither waits nor queues
    assert limit.waiting == 0
    limit.leave()
    assert limit.try_enter() is True
