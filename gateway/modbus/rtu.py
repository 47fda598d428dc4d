"""Modbus RTU transport on a serial port: framing by length + CRC, echo suppression, RS485.

A request's length follows from its function code, so a frame is answered as soon as its
last byte arrives (no t3.5 wait). Another server's reply on a shared bus is stepped over by its
own length (``rtu_frames``). Bytes that make neither wait for the line to be silent for
``gap_s``: then the whole buffer is taken as one frame if its CRC holds (another layout, a
wrong byte count: answered with the right exception), else dropped. Frames for other unit ids
are skipped silently. Two replies never leave back to back: t3.5 of silence separates them.
"""

from __future__ import annotations

import asyncio
import logging
import termios
from typing import Any, cast

import serial
import serial.rs485
import serial_asyncio_fast

from gateway.modbus.rtu_frames import crc16, reply_length, request_length, whole_frame
from gateway.modbus.session import OrderedReplies, ReplyContext, Router

__all__ = ["RtuServer", "crc16"]  # crc16 re-exported: the tests build frames with it

_LOGGER = logging.getLogger(__name__)

MIN_GAP_S = 0.05  # USB-serial adapters deliver bytes in bursts up to ~16 ms apart
ECHO_SLACK_S = 0.05
REOPEN_S = 2.0
MAX_FRAME = 256


