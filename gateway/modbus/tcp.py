"""Modbus TCP transport: MBAP framing, pipelining, limits and timeouts, plain or TLS.

Greedy and slow clients are kept from starving others: a read event answers at most
``BATCH_ADUS`` requests, then reading from that socket pauses and the rest waits for the next
loop turn (every other connection gets its turn first); a connection whose replies are not
read, or whose writes queue up, is not read at all. An ADU must arrive whole within
``adu_timeout_s`` of its first byte, and one address holds at most ``max_per_ip`` slots.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import cast

from gateway.modbus.access import Admit, ClientIdentity, ListenerCounters, identify, peer_identity
from gateway.modbus.limits import AddressCounts, RateLimitedLog
from gateway.modbus.mbap import encode_adu, has_adu, split_adus
from gateway.modbus.session import OrderedReplies, ReplyContext, Router
from gateway.modbus.tls_accept import TlsListener

__all__ = ["TcpServer"]

_LOGGER = logging.getLogger(__name__)

# Requests queued behind a slow write before we stop reading from that client.
MAX_BACKLOG = 256
# Requests answered per turn of the event loop and connection: bounds the work per event.
BATCH_ADUS = 16
# Unsent replies (bytes) before a client that does not read them is no longer read either.
WRITE_HIGH_WATER = 16 * 1024
HANDSHAKE_TIMEOUT_S = 10.0  # at least; the ADU timeout if that is longer

RouterFor = Callable[[ClientIdentity], Router]


class TcpServer:
    """Accepts Modbus TCP (or Modbus/TCP Security) clients on one port."""

    def __init__(
        self,
        router_for: RouterFor,
        host: str,
        port: int,
        max_connections: int,
        idle_timeout_s: float,
        *,
        max_per_ip: int | None = None,
        adu_timeout_s: float = 3.0,
        ssl_context: ssl.SSLContext | None = None,
        admit: Admit | None = None,
    ) -> None:
        self.router_for = router_for
        self._address = (host, port)
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip or max_connections
        self.idle_timeout_s = idle_timeout_s
        self.adu_timeout_s = adu_timeout_s
        self.ssl_context = ssl_context
        self.admit = admit
        self.kind = "tls" if ssl_context is not None else "tcp"
        self.connections: set[_TcpConnection] = set()
        self.per_ip = AddressCounts()
        self.counters = ListenerCounters()
        self.warn = RateLimitedLog(_LOGGER)
        self._server: asyncio.Server | TlsListener | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        if self._server is None or not self._server.sockets:
            return self._address[1]
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting."""
        if self.ssl_context is None:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: _TcpConnection(self), *self._address, reuse_address=True
            )
        else:
            timeout = max(self.adu_timeout_s, HANDSHAKE_TIMEOUT_S)
            listener = TlsListener(self._admit_tls, self.ssl_context, timeout, self._failed)
            self._server = await listener.start(*self._address)
        name = "Modbus/TCP Security (TLS)" if self.ssl_context else "Modbus TCP"
        _LOGGER.info("%s listening on %s:%d", name, self._address[0], self.port)

    def _admit_tls(self, peer: object) -> asyncio.Protocol | None:
        connection = _TcpConnection(self)
        return connection if connection.admit(peer) else None

    def _failed(self, peer: object, err: BaseException) -> None:
        self.counters.handshake_failed += 1
        client = peer_identity(peer, self.kind)
        reason = str(err) or ("timed out" if isinstance(err, TimeoutError) else repr(err))
        self.warn.warning(client.host, "tls: handshake with %s failed: %s", client.address, reason)

    async def stop(self) -> None:
        """Stop accepting and close every connection."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.abort()
        await self._server.wait_closed()
        self._server = None

    def refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused, or None; counted."""
        if self.admit is not None and not self.admit(host):
            self.counters.refused_not_allowed += 1
            return "not in the allow list"
        if len(self.connections) >= self.max_connections:
            self.counters.refused_limit += 1
            return f"{self.max_connections} connections open"
        if self.per_ip.get(host) >= self.max_per_ip:
            self.counters.refused_limit += 1
            return f"{self.max_per_ip} connections open from {host}"
        return None


