"""The gate in front of store round trips: first come first served, a long queue that moves is waited
for, a stuck one is not, an outage sends everyone away at once, and no slot is ever lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.store.gate import Gate, NoSlot


async def hold(gate: Gate, seconds: float, order: list[int] | None = None, tag: int = 0) -> None:
    await gate.enter()
    try:
        assert gate.in_use <= gate.size
        if order is not None:
            order.append(tag)
        await asyncio.sleep(seconds)
    finally:
        gate.leave()


async def test_more_callers_than_slots_take_turns_in_order() -> None:
    gate = Gate(2, timeout=1.0)
    order: list[int] = []
    first = [asyncio.create_task(hold(gate, 0.05, order, k)) for k in range(2)]
    await asyncio.sleep(0)
    rest = [asyncio.create_task(hold(gate, 0.01, order, k)) for k in range(2, 12)]
    await asyncio.sleep(0)
    assert gate.in_use == 2 and gate.waiting == 10 and gate.idle == 0
    await asyncio.gather(*first, *rest)
    assert order == list(range(12))
    assert gate.describe() == {"size": 2, "in_use": 0, "idle": 2, "waiting": 0, "timeouts": 0}


async def test_a_queue_that_moves_is_waited_for_longer_than_the_timeout() -> None:
    gate = Gate(1, timeout=0.3)
    started = time.monotonic()
    await asyncio.gather(*(hold(gate, 0.1) for _ in range(10)))  # the last one waits ~0.9 s, three timeouts
    assert time.monotonic() - started >= 0.9
    assert gate.timeouts == 0


async def test_a_stuck_queue_gives_up_after_the_timeout() -> None:
    gate = Gate(1, timeout=0.2)
    stuck = asyncio.create_task(hold(gate, 10))
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(NoSlot):
        await gate.enter()
    assert 0.15 < time.monotonic() - started < 1.0
    assert gate.timeouts == 1 and gate.waiting == 0
    stuck.cancel()
    await asyncio.gather(stuck, return_exceptions=True)
    assert gate.in_use == 0
    await asyncio.wait_for(gate.enter(), 0.1)  # the slot came back


async def test_a_gate_idle_for_long_still_lets_a_new_queue_wait() -> None:
    gate = Gate(1, timeout=0.2)
    gate._moved -= 60  # nothing was freed for a minute: the store was simply idle
    await asyncio.gather(*(hold(gate, 0.05) for _ in range(3)))
    assert gate.timeouts == 0


async def test_an_outage_sends_every_waiter_away_at_once() -> None:
    gate = Gate(1, timeout=5.0)
    holder = asyncio.create_task(hold(gate, 0.3))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(gate.enter()) for _ in range(5)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    gate.store_down()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, NoSlot) for result in results)
    assert time.monotonic() - started < 0.1 and gate.timeouts == 0  # sent away, not timed out
    await holder
    assert gate.in_use == 0 and gate.idle == 1


async def test_cancelled_waiters_lose_no_slot() -> None:
    gate = Gate(1, timeout=5.0)
    await gate.enter()
    waiting = asyncio.create_task(gate.enter())
    handed = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    waiting.cancel()  # cancelled while queued
    await asyncio.gather(waiting, return_exceptions=True)
    gate.leave()  # the slot goes to `handed`...
    handed.cancel()  # ...which is cancelled before it runs: it must pass the slot on
    await asyncio.gather(handed, return_exceptions=True)
    assert gate.in_use == 0 and gate.waiting == 0
    await asyncio.wait_for(gate.enter(), 0.1)
    gate.leave()


async def test_blocking_readers_get_at_most_half_the_slots() -> None:
    gate = Gate(4, timeout=1.0)
    assert await gate.enter_blocking(0.1) and await gate.enter_blocking(0.1)
    started = time.monotonic()
    assert not await gate.enter_blocking(0.1)  # a third reader waits its patience, then reads nothing
    assert time.monotonic() - started >= 0.09
    await asyncio.wait_for(gate.enter(), 0.1)  # requests still get through
    await asyncio.wait_for(gate.enter(), 0.1)
    assert gate.in_use == 4
    gate.leave_blocking()
    assert await gate.enter_blocking(0.1) and gate.in_use == 4  # a reader's turn came back with its slot


async def test_a_waiter_cancelled_after_its_place_was_dropped_does_not_fail() -> None:
    gate = Gate(1, timeout=5.0)
    await gate.enter()
    first, second = asyncio.create_task(gate.enter()), asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    first.cancel()  # its turn is cancelled at once; its task runs later
    gate.leave()  # ...after this drops the dead turn and hands the slot to `second`
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    await second
    assert gate.in_use == 1 and gate.waiting == 0
    gate.leave()
