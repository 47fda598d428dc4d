"""What the link sends on a timer: keep-alive DP writes and the periodic query-all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import GatewayError
from gateway.tuya.protocol import DpValue

__all__ = ["keep_alive", "query_every"]

_LOGGER = logging.getLogger(__name__)

# A breaker that only reports while told it is watched should hear so right after a
# (re)handshake, not one keep-alive interval later.
_KEEPALIVE_READY_POLL_S = 1.0


async def keep_alive(
    is_ready: Callable[[], bool],
    send: Callable[[DpValue], Awaitable[None]],
    dp: DpValue,
    interval_s: float,
) -> None:
    """Send ``dp`` as soon as the link is READY, then every ``interval_s`` while READY."""
    while True:
        if not is_ready():
            await asyncio.sleep(min(interval_s, _KEEPALIVE_READY_POLL_S))
            continue
        try:
            await send(dp)
        except GatewayError as err:
            _LOGGER.debug("link: keepalive %s skipped: %s", dp.describe(), err)
        await asyncio.sleep(interval_s)


async def query_every(query: Callable[[], Awaitable[None]], interval_s: float) -> None:
    """Query all DPs every ``interval_s`` (the handshake has just queried them)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await query()
        except GatewayError as err:
            _LOGGER.debug("link: periodic query skipped: %s", err)
