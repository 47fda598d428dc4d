"""Field tools that read TuyaMCU traffic: capture files, passive UART taps, and capture replay.

Directions are tagged from the wire's point of view: ``MCU`` for frames the breaker's MCU sent,
``WIFI`` for frames the WiFi side (the stock module or this gateway) sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TextIO

from gateway.tuya.capture import CaptureRecord, read_capture
from gateway.tuya.protocol import Command, Frame, FrameDecoder

__all__ = ["ReplayPeer", "format_frame", "print_capture", "sniff_link", "sniff_passive"]

_LOGGER = logging.getLogger(__name__)

# At 9600 baud a byte takes ~1 ms; 50 ms of silence means any half frame will never complete.
_LINE_IDLE_S = 0.05
_TAGS = {"rx": "MCU ", "tx": "WIFI"}


def format_frame(direction: str, frame: Frame, elapsed_s: float) -> str:
    """One sniff line: elapsed time, direction tag, decoded summary and raw bytes."""
    tag = _TAGS.get(direction, direction.upper()[:4].ljust(4))
    summary = frame.describe()
    if frame.command == Command.PRODUCT_INFO and frame.data:
        summary = f"PRODUCT_INFO v{frame.version} {frame.data.decode('utf-8', 'replace')}"
    return f"{elapsed_s:9.3f} {tag} {summary}  | {frame.encode().hex(' ')}"


def print_capture(path: str, out: TextIO) -> None:
    """Print every frame of a capture file."""
    start: float | None = None
    for item in read_capture(path):
        start = item.mono if start is None else start
        print(format_frame(item.direction, item.frame, item.mono - start), file=out)


async def sniff_link(url: str, baud: int, out: TextIO) -> None:
    """Run the handshake as the gateway on ``url`` and print every frame both ways."""
    from gateway.tuya.link import LinkConfig, LinkState, McuLink

    link = McuLink(LinkConfig(url=url, baudrate=baud))
    started = time.monotonic()

    def on_traffic(direction: str, frame: Frame) -> None:
        print(format_frame(direction, frame, time.monotonic() - started), file=out, flush=True)

    def on_state(state: LinkState) -> None:
        info = link.product_info
        key = f" (product key {info.product_key!r})" if info and state is LinkState.READY else ""
        print(f"# link {state.name}{key}", file=out, flush=True)

    link.add_traffic_listener(on_traffic)
    link.add_state_listener(on_state)
    await link.start()
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await link.stop()


async def _tap(device: str, direction: str, baud: int, emit: Callable[[str, Frame], None]) -> None:
    """Decode one UART RX line forever, flushing half frames after the line goes idle."""
    import serial_asyncio_fast  # imported here: reading capture files needs no serial stack

    reader, _writer = await serial_asyncio_fast.open_serial_connection(url=device, baudrate=baud)
    decoder = FrameDecoder()
    while True:
        try:
            async with asyncio.timeout(_LINE_IDLE_S):
                data = await reader.read(512)
        except TimeoutError:
            for frame in decoder.flush():
                emit(direction, frame)
            continue
        if not data:
            return
        decoder.feed(data)
        for frame in decoder:
            emit(direction, frame)


async def sniff_passive(taps: dict[str, str], baud: int, out: TextIO) -> None:
    """Passively decode UART RX lines: ``taps`` maps direction (rx/tx) to a serial device."""
    start = time.monotonic()

    def emit(direction: str, frame: Frame) -> None:
        print(format_frame(direction, frame, time.monotonic() - start), file=out, flush=True)

    await asyncio.gather(*(_tap(dev, direction, baud, emit) for direction, dev in taps.items()))


class ReplayPeer:
    """An MCU peer that answers each WiFi-side frame with the MCU frames recorded after it.

    The capture is cut into answer groups: the MCU frames between one WiFi frame and the
    next belong to that WiFi frame's command. Each command's groups are played in order and
    the last one repeats (heartbeats go on for ever). MCU frames recorded before the first
    WiFi frame are sent on connect.
    """

    def __init__(self, records: list[CaptureRecord]) -> None:
        self._opening: list[Frame] = []
        self._groups: dict[int, list[list[Frame]]] = {}
        current = self._opening
        for item in records:
            if item.direction == "tx":
                current = []
                self._groups.setdefault(item.frame.command, []).append(current)
            else:
                current.append(item.frame)
        self._played: dict[int, int] = {}
        self._send: Callable[[bytes], None] | None = None
        self._decoder = FrameDecoder()
        self.received: list[Frame] = []

    @classmethod
    def from_file(cls, path: str) -> ReplayPeer:
        return cls(list(read_capture(path)))

    @property
    def commands(self) -> list[int]:
        """The WiFi-side commands this capture can answer."""
        return sorted(self._groups)

    def connection_made(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._decoder = FrameDecoder()
        self._played.clear()
        self._write(self._opening)

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        for frame in self._decoder:
            self.received.append(frame)
            self._write(self._answer(frame.command))

    def connection_lost(self, send: Callable[[bytes], None] | None = None) -> None:
        """The line is gone; with ``send``, only if that is still the line in use."""
        if send is None or send == self._send:
            self._send = None

    def _answer(self, command: int) -> list[Frame]:
        groups = self._groups.get(command)
        if not groups:
            _LOGGER.debug("replay: nothing recorded for command 0x%02X", command)
            return []
        index = self._played.get(command, 0)
        self._played[command] = index + 1
        return groups[min(index, len(groups) - 1)]

    def _write(self, frames: list[Frame]) -> None:
        if self._send is not None and frames:
            self._send(b"".join(frame.encode() for frame in frames))
