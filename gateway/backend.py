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
- 0x06 SERVER_DEVICE_BUSY: the breaker motor was operated less than switch_interval_s ago.
- 0x0B GATEWAY_TARGET_NO_RESPONSE: stale source with the exception policy; link not READY;
  no confirmation in time; no cached record list to modify.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction

from gateway.codecs import confirms, encode_record_write, encode_scalar
from gateway.datapoints import CacheSnapshot, DatapointCache
from gateway.errors import (
    BusyError,
    LinkError,
    LinkNotReadyError,
    WriteMismatchError,
    WriteRejectedError,
)
from gateway.map_specs import DatapointSpec, DpSource, PointSpec, RegisterMap
from gateway.point_values import StatusValues, read_source
from gateway.protocol import DpValue
from gateway.registers import decode_value, encode_value, nan_words
from gateway.tables import ExceptionCode, Table

__all__ = ["BackendStats", "StatusValues", "UnitBackend", "WriteDp"]

_LOGGER = logging.getLogger(__name__)
_LINK_STATES = ("STOPPED", "CONNECTING", "HANDSHAKE", "READY", "DOWN")

WriteDp = Callable[[DpValue, float], Awaitable[DpValue]]


@dataclasses.dataclass(slots=True)
class BackendStats:
    """Live counters of one unit."""

    modbus_requests: int = 0
    modbus_exceptions: int = 0
    register_saturations: int = 0
    writes_confirmed: int = 0
    writes_failed: int = 0


@dataclasses.dataclass(slots=True)
class _Pending:
    """One DP a write will send, built from one or more points."""

    spec: DatapointSpec
    dp: DpValue | None = None
    payload: bytes | None = None  # record lists: the list being modified
    record_ids: tuple[int, ...] = ()
    changes: list[tuple[str, object, object]] = dataclasses.field(default_factory=list)


