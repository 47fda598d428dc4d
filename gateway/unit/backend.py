"""UnitBackend: one Modbus unit served from a register map, the cache and the link's writer.

Reads never touch the MCU: they come from one cache snapshot, so every point of a block read
is as of the same instant. Writes are validated completely (every point of a multi-point
write) before anything is sent, then sent one DP per command and confirmed by the MCU's report.

Exception codes, and when:

- 0x01 ILLEGAL_FUNCTION: a write while the gateway is read-only (the write function codes are
  switched off for the whole server, which is not the same as one address being read-only), or
  a write to an input table.
- 0x02 ILLEGAL_DATA_ADDRESS: an address no point covers, or a write to a read-only point.
- 0x03 ILLEGAL_DATA_VALUE: part of a multi-register point, out of range, off step, not 0/1.
- 0x04 SERVER_DEVICE_FAILURE: the MCU confirmed a different value.
- 0x06 SERVER_DEVICE_BUSY: the breaker motor was operated less than switch_interval_s ago,
  or another write to the motor's DP is still in flight (answered at once, never queued).
- 0x0B GATEWAY_TARGET_NO_RESPONSE: stale source with the exception policy; link not READY;
  no confirmation in time; no cached record list to modify; the write's window (which starts
  when the request arrives) ran out, or nearly, while it waited for an earlier write.

A write's deadline is fixed when the request arrives: waiting behind another write uses it up,
only what is left is passed to the link, and a DP with less than half its window left is
never sent (sent that late, the MCU could act after the client was told the write failed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.errors import (
    LinkError,
    LinkNotReadyError,
    WriteRejectedError,
)
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.specs import DatapointSpec, DpSource, PointSpec, RegisterMap
from gateway.tuya.protocol import DpValue
from gateway.unit.cache import CacheSnapshot, DatapointCache
from gateway.unit.dp_codecs import confirms
from gateway.unit.reads import Encoding, PointIndex, encode_point
from gateway.unit.status import unit_status
from gateway.unit.values import StatusValues
from gateway.unit.write_plan import NoRecordListError, Pending, plan_write

__all__ = ["BackendStats", "StatusValues", "UnitBackend", "WriteDp"]

_LOGGER = logging.getLogger(__name__)
_MIN_WINDOW_SHARE = 0.5  # of a DP's confirmation window, left when it is sent

WriteDp = Callable[[DpValue, float], Awaitable[DpValue]]


@dataclasses.dataclass(slots=True)
class BackendStats:
    """Live counters of one unit."""

    modbus_requests: int = 0
    modbus_exceptions: int = 0
    register_saturations: int = 0
    writes_confirmed: int = 0
    writes_failed: int = 0


class _WindowEndedError(Exception):
    """Too little of a write's window is left to send it."""


