"""The slot gate in front of vLLM: single sequences never wait for capacity, pairs wait until both
branches fit, and nothing overtakes a waiting pair."""
from __future__ import annotations

import asyncio

import pytest

from braid.server.engines.vllm.admission import SequenceSlots


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_singles_pass_pairs_wait_for_room_in_order():
    slots, order = SequenceSlots(2), []

    async def take(name: str, count: int) -> None:
        await slots.acquire(count)
        order.append(name)

    for name in ("a", "b", "c"):  # over capacity: vLLM queues the third, as its own server would
        await take(name, 1)
    assert slots.used == 3
    pair = asyncio.create_task(take("pair", 2))
    late = asyncio.create_task(take("late", 1))  # behind the pair: must not overtake it
    await _settle()
    assert order == ["a", "b", "c"]
    slots.release(1)
    await _settle()
    assert order == ["a", "b", "c"]  # 2 in use: no room for two more
    slots.release(2)
    await _settle()
    assert order == ["a", "b", "c", "pair", "late"] and slots.used == 3
    await asyncio.gather(pair, late)


async def test_cancelled_waiting_pair_unblocks_the_queue():
    slots = SequenceSlots(2)
    await slots.acquire(2)
    pair = asyncio.create_task(slots.acquire(2))
    single = asyncio.create_task(slots.acquire(1))
    await _settle()
    assert not single.done()
    pair.cancel()
    await _settle()
    assert single.done() and slots.used == 3


async def test_a_group_larger_than_capacity_is_refused():
    with pytest.raises(ValueError):
        await SequenceSlots(1).acquire(2)
