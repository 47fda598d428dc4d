"""What confirms a DP write: the write itself, its predicate, and the wait for the report."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from gateway.errors import LinkClosedError
from gateway.tuya.protocol import DpValue

__all__ = ["LATE_WATCH_S", "Confirmation", "DpWrite", "LateWatches"]

# How long after a write ended unconfirmed a confirming report still counts as late.
LATE_WATCH_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class DpWrite:
    """One DP command: what is sent, how long the MCU has to report it, what confirms it."""

    dp: DpValue
    window_s: float
    matches: Callable[[DpValue], bool] | None = None  # None: a report equal to ``dp``
    motor: bool = False  # moves the breaker motor: never resent, never queued

    def confirmed_by(self, report: DpValue) -> bool:
        if report.dpid != self.dp.dpid:
            return False
        return report == self.dp if self.matches is None else self.matches(report)


class Confirmation:
    """Waits for the report that confirms one write; remembers the last other report."""

    def __init__(self, write: DpWrite) -> None:
        self.write = write
        self.future: asyncio.Future[DpValue] = asyncio.get_running_loop().create_future()
        self.last_other: DpValue | None = None

    def offer(self, dp: DpValue) -> None:
        if self.future.done():
            return
        if self.write.confirmed_by(dp):
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


@dataclasses.dataclass(frozen=True, slots=True)
class _Watch:
    write: DpWrite
    ended: float  # loop time it ended unconfirmed (window over, or the link went down)


class LateWatches:
    """Writes that ended unconfirmed, watched for a report that confirms them after all.

    A report of the asked value counts as a late confirmation only when the MCU's last report
    before it showed another value: a breaker already in the asked state proves nothing.
    """

    def __init__(self) -> None:
        self._watches: dict[int, _Watch] = {}
        self._reported: dict[int, DpValue] = {}  # the last report of each DP

    def watch(self, write: DpWrite, ended: float) -> None:
        """``write`` ended unconfirmed at loop time ``ended``."""
        before = self._reported.get(write.dp.dpid)
        if before is None or not write.confirmed_by(before):
            self._watches[write.dp.dpid] = _Watch(write, ended)

    def forget(self, dpid: int) -> None:
        """A new write of ``dpid``: the old one is no longer watched."""
        self._watches.pop(dpid, None)

    def check(self, dp: DpValue, now: float) -> tuple[DpWrite, float] | None:
        """(the write, seconds after it ended) when report ``dp`` confirms it late."""
        self._reported[dp.dpid] = dp
        watch = self._watches.get(dp.dpid)
        if watch is None or not watch.write.confirmed_by(dp):
            return None
        del self._watches[dp.dpid]
        after = now - watch.ended
        return (watch.write, after) if after <= LATE_WATCH_S else None
