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
import ssl
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.errors import ConfigError
from gateway.modbus.access import Admit, ClientIdentity, Guard, ListenerCounters
from gateway.modbus.pdu import UnitBackend
from gateway.modbus.rtu import RtuServer
from gateway.modbus.session import Router
from gateway.modbus.tables import ExceptionCode
from gateway.modbus.tcp import TcpServer

__all__ = ["ListenerSecurity", "ModbusService", "RtuListener", "TcpListener", "UnitBackend"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TcpListener:
    """Where and how to serve Modbus TCP."""

    host: str
    port: int
    max_connections: int = 32
    idle_timeout_s: float = 60.0
    unknown_unit_exception: int = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
    max_connections_per_ip: int = 16
    adu_timeout_s: float = 3.0
    allow: tuple[str, ...] = ()  # client networks (CIDR); empty: everybody
    write_allow: tuple[str, ...] | None = None  # who may write over plain TCP; None: everybody


@dataclass(frozen=True, slots=True)
class ListenerSecurity:
    """What a security policy plugs into one TCP listener (all optional)."""

    ssl_context: ssl.SSLContext | None = None
    admit: Admit | None = None
    guard: Guard | None = None


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
        tls: tuple[TcpListener, ListenerSecurity] | None = None,
        tcp_security: ListenerSecurity | None = None,
    ) -> None:
        _check(backends, tcp, rtu)
        if tls is not None:
            _check(backends, tls[0], None)
        self._tasks: set[asyncio.Task[bytes]] = set()
        self._backends = backends
        self._ident = dict(identification or {})
        self._tcp: TcpServer | None = None
        self._tls: TcpServer | None = None
        self._rtu: RtuServer | None = None
        self._allow_broadcast_switch = allow_broadcast_switch
        self._routers: weakref.WeakSet[Router] = weakref.WeakSet()  # told when stopping
        self._closing = False
        if tcp is not None:
            self._tcp = self._tcp_server(tcp, tcp_security or ListenerSecurity())
        if tls is not None:
            self._tls = self._tcp_server(*tls)
        if rtu is not None:
            self._rtu = RtuServer(
                self._router(self._backends, None),
                rtu.port,
                baudrate=rtu.baudrate,
                parity=rtu.parity,
                stopbits=rtu.stopbits,
                rs485_rts=rtu.rs485_rts,
                echo_suppression=rtu.echo_suppression,
                turnaround_delay_s=rtu.turnaround_delay_s,
            )

    def _tcp_server(self, listener: TcpListener, security: ListenerSecurity) -> TcpServer:
        return TcpServer(
            self._router_for(listener.unknown_unit_exception, security.guard),
            listener.host,
            listener.port,
            listener.max_connections,
            listener.idle_timeout_s,
            max_per_ip=listener.max_connections_per_ip,
            adu_timeout_s=listener.adu_timeout_s,
            ssl_context=security.ssl_context,
            admit=security.admit,
        )

    def _router_for(
        self, unknown_unit: int, guard: Guard | None
    ) -> Callable[[ClientIdentity], Router]:
        """One shared router, or with a guard one per connection over its guarded backends."""
        shared = self._router(self._backends, unknown_unit)
        if guard is None:
            return lambda _client: shared

        def router_for(client: ClientIdentity) -> Router:
            guarded = {u: guard(u, b, client) for u, b in self._backends.items()}
            return self._router(guarded, unknown_unit)

        return router_for

    def _router(self, backends: Mapping[int, UnitBackend], unknown_unit: int | None) -> Router:
        router = Router(
            backends,
            self._ident,
            unknown_unit,
            self._tasks,
            allow_broadcast_switch=self._allow_broadcast_switch,
        )
        router.closing = self._closing
        self._routers.add(router)
        return router

    @property
    def counters(self) -> Mapping[str, ListenerCounters]:
        """Refusal counters of the TCP and TLS listeners that run."""
        servers = {"tcp": self._tcp, "tls": self._tls}
        return {name: s.counters for name, s in servers.items() if s is not None}

    @property
    def tls_port(self) -> int:
        """The bound TLS port (0 if TLS is off)."""
        return self._tls.port if self._tls is not None else 0

    @property
    def tcp_port(self) -> int:
        """The bound TCP port (0 if TCP is off)."""
        return self._tcp.port if self._tcp is not None else 0

    def connections(self) -> dict[str, int]:
        """Open client connections per listener (the HTTP endpoint's metrics)."""
        servers = {"tcp": self._tcp, "tls": self._tls}
        return {name: len(s.connections) for name, s in servers.items() if s is not None}

    async def start(self) -> None:
        """Bind the TCP port and open the serial port."""
        try:
            for server in (self._tcp, self._tls):
                if server is not None:
                    await server.start()
            if self._rtu is not None:
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
        for server in (self._tcp, self._tls):
            if server is not None:
                await server.stop()
        if self._rtu is not None:
            await self._rtu.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish_writes(self, grace_s: float) -> None:
        self._closing = True
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
    if tcp is not None and tcp.max_connections_per_ip < 1:
        errors.append(
            f"tcp.max_connections_per_ip must be at least 1, got {tcp.max_connections_per_ip}"
        )
    if tcp is not None and not tcp.adu_timeout_s > 0:
        errors.append(f"tcp.adu_timeout_s must be positive, got {tcp.adu_timeout_s}")
    if rtu is not None and rtu.parity not in ("N", "E", "O"):
        errors.append(f"rtu.parity must be N, E or O, got {rtu.parity!r}")
    if rtu is not None and rtu.stopbits not in (1, 2):
        errors.append(f"rtu.stopbits must be 1 or 2, got {rtu.stopbits}")
    if rtu is not None and (rtu.baudrate <= 0 or rtu.turnaround_delay_s < 0):
        errors.append("rtu.baudrate must be positive and rtu.turnaround_delay_s not negative")
    if errors:
        raise ConfigError(errors)