class _NoRecordListError(Exception):
    """The cache holds no record list to modify."""


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
        self._index = {
            table: ([p.address for p in regmap.points(table)], regmap.points(table))
            for table in Table
        }

    def count_request(self, exception: ExceptionCode | None) -> None:
        """Count one answered request (the server calls this)."""
        self.stats.modbus_requests += 1
        if exception is not None:
            self.stats.modbus_exceptions += 1

    def status_values(self, snapshot: CacheSnapshot) -> dict[str, bool | int | float | str | None]:
        """Every status value a map can place, live."""
        state = snapshot.link_state
        values: dict[str, bool | int | float | str | None] = {
            "link_online": snapshot.link_ready,
            "handshake_state": _LINK_STATES.index(state) if state in _LINK_STATES else None,
            "data_age_s": snapshot.data_age(),
        }
        if self._status is not None:
            values.update(self._status())
        values.update(dataclasses.asdict(self.stats))
        return values

    def _covering(self, table: Table, address: int, count: int) -> list[PointSpec] | None:
        """The points covering ``address .. address+count-1`` in order; None at a gap."""
        starts, points = self._index[table]
        found: list[PointSpec] = []
        position = address
        while position < address + count:
            index = bisect.bisect_right(starts, position) - 1
            if index < 0 or points[index].end <= position:
                return None
            found.append(points[index])
            position = points[index].end
        return found

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        """Bits (0/1) or register words from one cache snapshot."""
        if count < 1:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        points = self._covering(table, address, count)
        if points is None:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        snapshot = self.cache.snapshot()
        status = self.status_values(snapshot)
        words: list[int] = []
        for point in points:
            encoded = self._encode(point, snapshot, status)
            if isinstance(encoded, ExceptionCode):
                return encoded
            words.extend(encoded)
        skip = address - points[0].address
        return words[skip : skip + count]

    def _encode(
        self, point: PointSpec, snapshot: CacheSnapshot, status: StatusValues
    ) -> list[int] | ExceptionCode:
        reading = read_source(point.source, self.regmap.datapoints, snapshot, status)
        value = reading.value
        if reading.stale or value is None:
            if point.stale == "nan":
                return list(nan_words(point.format, point.word_order))
            if point.stale == "zero":
                value = "" if point.format == "string" else Fraction(0)
            elif point.stale == "exception" or value is None:
                return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        if point.table.is_bits:
            return [1 if value else 0]
        encoded = encode_value(
            value,
            point.format,
            scale=point.scale,
            word_order=point.word_order,
            registers=point.registers,
        )
        if encoded.saturated:
            self.stats.register_saturations += 1
            _LOGGER.debug("%s: %s saturates %s", point.name, value, point.format)
        return list(encoded.words)

    async def write(
        self, table: Table, address: int, values: list[int], client: str
    ) -> ExceptionCode | None:
        """Validate, send and confirm a write; None on success, else the exception code."""
        if self.read_only or not table.is_writable:
            return ExceptionCode.ILLEGAL_FUNCTION
        if not values:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        points = self._covering(table, address, len(values))
        if points is None or not all(point.writable for point in points):
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        if points[0].address != address or points[-1].end != address + len(values):
            return ExceptionCode.ILLEGAL_DATA_VALUE
        async with self._write_lock:
            return await self._write_locked(points, address, values, client)

    async def _write_locked(
        self, points: list[PointSpec], address: int, values: list[int], client: str
    ) -> ExceptionCode | None:
        snapshot = self.cache.snapshot()
        try:
            plan = self._plan(points, address, values, snapshot)
        except WriteRejectedError as err:
            _LOGGER.info("write by %s refused: %s", client, err)
            return ExceptionCode.ILLEGAL_DATA_VALUE
        except _NoRecordListError as err:
            _LOGGER.warning("write by %s refused: %s", client, err)
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        previous_motor = self._last_motor
        if any(pending.spec.motor for pending in plan):
            now = self._clock()
            if previous_motor is not None and now - previous_motor < self.switch_interval_s:
                return ExceptionCode.SERVER_DEVICE_BUSY
            self._last_motor = now  # before the await: a concurrent write sees it
        for pending in plan:
            try:
                code = await self._send(pending, client)
            except LinkNotReadyError as err:
                # Nothing was sent, so the motor did not move.
                _LOGGER.warning("write of %s by %s: %s", pending.spec.name, client, err)
                self._last_motor = previous_motor
                code = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
            if code is not None:
                self.stats.writes_failed += 1
                return code
            self.stats.writes_confirmed += 1
        return None

    def _plan(
        self, points: list[PointSpec], address: int, values: list[int], snapshot: CacheSnapshot
    ) -> list[_Pending]:
        plan: dict[int, _Pending] = {}
        status = self.status_values(snapshot)
        for point in points:
            words = values[point.address - address : point.end - address]
            if point.table.is_bits:
                decoded = decode_value(words, "bool")
            else:
                decoded = decode_value(
                    words, point.format, scale=point.scale, word_order=point.word_order
                )
            source = point.source
            assert isinstance(source, DpSource)  # only datapoint sources are writable
            spec = self.regmap.datapoints[source.datapoint]
            pending = plan.setdefault(spec.dpid, _Pending(spec))
            old = read_source(source, self.regmap.datapoints, snapshot, status).value
            pending.changes.append((point.name, _show(old), _show(decoded)))
            if source.kind == "value":
                pending.dp = encode_scalar(spec, decoded)
                continue
            if pending.payload is None:
                entry = snapshot.get(spec.dpid)
                if entry is None:
                    raise _NoRecordListError(
                        f"{point.name}: dp{spec.dpid} has not reported its records"
                    )
                pending.payload = entry.raw
            pending.payload = encode_record_write(spec, source, decoded, pending.payload)
            pending.record_ids += (spec.records[str(source.member)].rid,)
            pending.dp = DpValue.of_raw(spec.dpid, pending.payload)
        return list(plan.values())

    async def _send(self, pending: _Pending, client: str) -> ExceptionCode | None:
        spec, dp = pending.spec, pending.dp
        assert dp is not None  # every pending DP got one point at least
        timeout = spec.confirm_timeout_s or self._confirm_timeout_s
        try:
            reported = await self._write_dp(dp, timeout)
        except LinkNotReadyError:
            raise
        except LinkError as err:
            _LOGGER.warning("write of %s by %s failed: %s", spec.name, client, err)
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        except WriteMismatchError as err:
            _LOGGER.warning("write of %s by %s: %s", spec.name, client, err)
            return ExceptionCode.SERVER_DEVICE_FAILURE
        except BusyError:
            return ExceptionCode.SERVER_DEVICE_BUSY
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


def _show(value: object) -> object:
    """Fractions logged as plain numbers."""
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value