class _TcpConnection(asyncio.Protocol):
    """One client connection; several ADUs per segment are answered in order."""

    def __init__(self, server: TcpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._admitted = False
        self._data = b""
        self._position = 0
        self._peer = "?"
        self._host = ""
        self._replies: OrderedReplies | None = None
        self._paused: set[str] = set()
        self._batch_handle: asyncio.Handle | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._adu_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._loop = asyncio.get_running_loop()

    def admit(self, peer: object) -> bool:
        """Check the client's address and the limits; count it as open (False: refused)."""
        identity = peer_identity(peer, self._server.kind)
        self._peer, self._host = identity.address, identity.host
        reason = self._server.refusal(identity.host)
        if reason is not None:
            self._server.warn.warning(
                identity.host, "%s: refusing %s: %s", self._server.kind, self._peer, reason
            )
            return False
        self._admitted = True
        self._server.connections.add(self)
        self._server.per_ip.add(self._host)
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        if not self._admitted and not self.admit(transport.get_extra_info("peername")):
            transport.abort()
            return
        self._transport = transport
        identity = identify(transport, self._server.kind)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._replies = OrderedReplies(
            self._server.router_for(identity), self._peer, self._send, self._backlog_drained
        )
        self._last_activity = self._loop.time()
        self._arm_idle_timer(self._server.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self._server.connections:
            self._server.connections.discard(self)
            self._server.per_ip.remove(self._host)
        if self._replies is not None:
            self._replies.close()
        for handle in (self._idle_handle, self._adu_handle, self._batch_handle):
            if handle is not None:
                handle.cancel()
        self._transport = None

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._replies is None:
            return
        self._last_activity = self._loop.time()
        if self._position < len(self._data):
            self._data = self._data[self._position :] + data
        else:
            self._data = data  # a new head: _answer_batch starts its clock if it stays whole
            self._arm_adu_timer(start=False)
        self._position = 0
        if self._batch_handle is None:
            self._answer_batch()

    def _answer_batch(self) -> None:
        """Answer up to BATCH_ADUS complete ADUs; come back next loop turn for more."""
        self._batch_handle = None
        replies, data = self._replies, self._data
        if replies is None or self._transport is None:
            return
        adus, self._position, bad = split_adus(data, self._position, BATCH_ADUS)
        for tid, pid, unit, pdu in adus:
            if pid != 0:
                _LOGGER.debug("%s: dropped ADU with protocol id %d", self._peer, pid)
                continue
            replies.submit(unit, pdu, (tid, unit, pdu[0]))
        if bad is not None:
            self._server.counters.closed_malformed += 1
            self._close_warning(f"MBAP length {bad} out of range")
            return
        if adus or self._adu_handle is None:
            self._arm_adu_timer()
        if replies.backlog > MAX_BACKLOG:
            self._paused.add("backlog")
        self._update_reading()

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests meanwhile.
        self._paused.add("write")
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused.discard("write")
        self._update_reading()

    def _backlog_drained(self) -> None:
        self._paused.discard("backlog")
        self._update_reading()

    def _update_reading(self) -> None:
        """Read the socket only when nothing is pending; schedule the next batch."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        more = not self._paused and has_adu(self._data, self._position)
        if more and self._batch_handle is None:
            self._batch_handle = self._loop.call_soon(self._answer_batch)
        paused = bool(self._paused) or more
        if paused and transport.is_reading():
            transport.pause_reading()
        elif not paused and not transport.is_reading():
            transport.resume_reading()

    def _send(self, pdu: bytes, context: ReplyContext) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        tid, unit, _fc = context
        transport.write(encode_adu(tid, unit, pdu))

    def _close_warning(self, reason: str) -> None:
        self._server.warn.warning(self._host, "closing %s: %s", self._peer, reason)
        if self._transport is not None:
            self._transport.close()

    def _arm_adu_timer(self, start: bool = True) -> None:
        """(Re)start the clock of the incomplete ADU at the buffer's head, if there is one."""
        if self._adu_handle is not None:
            self._adu_handle.cancel()
            self._adu_handle = None
        if start and self._position < len(self._data):
            self._adu_handle = self._loop.call_later(
                self._server.adu_timeout_s, self._adu_timed_out
            )

    def _adu_timed_out(self) -> None:
        self._adu_handle = None
        if self._batch_handle is not None or self._paused:
            self._arm_adu_timer()  # complete ADUs wait for their turn: not the client's fault
            return
        self._server.counters.closed_incomplete += 1
        got = len(self._data) - self._position
        self._close_warning(f"{got} bytes of an ADU in {self._server.adu_timeout_s:g} s")

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_handle = self._loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        timeout = self._server.idle_timeout_s
        idle_for = self._loop.time() - self._last_activity
        if self._replies is not None and self._replies.pending:
            idle_for = 0.0  # a slow write in progress is not idleness
        if idle_for >= timeout:
            _LOGGER.info("closing %s: idle for %.1f s", self._peer, idle_for)
            if self._transport is not None:
                self._transport.close()
            return
        self._arm_idle_timer(timeout - idle_for)
