"""DP writes (0x06): the one gate that decides everything about a datapoint command.

The MCU never NAKs: a write's only confirmation is its 0x07 report. The gate holds the one
lock (one request's commands in flight at a time), takes every deadline from the time the
request arrived, asks the write's own ``matches`` predicate whether a report confirms it,
never sends a command with less than half of its window left, resends a DP once halfway
through its window when unconfirmed (values are absolute) but never a motor DP, and sends
nothing once the window has ended. A motor write never waits behind another request: it is
refused (BusyError). When a motor write ends unconfirmed (an old state reported meanwhile does
not count: the motor may still be moving) the gate drops the requests queued behind it, asks
the MCU for its state (0x08), and logs and counts a confirmation that arrives after the window.
A write the link drops after it was sent ends the same way: sent, outcome unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

from gateway.errors import (
    BusyError,
    FrameTooLongError,
    LinkClosedError,
    LinkError,
    LinkNotReadyError,
    McuTimeoutError,
    WriteMismatchError,
    WriteNotSentError,
)
from gateway.tuya.channel import LinkStats
from gateway.tuya.confirmation import Confirmation, DpWrite, LateWatches
from gateway.tuya.protocol import Command, DpValue, Frame

__all__ = ["MIN_WINDOW_SHARE", "DpWrite", "WriteGate", "WriteTurn"]

_LOGGER = logging.getLogger(__name__)

Pace = Callable[[], Awaitable[None]]
Send = Callable[[Frame], None]  # raises LinkNotReadyError when the link is not READY

# Sent with less than half its window left, the MCU could act after the client was told the
# write failed.
MIN_WINDOW_SHARE = 0.5


class WriteTurn:
    """The gate held for one request that arrived at loop time ``arrived``."""

    def __init__(self, gate: WriteGate, arrived: float) -> None:
        self._gate = gate
        self.arrived = arrived

    async def send(self, write: DpWrite) -> DpValue:
        """Send ``write`` and return the report that confirms it (see :class:`WriteGate`)."""
        return await self._gate.run(write, self.arrived + write.window_s)


class WriteGate:
    """Serialises DP commands, confirms them by the MCU's reports, and enforces the rules."""

    def __init__(
        self, pace: Pace, send: Send, stats: LinkStats, max_frame_data: int | None = None
    ) -> None:
        self._pace = pace
        self._send = send
        self._stats = stats
        self.max_frame_data = max_frame_data
        self._lock = asyncio.Lock()
        self._turns = 0  # requests holding the lock or waiting for it
        self._epoch = 0  # bumped to drop every request waiting for the lock
        self._last_motor: float | None = None  # loop time a motor command was last sent
        self._waiting: dict[int, list[Confirmation]] = {}
        self._late = LateWatches()

    def offer(self, dp: DpValue) -> None:
        """Every DP report from the MCU comes through here."""
        self._check_late(dp)
        for waiter in self._waiting.get(dp.dpid, ()):
            waiter.offer(dp)

    def fail_all(self, message: str) -> None:
        """The link left READY: every waiting write fails at once."""
        for waiters in self._waiting.values():
            for waiter in waiters:
                waiter.fail(message)

    def check_size(self, dp: DpValue) -> None:
        """FrameTooLongError if the 0x06 frame carrying ``dp`` is over the MCU's limit."""
        size = len(dp.encode())
        if self.max_frame_data is not None and size > self.max_frame_data:
            raise FrameTooLongError(
                f"{dp.describe()} needs {size} data bytes in one frame, the MCU receives at most"
                f" {self.max_frame_data} (tuya.max_frame_data): not sent"
            )

    @contextlib.asynccontextmanager
    async def turn(
        self,
        arrived: float,
        window_s: float,
        *,
        motor: bool = False,
        switch_interval_s: float = 0.0,
    ) -> AsyncIterator[WriteTurn]:
        """Hold the gate for one request that arrived at ``arrived``; nothing is sent yet.

        ``window_s`` is the shortest window of its DPs: a request that could not take the gate
        with at least half of it left is refused (WriteNotSentError). A motor request is
        refused (BusyError) when it would wait behind another request or comes less than
        ``switch_interval_s`` after the last motor command was sent.
        """
        if motor:
            self._refuse_motor(switch_interval_s)
        epoch = self._epoch
        self._turns += 1
        try:
            await self._acquire(arrived + (1 - MIN_WINDOW_SHARE) * window_s)
            try:
                if epoch != self._epoch:
                    raise WriteNotSentError(
                        "not sent: dropped because an earlier motor command on this link ended"
                        " unconfirmed"
                    )
                yield WriteTurn(self, arrived)
            finally:
                self._lock.release()
        finally:
            self._turns -= 1

    async def _acquire(self, latest: float) -> None:
        try:
            async with asyncio.timeout_at(latest):
                await self._lock.acquire()
        except TimeoutError as err:
            raise WriteNotSentError(
                "not sent: its window ran out while it waited behind an earlier write"
            ) from err

    def _refuse_motor(self, switch_interval_s: float) -> None:
        if self._turns:
            raise BusyError("refused: another write is in flight on this link (never queued)")
        last = self._last_motor
        now = asyncio.get_running_loop().time()
        if last is not None and now - last < switch_interval_s:
            raise BusyError(
                f"refused: the motor was operated {now - last:.1f} s ago"
                f" (switch interval {switch_interval_s:g} s)"
            )

    async def run(self, write: DpWrite, deadline: float) -> DpValue:
        """Send ``write`` (the lock is held) and return the report that confirms it.

        FrameTooLongError, WriteNotSentError, LinkNotReadyError: nothing was sent.
        WriteMismatchError: only other values were reported. McuTimeoutError: no report came.
        LinkClosedError: the link left READY after sending.
        """
        self.check_size(write.dp)
        self._late.forget(write.dp.dpid)
        waiter = Confirmation(write)
        self._waiting.setdefault(write.dp.dpid, []).append(waiter)
        try:
            return await self._confirm(waiter, deadline)
        finally:
            self._forget(waiter)

    async def _confirm(self, waiter: Confirmation, deadline: float) -> DpValue:
        loop = asyncio.get_running_loop()
        write = waiter.write
        frame = Frame(Command.DP_COMMAND, write.dp.encode())
        await self._send_first(frame, write, deadline)
        try:
            if not write.motor:
                halfway = loop.time() + (deadline - loop.time()) / 2
                if await waiter.wait_until(halfway) is None:
                    await self._resend(frame, write, deadline)
            confirmed = await waiter.wait_until(deadline)
        except LinkClosedError as err:
            await self._lost(write, err)
        if confirmed is not None:
            return confirmed
        return await self._unconfirmed(waiter, deadline)

    async def _lost(self, write: DpWrite, err: LinkClosedError) -> NoReturn:
        """The link left READY after ``write`` was sent: the MCU may still act on it."""
        self._late.watch(write, asyncio.get_running_loop().time())
        if write.motor:
            self._drop_queued(write)
            await self._query_state()
        raise LinkClosedError(f"{write.dp.describe()}: sent, outcome unknown: {err}") from err

    async def _send_first(self, frame: Frame, write: DpWrite, deadline: float) -> None:
        await self._pace()
        now = asyncio.get_running_loop().time()
        left = deadline - now
        if left < MIN_WINDOW_SHARE * write.window_s:
            raise WriteNotSentError(
                f"{write.dp.describe()} not sent: {max(left, 0.0):.3f} s of its"
                f" {write.window_s:g} s window left after waiting"
            )
        self._send(frame)
        if write.motor:
            self._last_motor = now

    async def _resend(self, frame: Frame, write: DpWrite, deadline: float) -> None:
        _LOGGER.info(
            "link: %s unconfirmed halfway through its window; resending", write.dp.describe()
        )
        await self._pace()
        if asyncio.get_running_loop().time() >= deadline:
            return  # the window ended while pacing: judge what was reported
        try:
            self._send(frame)
        except LinkNotReadyError as err:
            raise LinkClosedError(
                f"{write.dp.describe()} was sent but not confirmed: {err}"
            ) from err

    async def _unconfirmed(self, waiter: Confirmation, deadline: float) -> DpValue:
        write, other = waiter.write, waiter.last_other
        self._late.watch(write, deadline)
        if write.motor:  # a report of the old state does not stop a motor that is moving
            self._drop_queued(write)
            await self._query_state()
            last = f" (last report {other.describe()})" if other is not None else ""
            raise McuTimeoutError(
                f"the MCU did not confirm {write.dp.describe()} within {write.window_s:g} s"
                f"{last}: sent, outcome unknown; the command will not be sent again"
            )
        if other is not None:
            raise WriteMismatchError(
                f"the MCU reported {other.describe()} after {write.dp.describe()}", other
            )
        raise McuTimeoutError(
            f"the MCU did not report dp{write.dp.dpid} within {write.window_s:g} s of writing"
            f" {write.dp.describe()}; the command will not be sent again"
        )

    def _drop_queued(self, write: DpWrite) -> None:
        self._epoch += 1
        if self._turns > 1:
            _LOGGER.warning(
                "link: %s ended unconfirmed: dropping %d queued write(s)",
                write.dp.describe(),
                self._turns - 1,
            )

    async def _query_state(self) -> None:
        """Re-read the MCU's state after a motor command of unknown outcome."""
        try:
            await self._pace()
            self._send(Frame(Command.DP_QUERY))
        except LinkError as err:
            _LOGGER.info("link: state not re-read now (%s); the reconnect's query-all will", err)

    def _check_late(self, dp: DpValue) -> None:
        late = self._late.check(dp, asyncio.get_running_loop().time())
        if late is None:
            return
        self._stats.late_confirmations += 1
        _LOGGER.warning(
            "link: late confirmation: the MCU reported %s %.1f s after %s ended unconfirmed",
            dp.describe(),
            late[1],
            late[0].dp.describe(),
        )

    async def send_unconfirmed(self, dp: DpValue) -> None:
        """Send ``dp`` once, in turn with other commands, without waiting for a report."""
        self.check_size(dp)
        async with self._lock:
            await self._pace()
            self._send(Frame(Command.DP_COMMAND, dp.encode()))

    def _forget(self, waiter: Confirmation) -> None:
        dpid = waiter.write.dp.dpid
        waiters = self._waiting.get(dpid, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiting.pop(dpid, None)
        if waiter.future.done() and not waiter.future.cancelled():
            waiter.future.exception()  # retrieved: no "never retrieved" warning
        waiter.future.cancel()