class UnitBackend:
    """One Modbus unit; no pymodbus here."""

    def __init__(
        self,
        regmap: RegisterMap,
        cache: DatapointCache,
        write_dp: WriteDp,
        status: Callable[[], StatusValues] | None = None,
        *,
        switch_interval_s: float = 2.0,
        read_only: bool = False,
        unit_id: int | None = None,
        confirm_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.regmap = regmap
        self.cache = cache
        self.identification: dict[int, str] = dict(regmap.device.identification)
        self.stats = BackendStats()
        self.read_only = read_only
        self.switch_interval_s = switch_interval_s
        self.unit_id = unit_id
        self._write_dp = write_dp
        self._status = status
        self._confirm_timeout_s = confirm_timeout_s or regmap.tuya.confirm_timeout_s
        self._clock = clock
        self._last_motor: float | None = None
        self._write_lock = asyncio.Lock()
        self._in_flight: dict[int, int] = {}  # dpid -> writes arrived and not yet answered
        self._index = PointIndex(regmap)

    def count_request(self, exception: ExceptionCode | None) -> None:
        """Count one answered request (the server calls this)."""
        self.stats.modbus_requests += 1
        if exception is not None:
            self.stats.modbus_exceptions += 1

    def status_values(self, snapshot: CacheSnapshot) -> dict[str, bool | int | float | str | None]:
        """Every status value a map can place, live."""
        return unit_status(snapshot, self.stats, self._status)

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        """Bits (0/1) or register words from one cache snapshot."""
        if count < 1:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        slots = self._index.covering(table, address, count)
        if slots is None:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        snapshot = self.cache.snapshot()
        status: StatusValues | None = None

        def encode(point: PointSpec) -> Encoding:
            return encode_point(point, self.regmap.datapoints, snapshot, status or {})

        words: list[int] = []
        for slot in slots:
            if slot.inputs is None:
                if status is None:
                    status = self.status_values(snapshot)  # only when a point shows one
                encoded, saturated = encode(slot.point)
            else:
                encoded, saturated = slot.encode(snapshot, encode)
            if isinstance(encoded, ExceptionCode):
                return encoded
            if saturated:
                self.stats.register_saturations += 1
                _LOGGER.debug("%s saturates %s", slot.point.name, slot.point.format)
            words.extend(encoded)
        skip = address - slots[0].point.address
        return words[skip : skip + count]

    async def write(
        self, table: Table, address: int, values: list[int], client: str
    ) -> ExceptionCode | None:
        """Validate, send and confirm a write; None on success, else the exception code."""
        if self.read_only or not table.is_writable:
            return ExceptionCode.ILLEGAL_FUNCTION
        if not values:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        slots = self._index.covering(table, address, len(values))
        points = None if slots is None else [slot.point for slot in slots]
        if points is None or not all(point.writable for point in points):
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        if points[0].address != address or points[-1].end != address + len(values):
            return ExceptionCode.ILLEGAL_DATA_VALUE
        specs = self._targets(points)
        busy = self._busy(specs, client)
        if busy is not None:
            return busy
        loop = asyncio.get_running_loop()
        deadlines = {spec.dpid: loop.time() + self._window(spec) for spec in specs}
        for spec in specs:
            self._in_flight[spec.dpid] = self._in_flight.get(spec.dpid, 0) + 1
        try:
            return await self._write_in_turn(points, specs, address, values, client, deadlines)
        finally:
            for spec in specs:
                self._in_flight[spec.dpid] -= 1
                if not self._in_flight[spec.dpid]:
                    del self._in_flight[spec.dpid]

    def _targets(self, points: list[PointSpec]) -> list[DatapointSpec]:
        """The DPs a write of ``points`` sends, in sending order."""
        specs: dict[int, DatapointSpec] = {}
        for point in points:
            assert isinstance(point.source, DpSource)  # only datapoint sources are writable
            spec = self.regmap.datapoints[point.source.datapoint]
            specs.setdefault(spec.dpid, spec)
        return list(specs.values())

    def _busy(self, specs: list[DatapointSpec], client: str) -> ExceptionCode | None:
        """0x06 at once for a motor write that could only be queued or is too soon."""
        for spec in specs:
            if not spec.motor:
                continue
            if spec.dpid in self._in_flight:
                _LOGGER.info("write of %s by %s refused: another is in flight", spec.name, client)
                return ExceptionCode.SERVER_DEVICE_BUSY
            if self._motor_too_soon():
                return ExceptionCode.SERVER_DEVICE_BUSY
        return None

    def _motor_too_soon(self) -> bool:
        last = self._last_motor
        return last is not None and self._clock() - last < self.switch_interval_s

    def _window(self, spec: DatapointSpec) -> float:
        return spec.confirm_timeout_s or self._confirm_timeout_s

    async def _write_in_turn(
        self,
        points: list[PointSpec],
        specs: list[DatapointSpec],
        address: int,
        values: list[int],
        client: str,
        deadlines: dict[int, float],
    ) -> ExceptionCode | None:
        """Wait for earlier writes, but never past the time this one could still be sent."""
        latest = min(deadlines[s.dpid] - _MIN_WINDOW_SHARE * self._window(s) for s in specs)
        try:
            async with asyncio.timeout_at(latest):
                await self._write_lock.acquire()
        except TimeoutError:
            _LOGGER.warning(
                "write by %s not sent: its window ran out behind an earlier write", client
            )
            self.stats.writes_failed += 1
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        try:
            return await self._write_locked(points, address, values, client, deadlines)
        finally:
            self._write_lock.release()

    async def _write_locked(
        self,
        points: list[PointSpec],
        address: int,
        values: list[int],
        client: str,
        deadlines: dict[int, float],
    ) -> ExceptionCode | None:
        snapshot = self.cache.snapshot()
        try:
            plan = plan_write(self.regmap.datapoints, points, address, values, snapshot)
        except WriteRejectedError as err:
            _LOGGER.info("write by %s refused: %s", client, err)
            return ExceptionCode.ILLEGAL_DATA_VALUE
        except NoRecordListError as err:
            _LOGGER.warning("write by %s refused: %s", client, err)
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        previous_motor = self._last_motor
        if any(pending.spec.motor for pending in plan):
            if self._motor_too_soon():
                return ExceptionCode.SERVER_DEVICE_BUSY
            self._last_motor = self._clock()  # before the await: a concurrent write sees it
        motor_sent = False
        for pending in plan:
            try:
                code = await self._send(pending, client, deadlines[pending.spec.dpid])
            except (LinkNotReadyError, _WindowEndedError) as err:
                _LOGGER.warning("write of %s by %s: %s", pending.spec.name, client, err)
                if not motor_sent:  # nothing was sent to the motor, so it did not move
                    self._last_motor = previous_motor
                code = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
            motor_sent = motor_sent or pending.spec.motor
            if code is not None:
                self.stats.writes_failed += 1
                return code
            self.stats.writes_confirmed += 1
        return None

    async def _send(self, pending: Pending, client: str, deadline: float) -> ExceptionCode | None:
        spec, dp = pending.spec, pending.dp
        assert dp is not None  # every pending DP got one point at least
        window = deadline - asyncio.get_running_loop().time()
        if window < _MIN_WINDOW_SHARE * self._window(spec):
            raise _WindowEndedError(f"not sent: {max(window, 0.0):.3f} s of its window left")
        try:
            reported = await self._write_dp(dp, window)
        except LinkNotReadyError:
            raise
        except LinkError as err:
            _LOGGER.warning("write of %s by %s failed: %s", spec.name, client, err)
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        except WriteRejectedError:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        if not confirms(dp, reported, pending.record_ids):
            _LOGGER.warning(
                "write of %s by %s: MCU reported %s after %s",
                spec.name,
                client,
                reported.describe(),
                dp.describe(),
            )
            return ExceptionCode.SERVER_DEVICE_FAILURE
        for name, old, new in pending.changes:
            _LOGGER.info(
                "write by %s, unit %s, point %s: %s -> %s", client, self.unit_id, name, old, new
            )
        return None
