"""Counters the HTTP endpoint shows, kept beside the Modbus path at the cost of a dict update.

:class:`ObservedBackend` wraps a unit's backend as the Modbus server sees it: it counts requests
and exceptions per function code, times each write from the request to the MCU's confirmation
and remembers the last writes. Nothing here formats or renders: the metrics collector and the
JSON API read these numbers when they are asked.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import time
from collections.abc import Callable

from gateway.modbus.proxy import UnitProxy
from gateway.modbus.tables import ExceptionCode, Table
from gateway.unit.backend import UnitBackend

__all__ = ["WRITE_BUCKETS_S", "ObservedBackend", "WriteRecord", "WriteTimes"]

# From a relay's report (tens of ms) to a breaker motor near its 5 s confirmation window.
WRITE_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAST_WRITES = 20


class WriteTimes:
    """A histogram of confirmed writes' durations, shared by every unit."""

    def __init__(self) -> None:
        self.counts = [0] * (len(WRITE_BUCKETS_S) + 1)  # the last one is +Inf
        self.total_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(WRITE_BUCKETS_S, seconds)] += 1
        self.total_s += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, count of writes at most that long) pairs, ending with +Inf."""
        bounds = [f"{bound:g}" for bound in WRITE_BUCKETS_S] + ["+Inf"]
        running, pairs = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


@dataclasses.dataclass(frozen=True, slots=True)
class WriteRecord:
    """One Modbus write as the console lists it."""

    at: float  # wall clock, seconds since the epoch
    client: str
    table: str
    address: int
    values: tuple[int, ...]
    points: tuple[str, ...]
    exception: int | None
    seconds: float


class ObservedBackend(UnitProxy):
    """A unit's backend with per-function counters, write timing and the last writes."""

    def __init__(
        self,
        inner: UnitBackend,
        write_times: WriteTimes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self.unit = inner  # the unit backend, for the names of its points
        self.requests: collections.Counter[int] = collections.Counter()
        self.exceptions: collections.Counter[tuple[int, int]] = collections.Counter()
        self.writes: collections.deque[WriteRecord] = collections.deque(maxlen=LAST_WRITES)
        self._write_times = write_times
        self._clock = clock

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None:
        """The inner write, timed and remembered."""
        started = self._clock()
        code = await self.inner.write(table, address, values, client, arrived)
        seconds = self._clock() - started
        if code is None:
            self._write_times.observe(seconds)
        record = WriteRecord(
            at=time.time(),
            client=client,
            table=table.value,
            address=address,
            values=tuple(values),
            points=self._names(table, address, len(values)),
            exception=None if code is None else int(code),
            seconds=seconds,
        )
        self.writes.append(record)
        return code

    def count_request(self, exception: ExceptionCode | None, function_code: int = 0) -> None:
        """Count per function code, then in the unit's own totals."""
        self.requests[function_code] += 1
        if exception is not None:
            self.exceptions[function_code, int(exception)] += 1
        self.inner.count_request(exception, function_code)

    def _names(self, table: Table, address: int, count: int) -> tuple[str, ...]:
        end = address + count
        points = self.unit.regmap.points(table)
        return tuple(p.name for p in points if p.address < end and p.end > address)
