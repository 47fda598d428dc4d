"""What confirms a DP write: the write itself, its predicate, and the wait for the report."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from gateway.errors import LinkClosedError
from gateway.tuya.protocol import DpValue

__all__ = ["Confirmation", "DpWrite"]


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
