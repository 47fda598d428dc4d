"""UnitBackend: one Modbus unit served from a register map, the cache and the link's write gate.

Reads never touch the MCU: they come from one cache snapshot, so every point of a block read
is as of the same instant. Writes go to :class:`gateway.unit.writer.UnitWriter`, which
validates and plans them and hands each DP to the link's one write gate.

Exception codes, and when:

- 0x01 ILLEGAL_FUNCTION: a write while the gateway is read-only (the write function codes are
  switched off for the whole server, which is not the same as one address being read-only), or
  a write to an input table.
- 0x02 ILLEGAL_DATA_ADDRESS: an address no point covers, or a write to a read-only point.
- 0x03 ILLEGAL_DATA_VALUE: part of a multi-register point, out of range, off step, not 0/1.
- 0x04 SERVER_DEVICE_FAILURE: the MCU reported a different value; the command would need a
  frame longer than the MCU receives (``tuya.max_frame_data``; nothing is sent).
- 0x06 SERVER_DEVICE_BUSY: the breaker motor was operated less than switch_interval_s ago,
  or the motor write would have to wait behind another write (answered at once, never queued).
- 0x0B GATEWAY_TARGET_NO_RESPONSE: stale source with the exception policy; link not READY;
  no confirmation in time (for a motor DP: sent, outcome unknown); no cached record list to
  modify; the write's window (which starts when the request arrives) ran out, or nearly, while
  it waited for an earlier write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.specs import RegisterMap
from gateway.tuya.writes import WriteGate
from gateway.unit.blocks import BlockReader
from gateway.unit.cache import CacheSnapshot, DatapointCache
from gateway.unit.status import LiveStatus, unit_status
from gateway.unit.values import StatusValues
from gateway.unit.writer import BackendStats, UnitWriter

__all__ = ["BackendStats", "StatusValues", "UnitBackend"]

_LOGGER = logging.getLogger(__name__)


class UnitBackend:
    """One Modbus unit; no pymodbus here."""

    def __init__(
        self,
        regmap: RegisterMap,
        cache: DatapointCache,
        gate: WriteGate,
        status: Callable[[], StatusValues] | None = None,
        *,
        switch_interval_s: float = 2.0,
        read_only: bool = False,
        unit_id: int | None = None,
        confirm_timeout_s: float | None = None,
    ) -> None:
        self.regmap = regmap
        self.cache = cache
        self.identification: dict[int, str] = dict(regmap.device.identification)
        self.stats = BackendStats()
        self.read_only = read_only
        self.unit_id = unit_id
        self._status = status
        self._blocks = BlockReader(regmap)
        self._writer = UnitWriter(
            regmap,
            cache,
            gate,
            self.stats,
            switch_interval_s=switch_interval_s,
            confirm_timeout_s=confirm_timeout_s,
            unit_id=unit_id,
        )

    def count_request(self, exception: ExceptionCode | None, function_code: int = 0) -> None:
        """Count one answered request (the server calls this; per function: gateway.web)."""
        self.stats.modbus_requests += 1
        if exception is not None:
            self.stats.modbus_exceptions += 1

    def status_values(self, snapshot: CacheSnapshot) -> dict[str, bool | int | float | str | None]:
        """Every status value a map can place, live."""
        return unit_status(snapshot, self.stats, self._status)

    def _live(self, snapshot: CacheSnapshot) -> StatusValues:
        return LiveStatus(snapshot, self.stats, self._status)

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        """Bits (0/1) or register words from one cache snapshot."""
        if count < 1:
            return ExceptionCode.ILLEGAL_DATA_VALUE
        answer = self._blocks.read(table, address, count, self.cache.snapshot(), self._live)
        if answer is None:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        words, saturated = answer
        for point in saturated:
            self.stats.register_saturations += 1
            _LOGGER.debug("%s saturates %s", point.name, point.format)
        return words

    def moves_motor(self, table: Table, address: int, count: int) -> bool:
        """Whether a write of these addresses would operate the breaker motor."""
        return not self.read_only and self._writer.moves_motor(table, address, count)

    def count_broadcast_refused(self) -> None:
        """Count a broadcast (or unit 0/255) motor write the router refused."""
        self.stats.broadcast_writes_refused += 1

    def refused(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        code: ExceptionCode,
        why: str,
    ) -> None:
        """A write the server refused before it came here (the logging wrapper names points)."""
        _LOGGER.warning(
            "write refused: %s %d = %s by %s: %s (0x%02X)",
            table.value,
            address,
            values,
            client,
            why,
            code,
        )

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None:
        """Validate, send and confirm a write; None on success, else the exception code.

        ``arrived`` is the loop time the request arrived: its windows start then.
        """
        if self.read_only:
            return ExceptionCode.ILLEGAL_FUNCTION
        if arrived is None:
            arrived = asyncio.get_running_loop().time()
        return await self._writer.write(table, address, values, client, arrived)
