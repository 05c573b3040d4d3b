"""A lane that meets a failing item logs it and goes on with the items behind it."""

from __future__ import annotations

import asyncio

import pytest

from consumers.lanes import KeyedLanes


async def test_a_failing_item_does_not_end_its_lane(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    async def work(item: str) -> None:
        if item == "poison":
            raise ValueError("no")
        done.append(item)

    lanes = KeyedLanes(1, 4, work)
    for item in ("first", "poison", "behind"):
        await lanes.submit(b"same key", item)
    await lanes.close(drain_seconds=5)

    assert done == ["first", "behind"]
    assert "work failed" in caplog.text


async def test_items_of_one_key_run_in_order_while_other_keys_overlap() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def work(item: str) -> None:
        if item == "a1":
            await gate.wait()
        order.append(item)
        if item == "b1":
            gate.set()

    lanes = KeyedLanes(8, 4, work)
    await lanes.submit(b"a", "a1")
    await lanes.submit(b"a", "a2")
    await lanes.submit(b"b", "b1")
    await lanes.close(drain_seconds=5)

    assert order.index("b1") < order.index("a1") < order.index("a2")
