"""Field tools that read TuyaMCU traffic: capture files, passive UART taps, and capture replay.

Directions are tagged from the wire's point of view: ``MCU`` for frames the breaker's MCU sent,
``WIFI`` for frames the WiFi side (the stock module or this gateway) sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from gateway.errors import ConfigError
from gateway.protocol import Frame, FrameDecoder

__all__ = [
    "CapturedFrame",
    "ReplayPeer",
    "format_frame",
    "print_capture",
    "read_capture",
    "sniff_passive",
]

_LOGGER = logging.getLogger(__name__)

# At 9600 baud a byte takes ~1 ms; 50 ms of silence means any half frame will never complete.
_LINE_IDLE_S = 0.05
_TAGS = {"rx": "MCU ", "tx": "WIFI"}


@dataclasses.dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One frame of a capture: monotonic time, direction (rx = from the MCU) and the frame."""

    mono: float
    direction: str
    frame: Frame


def format_frame(direction: str, frame: Frame, elapsed_s: float) -> str:
    """One sniff line: elapsed time, direction tag, decoded summary and raw bytes."""
    tag = _TAGS.get(direction, direction.upper()[:4].ljust(4))
    return f"{elapsed_s:9.3f} {tag} {frame.describe()}  | {frame.encode().hex(' ')}"


def read_capture(path: str) -> Iterator[CapturedFrame]:
    """The frames of a JSON-lines capture; a line that does not parse is a ConfigError."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                decoder = FrameDecoder()
                decoder.feed(bytes.fromhex(record["hex"]))
                frames = list(decoder)
                direction = str(record["dir"])
                mono = float(record["mono"])
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError([f"{path}:{number}: not a capture record: {err}"]) from err
            for frame in frames:
                yield CapturedFrame(mono, direction, frame)


def print_capture(path: str, out: TextIO) -> int:
    """Print every frame of a capture file; returns how many."""
    count = 0
    start: float | None = None
    for item in read_capture(path):
        start = item.mono if start is None else start
        print(format_frame(item.direction, item.frame, item.mono - start), file=out)
        count += 1
    return count


async def _tap(device: str, direction: str, baud: int, emit: Callable[[str, Frame], None]) -> None:
    """Decode one UART RX line forever, flushing half frames after the line goes idle."""
    import serial_asyncio_fast  # imported here: reading capture files needs no serial stack

    reader, _writer = await serial_asyncio_fast.open_serial_connection(url=device, baudrate=baud)
    decoder = FrameDecoder()
    while True:
        try:
            data = await asyncio.wait_for(reader.read(512), _LINE_IDLE_S)
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

    def __init__(self, records: list[CapturedFrame]) -> None:
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

    def connection_lost(self) -> None:
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
