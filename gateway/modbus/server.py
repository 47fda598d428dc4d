"""Modbus TCP and RTU service: every unit answered from its UnitBackend.

The gateway frames and dispatches Modbus itself (``modbus_pdu``, ``modbus_tcp``,
``modbus_rtu``) instead of running pymodbus' server: pymodbus keeps its own register memory,
answers an unknown unit with 0x04, an unknown function with function byte 0x80, only the
first of several requests in one TCP segment, and has no connection limit, idle timeout,
per-unit identification or RTU silence. Reads are answered synchronously from the backend,
writes run as tasks so a slow breaker motor on one connection never delays another.
pymodbus stays the reference: tests/test_modbus_malformed.py compares our answers with a bare
pymodbus server byte for byte and lists the deliberate differences.

Exception codes answered: 0x01 unknown function, FC8 sub-function or MEI type; 0x02 address
outside the tables (from the backend) or FC43 object not present; 0x03 quantity out of range,
byte count mismatch, truncated PDU, bad coil value, bad FC43 read code; 0x04 a backend
failure; 0x0B (TCP, configurable 0x0A) unknown unit; plus whatever the backend returns.
The session adds the write safety rules (:mod:`gateway.modbus.session`): 0x06 for a switch write
that would wait behind other requests on its connection, 0x01 for a switch write through the
TCP unit 0/255 alias, silence (and a count) for an RTU broadcast that would switch, and 0x0A
for a write that arrives while the service stops.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.errors import ConfigError
from gateway.modbus.pdu import UnitBackend
from gateway.modbus.rtu import RtuServer
from gateway.modbus.session import Router
from gateway.modbus.tables import ExceptionCode
from gateway.modbus.tcp import TcpServer

__all__ = ["ModbusService", "RtuListener", "TcpListener", "UnitBackend"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TcpListener:
    """Where and how to serve Modbus TCP."""

    host: str
    port: int
    max_connections: int = 32
    idle_timeout_s: float = 60.0
    unknown_unit_exception: int = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE


@dataclass(frozen=True, slots=True)
class RtuListener:
    """The serial line to serve Modbus RTU on."""

    port: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    rs485_rts: bool = False
    echo_suppression: bool = False
    turnaround_delay_s: float = 0.0


class ModbusService:
    """Serves the backends over TCP and/or RTU at the same time."""

    def __init__(
        self,
        backends: dict[int, UnitBackend],
        tcp: TcpListener | None,
        rtu: RtuListener | None,
        identification: dict[int, str] | None = None,
        *,
        allow_broadcast_switch: bool = False,
    ) -> None:
        _check(backends, tcp, rtu)
        self._tasks: set[asyncio.Task[bytes]] = set()
        ident = dict(identification or {})
        self._tcp: TcpServer | None = None
        self._rtu: RtuServer | None = None
        self._routers = [
            Router(
                backends, ident, unknown, self._tasks, allow_broadcast_switch=allow_broadcast_switch
            )
            for unknown in ([tcp.unknown_unit_exception] if tcp else []) + ([None] if rtu else [])
        ]
        if tcp is not None:
            self._tcp = TcpServer(
                self._routers[0], tcp.host, tcp.port, tcp.max_connections, tcp.idle_timeout_s
            )
        if rtu is not None:
            self._rtu = RtuServer(
                self._routers[-1],
                rtu.port,
                baudrate=rtu.baudrate,
                parity=rtu.parity,
                stopbits=rtu.stopbits,
                rs485_rts=rtu.rs485_rts,
                echo_suppression=rtu.echo_suppression,
                turnaround_delay_s=rtu.turnaround_delay_s,
            )

    @property
    def tcp_port(self) -> int:
        """The bound TCP port (0 if TCP is off)."""
        return self._tcp.port if self._tcp is not None else 0

    def connections(self) -> dict[str, int]:
        """Open client connections per listener (the HTTP endpoint's metrics)."""
        return {} if self._tcp is None else {"tcp": len(self._tcp.connections)}

    async def start(self) -> None:
        """Bind the TCP port and open the serial port."""
        if self._tcp is not None:
            await self._tcp.start()
        if self._rtu is not None:
            try:
                await self._rtu.start()
            except BaseException:
                await self.stop()
                raise

    async def stop(self, grace_s: float = 0.0) -> None:
        """Close everything; writes in flight get up to ``grace_s`` to be answered first.

        Meanwhile new writes are refused (0x0A) and reads are still answered; what is left
        after the grace is cancelled.
        """
        await self._finish_writes(grace_s)
        if self._tcp is not None:
            await self._tcp.stop()
        if self._rtu is not None:
            await self._rtu.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish_writes(self, grace_s: float) -> None:
        for router in self._routers:
            router.closing = True
        tasks = list(self._tasks)
        if grace_s <= 0 or not tasks:
            return
        _LOGGER.info(
            "stopping: waiting up to %.1f s for %d write(s) in flight", grace_s, len(tasks)
        )
        await asyncio.wait(tasks, timeout=grace_s)
        await asyncio.sleep(0)  # the done callbacks send the answers


def _check(
    backends: dict[int, UnitBackend], tcp: TcpListener | None, rtu: RtuListener | None
) -> None:
    errors = []  # unit ids are checked once, with the configuration (gateway.config)
    if tcp is not None and tcp.unknown_unit_exception not in (0x0A, 0x0B):
        errors.append(
            f"tcp.unknown_unit_exception must be 0x0A or 0x0B, not {tcp.unknown_unit_exception}"
        )
    if tcp is not None and tcp.max_connections < 1:
        errors.append(f"tcp.max_connections must be at least 1, got {tcp.max_connections}")
    if tcp is not None and tcp.idle_timeout_s <= 0:
        errors.append(f"tcp.idle_timeout_s must be positive, got {tcp.idle_timeout_s}")
    if rtu is not None and rtu.parity not in ("N", "E", "O"):
        errors.append(f"rtu.parity must be N, E or O, got {rtu.parity!r}")
    if rtu is not None and rtu.stopbits not in (1, 2):
        errors.append(f"rtu.stopbits must be 1 or 2, got {rtu.stopbits}")
    if rtu is not None and (rtu.baudrate <= 0 or rtu.turnaround_delay_s < 0):
        errors.append("rtu.baudrate must be positive and rtu.turnaround_delay_s not negative")
    if errors:
        raise ConfigError(errors)
