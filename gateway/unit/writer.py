"""UnitWriter: a Modbus write validated and planned, then handed to the link's write gate.

Everything about sending (the one lock, the deadline fixed when the request arrived, what
confirms a report, the half-window and resend rules, motor writes that would wait) is decided
by :class:`gateway.tuya.writes.WriteGate`; this module only turns registers into DP commands
and the gate's verdict into a Modbus exception code. A write is validated completely (every
point of a multi-point write, and the frame size) before anything is sent, and planned again
from the cache once it holds the gate, so a record list is modified from its latest report.
"""

from __future__ import annotations

import dataclasses
import logging

from gateway.errors import (
    BusyError,
    FrameTooLongError,
    LinkError,
    NoRecordListError,
    WriteMismatchError,
    WriteNotSentError,
    WriteRejectedError,
)
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.specs import DatapointSpec, DpSource, PointSpec, RegisterMap
from gateway.tuya.writes import DpWrite, WriteGate, WriteTurn
from gateway.unit.cache import DatapointCache
from gateway.unit.dp_codecs import matcher
from gateway.unit.outcome import record
from gateway.unit.reads import PointIndex
from gateway.unit.write_plan import Pending, plan_write

__all__ = ["BackendStats", "UnitWriter"]

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class BackendStats:
    """Live counters of one unit."""

    modbus_requests: int = 0
    modbus_exceptions: int = 0
    register_saturations: int = 0
    writes_confirmed: int = 0
    writes_failed: int = 0
    broadcast_writes_refused: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    points: list[PointSpec]
    address: int
    values: list[int]
    client: str


class UnitWriter:
    """Turns Modbus writes of one unit into DP commands sent through the gate."""

    def __init__(
        self,
        regmap: RegisterMap,
        cache: DatapointCache,
        gate: WriteGate,
        stats: BackendStats,
        *,
        switch_interval_s: float,
        confirm_timeout_s: float | None,
        unit_id: int | None,
    ) -> None:
        self.regmap = regmap
        self.cache = cache
        self.stats = stats
        self.switch_interval_s = switch_interval_s
        self.unit_id = unit_id
        self._gate = gate
        self._confirm_timeout_s = confirm_timeout_s or regmap.tuya.confirm_timeout_s
        self._index = PointIndex(regmap)

    def moves_motor(self, table: Table, address: int, count: int) -> bool:
        """Whether a write of these addresses would send a motor DP."""
        slots = self._index.covering(table, address, count) if count > 0 else None
        if slots is None or not table.is_writable:
            return False
        points = [slot.point for slot in slots if slot.point.writable]
        return any(spec.motor for spec in self._targets(points))

    async def write(
        self, table: Table, address: int, values: list[int], client: str, arrived: float
    ) -> ExceptionCode | None:
        """Validate, plan and send a write; None on success, else the exception code."""
        points = self._points(table, address, values)
        if isinstance(points, ExceptionCode):
            return points
        request = _Request(points, address, values, client)
        refused = self._plan(request)  # validated at once, before waiting for anything
        if isinstance(refused, ExceptionCode):
            return refused
        specs = self._targets(points)
        try:
            async with self._gate.turn(
                arrived,
                min(self._window(spec) for spec in specs),
                motor=any(spec.motor for spec in specs),
                switch_interval_s=self.switch_interval_s,
            ) as turn:
                return await self._send_plan(turn, request)
        except BusyError as err:
            _LOGGER.info("write of %s by %s %s", _names(points), client, err)
            record(err)
            return ExceptionCode.SERVER_DEVICE_BUSY
        except WriteNotSentError as err:
            _LOGGER.warning("write of %s by %s %s", _names(points), client, err)
            record(err)
            self.stats.writes_failed += 1
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE

    def _points(
        self, table: Table, address: int, values: list[int]
    ) -> list[PointSpec] | ExceptionCode:
        if not table.is_writable:
            return ExceptionCode.ILLEGAL_FUNCTION
        if not values:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        slots = self._index.covering(table, address, len(values))
        points = None if slots is None else [slot.point for slot in slots]
        if points is None or not all(point.writable for point in points):
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        if points[0].address != address or points[-1].end != address + len(values):
            return ExceptionCode.ILLEGAL_DATA_VALUE
        return points

    def _targets(self, points: list[PointSpec]) -> list[DatapointSpec]:
        """The DPs a write of ``points`` sends, in sending order."""
        specs: dict[int, DatapointSpec] = {}
        for point in points:
            assert isinstance(point.source, DpSource)  # only datapoint sources are writable
            spec = self.regmap.datapoints[point.source.datapoint]
            specs.setdefault(spec.dpid, spec)
        return list(specs.values())

    def _window(self, spec: DatapointSpec) -> float:
        return spec.confirm_timeout_s or self._confirm_timeout_s

    def _plan(self, request: _Request) -> list[Pending] | ExceptionCode:
        """The DPs to send, from the cache as it is now; refused writes log why."""
        who = f"write of {_names(request.points)} by {request.client}"
        try:
            plan = plan_write(
                self.regmap.datapoints,
                request.points,
                request.address,
                request.values,
                self.cache.snapshot(),
            )
            for pending in plan:
                assert pending.dp is not None  # every pending DP got one point at least
                self._gate.check_size(pending.dp)
        except WriteRejectedError as err:
            _LOGGER.info("%s refused: %s", who, err)
            record(err)
            return ExceptionCode.ILLEGAL_DATA_VALUE
        except NoRecordListError as err:
            _LOGGER.warning("%s refused: %s", who, err)
            record(err)
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        except FrameTooLongError as err:
            _LOGGER.warning("%s refused: %s", who, err)
            record(err)
            return ExceptionCode.SERVER_DEVICE_FAILURE
        return plan

    async def _send_plan(self, turn: WriteTurn, request: _Request) -> ExceptionCode | None:
        plan = self._plan(request)  # again: the cache may have changed while it waited
        if isinstance(plan, ExceptionCode):
            return plan
        for pending in plan:
            code = await self._send(turn, pending, request.client)
            if code is not None:
                self.stats.writes_failed += 1
                return code
            self.stats.writes_confirmed += 1
        return None

    async def _send(self, turn: WriteTurn, pending: Pending, client: str) -> ExceptionCode | None:
        spec, dp = pending.spec, pending.dp
        assert dp is not None
        write = DpWrite(dp, self._window(spec), matcher(dp, pending.record_ids), spec.motor)
        try:
            await turn.send(write)
        except (LinkError, WriteNotSentError) as err:
            _LOGGER.warning("write of %s by %s: %s", spec.name, client, err)
            record(err, motor=spec.motor)
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
        except (WriteMismatchError, FrameTooLongError) as err:
            _LOGGER.warning("write of %s by %s: %s", spec.name, client, err)
            record(err)
            return ExceptionCode.SERVER_DEVICE_FAILURE
        for name, old, new in pending.changes:
            _LOGGER.info(
                "write by %s, unit %s, point %s: %s -> %s", client, self.unit_id, name, old, new
            )
        return None


def _names(points: list[PointSpec]) -> str:
    return ", ".join(point.name for point in points)
