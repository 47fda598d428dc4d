"""DP writes (0x06): one command in flight, each confirmed by the MCU's report of that DP.

The MCU never NAKs: the only confirmation of a write is its 0x07 report. A write is sent
once, resent once halfway through its window if unconfirmed (values are absolute), and
never sent again once the window has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import LinkClosedError, LinkNotReadyError, McuTimeoutError
from gateway.tuya.protocol import Command, DpValue, Frame

__all__ = ["Confirmation", "WriteGate"]

_LOGGER = logging.getLogger(__name__)

Pace = Callable[[], Awaitable[None]]
Send = Callable[[Frame], None]  # raises LinkNotReadyError when the link is not READY


class Confirmation:
    """Waits for the report of one written DP; remembers a report with another value."""

    def __init__(self, dp: DpValue) -> None:
        self.target = dp
        self.future: asyncio.Future[DpValue] = asyncio.get_running_loop().create_future()
        self.last_other: DpValue | None = None

    def offer(self, dp: DpValue) -> None:
        if self.future.done():
            return
        if dp == self.target:
            self.future.set_result(dp)
        else:
            self.last_other = dp

    def fail(self, message: str) -> None:
        if not self.future.done():
            self.future.set_exception(LinkClosedError(message))

    async def wait_until(self, when: float) -> DpValue | None:
        """The confirming report, or None if none came by loop time ``when``."""
        if self.future.done():
            return self.future.result()
        try:
            async with asyncio.timeout_at(when):
                return await asyncio.shield(self.future)
        except TimeoutError:
            return None


class WriteGate:
    """Serialises DP commands and matches them to the MCU's reports."""

    def __init__(self, pace: Pace, send: Send) -> None:
        self._pace = pace
        self._send = send
        self._lock = asyncio.Lock()
        self._waiting: dict[int, list[Confirmation]] = {}

    def offer(self, dp: DpValue) -> None:
        """Every DP report from the MCU comes through here."""
        for waiter in self._waiting.get(dp.dpid, ()):
            waiter.offer(dp)

    def fail_all(self, message: str) -> None:
        """The link left READY: every waiting write fails at once."""
        for waiters in self._waiting.values():
            for waiter in waiters:
                waiter.fail(message)

    async def write(self, dp: DpValue, window_s: float) -> DpValue:
        """Send ``dp`` and return the MCU's report of it.

        A report with the written value returns at once. If only other values were reported
        when the window ends, the last one is returned (the caller compares); if none was,
        McuTimeoutError. LinkNotReadyError: nothing was sent. LinkClosedError: the link
        went down or stopped after sending.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window_s
        # no deadline on the lock itself: its holder gives it up within its own window, and
        # the deadline is checked again before anything is sent
        async with self._lock:
            waiter = Confirmation(dp)
            self._waiting.setdefault(dp.dpid, []).append(waiter)
            try:
                return await self._confirm(waiter, deadline, window_s)
            finally:
                self._forget(waiter)

    async def _confirm(self, waiter: Confirmation, deadline: float, window_s: float) -> DpValue:
        loop = asyncio.get_running_loop()
        dp = waiter.target
        frame = Frame(Command.DP_COMMAND, dp.encode())
        await self._send_before(frame, deadline, window_s)
        confirmed = await waiter.wait_until(loop.time() + (deadline - loop.time()) / 2)
        if confirmed is None:
            _LOGGER.info(
                "link: %s unconfirmed halfway through its window; resending", dp.describe()
            )
            try:
                await self._send_before(frame, deadline, window_s)
            except McuTimeoutError:
                pass  # the window ended while pacing: judge what was reported
            except LinkNotReadyError as err:
                raise LinkClosedError(f"{dp.describe()} was sent but not confirmed: {err}") from err
            confirmed = await waiter.wait_until(deadline)
        if confirmed is not None:
            return confirmed
        if waiter.last_other is not None:
            return waiter.last_other
        raise McuTimeoutError(
            f"the MCU did not report dp{dp.dpid} within {window_s:g} s of writing"
            f" {dp.describe()}; the command will not be sent again"
        )

    async def _send_before(self, frame: Frame, deadline: float, window_s: float) -> None:
        await self._pace()
        if asyncio.get_running_loop().time() >= deadline:
            raise McuTimeoutError(
                f"{frame.describe()} not sent: its {window_s:g} s window ended while waiting"
                " for the link"
            )
        self._send(frame)

    async def send_unconfirmed(self, dp: DpValue) -> None:
        """Send ``dp`` once, in turn with other commands, without waiting for a report."""
        async with self._lock:
            await self._pace()
            self._send(Frame(Command.DP_COMMAND, dp.encode()))

    def _forget(self, waiter: Confirmation) -> None:
        waiters = self._waiting.get(waiter.target.dpid, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiting.pop(waiter.target.dpid, None)
        if waiter.future.done() and not waiter.future.cancelled():
            waiter.future.exception()  # retrieved: no "never retrieved" warning
        waiter.future.cancel()
