"""The write gate's wait for the report that confirms one DP write."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import LinkClosedError
from gateway.tuya.confirmation import Confirmation, DpWrite
from gateway.tuya.protocol import DpValue

SWITCH_ON = DpValue.of_bool(16, True)


def _later(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_only_the_confirming_report_ends_the_wait() -> None:
    waiter = Confirmation(DpWrite(SWITCH_ON, 5.0))
    task = asyncio.create_task(waiter.wait_until(_later(5.0)))
    await asyncio.sleep(0)
    waiter.offer(DpValue.of_value(1, 3))
    waiter.offer(DpValue.of_bool(16, False))
    assert not task.done()
    waiter.offer(SWITCH_ON)
    assert await task == SWITCH_ON
    assert waiter.last_other == DpValue.of_bool(16, False)


async def test_no_report_by_the_deadline_is_none() -> None:
    waiter = Confirmation(DpWrite(SWITCH_ON, 0.01))
    assert await waiter.wait_until(_later(0.01)) is None


async def test_a_failed_link_ends_the_wait() -> None:
    waiter = Confirmation(DpWrite(SWITCH_ON, 5.0))
    waiter.fail("the link left READY")
    with pytest.raises(LinkClosedError, match="left READY"):
        await waiter.wait_until(_later(5.0))


async def test_cancellation_that_meets_a_report_is_not_swallowed() -> None:
    # Python 3.11's asyncio.wait_for returned the report here and lost the cancellation,
    # which hung link.stop().
    waiter = Confirmation(DpWrite(SWITCH_ON, 5.0))
    task = asyncio.create_task(waiter.wait_until(_later(5.0)))
    await asyncio.sleep(0)
    waiter.offer(SWITCH_ON)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
