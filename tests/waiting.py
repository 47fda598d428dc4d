"""The tests' one waiter: poll a condition until it holds."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["TIMEOUT_S", "eventually"]

TIMEOUT_S = 15.0
_POLL_S = 0.005


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    what: str = "the condition",
    timeout_s: float = TIMEOUT_S,
) -> None:
    """Wait until ``check()`` (plain or async) is true; fail the test after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(_POLL_S)
