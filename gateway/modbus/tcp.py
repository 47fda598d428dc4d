"""Modbus TCP transport: MBAP framing, pipelining, connection limit and idle timeout."""

from __future__ import annotations

import asyncio
import logging
import struct

from gateway.modbus.session import OrderedReplies, ReplyContext, Router

__all__ = ["TcpServer"]

_LOGGER = logging.getLogger(__name__)

_MBAP = struct.Struct(">HHHB")
MBAP_SIZE = 7
# length counts the unit id and the PDU: at least unit + function code, at most 1 + 253.
MIN_LENGTH = 2
MAX_LENGTH = 254
# Requests queued behind a slow write before we stop reading from that client.
MAX_BACKLOG = 256


class TcpServer:
    """Accepts Modbus TCP clients on one port and answers them through a Router."""

    def __init__(
        self, router: Router, host: str, port: int, max_connections: int, idle_timeout_s: float
    ) -> None:
        self.router = router
        self._host = host
        self._port = port
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[_TcpConnection] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TcpConnection(self), self._host, self._port, reuse_address=True
        )
        _LOGGER.info("Modbus TCP listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop accepting and close every connection."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.abort()
        await self._server.wait_closed()
        self._server = None


class _TcpConnection(asyncio.Protocol):
    """One client connection; several ADUs per segment are answered in order."""

    def __init__(self, server: TcpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._peer = "?"
        self._replies = OrderedReplies(server.router, "?", self._send, self._backlog_drained)
        self._write_paused = False
        self._backlog_paused = False
        self._idle_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._replies.client = self._peer
        if len(self._server.connections) >= self._server.max_connections:
            _LOGGER.warning(
                "refusing %s: %d connections open", self._peer, self._server.max_connections
            )
            transport.close()
            return
        self._server.connections.add(self)
        self._last_activity = self._loop.time()
        self._arm_idle_timer(self._server.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._replies.close()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._transport = None

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        position = 0
        end = len(data)
        submit = self._replies.submit
        while end - position >= MBAP_SIZE:
            tid, pid, length, unit = _MBAP.unpack_from(data, position)
            if not MIN_LENGTH <= length <= MAX_LENGTH:
                _LOGGER.warning("closing %s: MBAP length %d out of range", self._peer, length)
                self._close()
                return
            stop = position + 6 + length
            if stop > end:
                break
            pdu = data[position + MBAP_SIZE : stop]
            position = stop
            if pid != 0:
                _LOGGER.debug("%s: dropped ADU with protocol id %d", self._peer, pid)
                continue
            submit(unit, pdu, (tid, unit, pdu[0]))
        if position < end:
            self._buffer += data[position:]
        if self._replies.backlog > MAX_BACKLOG:
            self._backlog_paused = True
            self._update_reading()

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its requests meanwhile.
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _backlog_drained(self) -> None:
        self._backlog_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        paused = self._write_paused or self._backlog_paused
        if paused and transport.is_reading():
            transport.pause_reading()
        elif not paused and not transport.is_reading():
            transport.resume_reading()

    def _send(self, pdu: bytes, context: ReplyContext) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        tid, unit, _fc = context
        transport.write(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_handle = self._loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        timeout = self._server.idle_timeout_s
        idle_for = self._loop.time() - self._last_activity
        if self._replies.pending:
            idle_for = 0.0  # a slow write in progress is not idleness
        if idle_for >= timeout:
            _LOGGER.info("closing %s: idle for %.1f s", self._peer, idle_for)
            self._close()
            return
        self._arm_idle_timer(timeout - idle_for)
