"""The tests' scripted MCU, reachable over a real pty pair or a real TCP socket.

The shipped twin (:mod:`gateway.twin`) is the MCU with physics; this one is the MCU a test
scripts frame by frame (ignored heartbeats, low-power version, unconfirmed writes...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from serial_line import PtyMaster
from waiting import eventually

from gateway.tuya.protocol import (
    VERSION_MCU,
    Command,
    DpType,
    DpValue,
    Frame,
    FrameDecoder,
    decode_dps,
)

__all__ = ["PtyPeer", "ScriptedMcu", "TcpPeer", "eventually"]

PRODUCT_JSON = b'{"p":"peer4testkey0001","v":"1.2.3","m":0}'


class ScriptedMcu:
    """Answers the handshake like a TuyaMCU; every knob is a plain attribute for tests."""

    def __init__(self, dps: list[DpValue] | None = None) -> None:
        self.version = VERSION_MCU
        self.product = PRODUCT_JSON
        self.notice: bytes | None = None  # sent as 0x37 right after the product info
        self.working_mode = b""
        self.heartbeats_ignored = 0  # ignore this many heartbeats before answering
        self.heartbeats_late = 0  # answer this many heartbeats ``heartbeat_late_s`` late
        self.heartbeat_late_s = 0.0
        self.echo = False  # the line echoes every frame the gateway sends, before the MCU answers
        self.silent = False
        self.confirm_writes = True
        self.report_override: DpValue | None = None  # report this instead of the written DP
        self.ignore_writes = 0  # leave this many 0x06 frames unanswered first
        self.report_delay_s = 0.0  # a slow MCU: report a written DP this long after its command
        # what the MCU reports for a written DP (None: nothing); default: the DP as written
        self.on_write: Callable[[DpValue], DpValue | None] | None = None
        # raw DPs as alarm_set lists: merge the written records into the stored list by id
        self.merge_records = False
        self.reverse_records = False  # ...and report the list in reverse order
        self.dps = {dp.dpid: dp for dp in dps or ()}
        self.received: list[tuple[float, Frame]] = []
        self._first_heartbeat = True
        self._decoder = FrameDecoder()
        self._write: Callable[[bytes], None] | None = None

    # -- transport side ------------------------------------------------------------------
    def attach(self, write: Callable[[bytes], None] | None) -> None:
        self._write = write

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)
        for frame in self._decoder:
            self.received.append((asyncio.get_running_loop().time(), frame))
            if self.echo:
                self.send_bytes(frame.encode())
            if not self.silent:
                self._handle(frame)

    def send_bytes(self, data: bytes) -> None:
        if self._write is not None:
            self._write(data)

    # -- test API ------------------------------------------------------------------------
    def frames(self, command: int | None = None) -> list[Frame]:
        return [f for _, f in self.received if command is None or f.command == command]

    def commands(self) -> list[int]:
        return [f.command for _, f in self.received]

    def reboot(self) -> None:
        self._first_heartbeat = True

    def request(self, command: int, data: bytes = b"") -> None:
        """Send an MCU-side request (0x1C, 0x24, 0x22...) to the gateway."""
        self.send_bytes(Frame(command, data, VERSION_MCU).encode())

    async def ask(self, command: int, data: bytes = b"", reply: int | None = None) -> Frame:
        """Send an MCU request; the gateway's answer (``reply`` command, default the same)."""
        reply = command if reply is None else reply
        before = len(self.frames(reply))
        self.request(command, data)
        await eventually(lambda: len(self.frames(reply)) > before, f"an answer to 0x{command:02X}")
        return self.frames(reply)[before]

    def report(self, *dps: DpValue) -> None:
        for dp in dps:
            self.send_bytes(Frame(Command.DP_REPORT, dp.encode(), self.version).encode())

    # -- MCU behaviour -------------------------------------------------------------------
    def _reply(self, command: int, data: bytes = b"") -> None:
        self.send_bytes(Frame(command, data, self.version).encode())

    def _handle(self, frame: Frame) -> None:
        command = frame.command
        if command == Command.HEARTBEAT:
            if self.heartbeats_ignored > 0:
                self.heartbeats_ignored -= 1
                return
            answer = Frame(command, b"\x00" if self._first_heartbeat else b"\x01", self.version)
            self._first_heartbeat = False
            if self.heartbeats_late > 0:
                self.heartbeats_late -= 1
                loop = asyncio.get_running_loop()
                loop.call_later(self.heartbeat_late_s, self.send_bytes, answer.encode())
            else:
                self.send_bytes(answer.encode())
        elif command == Command.PRODUCT_INFO:
            self._reply(command, self.product)
            if self.notice is not None:
                self._reply(Command.MODULE_NOTICE, self.notice)
        elif command == Command.WORKING_MODE:
            self._reply(command, self.working_mode)
        elif command == Command.WIFI_STATE:
            self._reply(command)
        elif command == Command.DP_QUERY:
            self.report(*self.dps.values())
        elif command == Command.DP_COMMAND:
            self._on_write(frame)

    def _on_write(self, frame: Frame) -> None:
        if not self.confirm_writes:
            return
        if self.ignore_writes > 0:
            self.ignore_writes -= 1
            return
        for dp in decode_dps(frame.data).values:
            if self.merge_records and dp.dp_type is DpType.RAW:
                dp = self._merged(dp)
            reported = self.on_write(dp) if self.on_write is not None else dp
            if reported is None:
                continue
            self.dps[dp.dpid] = reported
            reported = self.report_override or reported
            if self.report_delay_s > 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.report_delay_s, self.report, reported)
            else:
                self.report(reported)

    def _merged(self, dp: DpValue) -> DpValue:
        stored = self.dps.get(dp.dpid)
        old = _records(stored.payload if stored is not None else b"")
        new = dict((record[0], record) for record in _records(dp.payload))
        records = [new.pop(record[0], record) for record in old] + list(new.values())
        if self.reverse_records:
            records.reverse()
        return DpValue.of_raw(dp.dpid, b"".join(records))