class RtuServer:
    """Serves the router's units on one serial line."""

    def __init__(
        self,
        router: Router,
        port: str,
        *,
        baudrate: int,
        parity: str,
        stopbits: int,
        rs485_rts: bool,
        echo_suppression: bool,
        turnaround_delay_s: float,
    ) -> None:
        self.router = router
        self.port = port
        self._serial_kwargs: dict[str, Any] = {
            "baudrate": baudrate,
            "parity": parity,
            "stopbits": stopbits,
            "bytesize": 8,
        }
        bits_per_char = 10 + (parity != "N") + (stopbits - 1)
        self.char_time_s = bits_per_char / baudrate
        self.gap_s = max(3.5 * self.char_time_s, MIN_GAP_S)
        self.rs485_rts = rs485_rts
        self.echo_suppression = echo_suppression
        self.turnaround_delay_s = turnaround_delay_s
        self._transport: asyncio.BaseTransport | None = None
        self._reopen_task: asyncio.Future[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Open the serial port (an error here is raised; later losses are retried)."""
        self._stopping = False
        await self._connect()
        _LOGGER.info("Modbus RTU on %s %s", self.port, self._serial_kwargs)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        port = await loop.run_in_executor(None, self._open)
        transport, _ = await serial_asyncio_fast.connection_for_serial(
            loop, lambda: _RtuProtocol(self), port
        )
        self._transport = transport

    def _open(self) -> serial.Serial:
        if "://" in self.port:
            port: serial.Serial = serial.serial_for_url(self.port, **self._serial_kwargs)
            return port
        return _SerialPort(self.port, timeout=0, write_timeout=0, **self._serial_kwargs)

    def port_lost(self, exc: Exception | None) -> None:
        """The port went away (USB adapter unplugged): reopen it until stopped."""
        self._transport = None
        if self._stopping:
            return
        _LOGGER.error("serial port %s lost (%r); reopening every %.1f s", self.port, exc, REOPEN_S)
        self._reopen_task = asyncio.ensure_future(self._reopen())

    async def _reopen(self) -> None:
        while not self._stopping:
            await asyncio.sleep(REOPEN_S)
            try:
                await self._connect()
            except (OSError, serial.SerialException) as err:
                _LOGGER.debug("reopening %s failed: %s", self.port, err)
                continue
            _LOGGER.warning("serial port %s reopened", self.port)
            return

    async def stop(self) -> None:
        """Close the serial port and stop reopening it."""
        self._stopping = True
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            await asyncio.gather(self._reopen_task, return_exceptions=True)
            self._reopen_task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            await asyncio.sleep(0)


class _RtuProtocol(asyncio.Protocol):
    def __init__(self, server: RtuServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._discarding = False
        self._gap_handle: asyncio.TimerHandle | None = None
        self._echo = bytearray()
        self._echo_handle: asyncio.TimerHandle | None = None
        # Two replies in a row without a request between them (a late answer, then the next)
        # leave t3.5 apart; a reply to a request that came after our last one needs no wait.
        self._line_free_at = 0.0  # loop time when the last reply and its t3.5 are over
        self._reads = 0  # data_received calls (a counter: the loop's clock may tick in ms)
        self._reads_at_last_reply = -1
        self._replies = OrderedReplies(server.router, f"rtu:{server.port}", self._send)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        self._transport = transport
        if self._server.rs485_rts:
            _enable_rs485(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._replies.close()
        for handle in (self._gap_handle, self._echo_handle):
            if handle is not None:
                handle.cancel()
        self._transport = None
        self._server.port_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._echo:
            data = self._strip_echo(data)
            if not data:
                return
        self._reads += 1
        if self._gap_handle is not None:
            self._gap_handle.cancel()
        self._gap_handle = self._loop.call_later(self._server.gap_s, self._line_idle)
        if self._discarding:
            return
        self._buffer += data
        self._extract()

    def _extract(self) -> None:
        buffer = self._buffer
        while buffer:
            length = request_length(buffer)
            if whole_frame(buffer, length):
                frame = bytes(buffer[:length])
                del buffer[:length]
                self._handle(frame)
                continue
            other = reply_length(buffer)  # another server's reply on a shared bus: step over it
            if whole_frame(buffer, other):
                del buffer[:other]
                continue
            if length == 0 or (length is not None and len(buffer) < length):
                return  # a request's bytes still coming
            if len(buffer) > MAX_FRAME:
                self._discard("oversize frame")
            return  # the line's silence decides: a whole frame of another layout, else junk

    def _line_idle(self) -> None:
        """t3.5 of silence: a pending whole frame of unknown layout, else junk."""
        self._gap_handle = None
        buffer = self._buffer
        if not self._discarding and len(buffer) >= 4 and crc16(buffer) == 0:
            self._handle(bytes(buffer))
        elif buffer and not self._discarding:
            _LOGGER.debug("RTU: dropped incomplete frame %s", buffer.hex(" "))
        buffer.clear()
        self._discarding = False

    def _discard(self, reason: str) -> None:
        _LOGGER.debug("RTU: %s, discarding %s", reason, self._buffer[:MAX_FRAME].hex(" "))
        self._buffer.clear()
        self._discarding = True

    def _handle(self, frame: bytes) -> None:
        unit, pdu = frame[0], frame[1:-2]
        self._replies.submit(unit, pdu, (0, unit, pdu[0]))

    def _send(self, pdu: bytes, context: ReplyContext) -> None:
        frame = bytes((context[1],)) + pdu
        frame += crc16(frame).to_bytes(2, "little")
        now = self._loop.time()
        start = now + self._server.turnaround_delay_s
        if self._reads == self._reads_at_last_reply:  # its request came before our last reply
            start = max(start, self._line_free_at)
        self._line_free_at = start + (len(frame) + 3.5) * self._server.char_time_s
        self._reads_at_last_reply = self._reads
        if start > now:
            self._loop.call_later(start - now, self._write, frame)
        else:
            self._write(frame)

    def _write(self, frame: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if self._server.echo_suppression:
            self._echo += frame
            if self._echo_handle is not None:
                self._echo_handle.cancel()
            wire_s = len(self._echo) * self._server.char_time_s
            self._echo_handle = self._loop.call_later(wire_s + ECHO_SLACK_S, self._echo.clear)
        self._transport.write(frame)

    def _strip_echo(self, data: bytes) -> bytes:
        """Drop the bytes we wrote if they come back first."""
        echo = self._echo
        same = 0
        limit = min(len(data), len(echo))
        while same < limit and data[same] == echo[same]:
            same += 1
        if same == limit:
            del echo[:same]
            return data[same:]
        _LOGGER.debug("RTU: expected echo %s, got %s", echo.hex(" "), data.hex(" "))
        echo.clear()
        return data


class _SerialPort(serial.Serial):
    """A serial port configured once at open; later re-applies tolerate a refusal.

    The asyncio transport sets the (already zero) timeouts again. A pseudo-terminal keeps no
    parity bit, so that second, identical tcsetattr fails with EINVAL: the port is set up
    by then, so the refusal is logged and ignored.
    """

    def _reconfigure_port(self, force_update: bool = False) -> None:
        try:
            super()._reconfigure_port(force_update)  # type: ignore[misc]
        except (termios.error, OSError) as err:
            if force_update:
                raise
            _LOGGER.debug("%s: re-applying settings refused (%s)", self.port, err)


def _enable_rs485(transport: asyncio.Transport) -> None:
    """Let the kernel drive RTS around each transmission (TIOCSRS485)."""
    port = getattr(transport, "serial", None)
    try:
        if not isinstance(port, serial.Serial):
            raise TypeError(f"not a serial port: {port!r}")
        port.rs485_mode = serial.rs485.RS485Settings(rts_level_for_tx=True, rts_level_for_rx=False)
    except (OSError, ValueError, TypeError) as err:
        _LOGGER.warning("RS485 RTS mode not available on this port (%s); sending without it", err)
