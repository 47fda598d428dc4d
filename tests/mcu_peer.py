"""A small scripted MCU for link tests, reachable over a real pty pair or a real TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable

from gateway.tuya.protocol import Command, DpType, DpValue, Frame, FrameDecoder, decode_dps

__all__ = ["McuPeer", "PtyPeer", "TcpPeer", "eventually"]

PRODUCT_JSON = b'{"p":"peer4testkey0001","v":"1.2.3","m":0}'


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail the test after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.005)


class McuPeer:
    """Answers the handshake like a TuyaMCU; every knob is a plain attribute for tests."""

    def __init__(self, dps: list[DpValue] | None = None) -> None:
        self.version = 0x03
        self.product = PRODUCT_JSON
        self.notice: bytes | None = None  # sent as 0x37 right after the product info
        self.working_mode = b""
        self.heartbeats_ignored = 0  # ignore this many heartbeats before answering
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
        self.send_bytes(Frame(command, data, 0x03).encode())

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
            self._reply(command, b"\x00" if self._first_heartbeat else b"\x01")
            self._first_heartbeat = False
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

    def __init__(self, peer: McuPeer) -> None:
        self.peer = peer
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave  # the slave stays open: no EIO on the master
        self.path = os.ttyname(slave)
        self.url = self.path
        asyncio.get_running_loop().add_reader(master, self._readable)
        peer.attach(self._write)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self.peer.feed(os.read(self._master, 4096))

    def _write(self, data: bytes) -> None:
        os.write(self._master, data)

    def close(self) -> None:
        self.peer.attach(None)
        asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
        os.close(self._slave)


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

    def __init__(self, peer: McuPeer) -> None:
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