def _records(payload: bytes) -> list[bytes]:
    """The 4-byte ``[id, enabled, u16 value]`` records of an alarm_set list."""
    return [payload[i : i + 4] for i in range(0, len(payload) - len(payload) % 4, 4)]


class PtyPeer:
    """The peer on the master side of a raw pty pair; the link opens ``path``."""

    def __init__(self, peer: ScriptedMcu) -> None:
        self.peer = peer
        self._pty = PtyMaster(on_data=peer.feed)
        self.path = self.url = self._pty.path
        peer.attach(self._pty.write)

    def close(self) -> None:
        self.peer.attach(None)
        self._pty.close()


class _PeerProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self, owner: TcpPeer) -> None:
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._owner.connected(self)

    def data_received(self, data: bytes) -> None:
        self._owner.peer.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.disconnected(self)


class TcpPeer:
    """The peer behind a TCP server on 127.0.0.1; the link opens ``socket://`` ``url``."""

    def __init__(self, peer: ScriptedMcu) -> None:
        self.peer = peer
        self.url = ""
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._current: _PeerProtocol | None = None

    async def open(self) -> TcpPeer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _PeerProtocol(self), "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"socket://127.0.0.1:{port}"
        return self

    def connected(self, protocol: _PeerProtocol) -> None:
        self.drop()
        self._current = protocol
        self.connections += 1
        self.peer.attach(protocol.transport.write)

    def disconnected(self, protocol: _PeerProtocol) -> None:
        if protocol is self._current:
            self._current = None
            self.peer.attach(None)

    def drop(self) -> None:
        """Close the current connection, as a TCP serial bridge restarting would."""
        if self._current is not None:
            self._current.transport.close()

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
