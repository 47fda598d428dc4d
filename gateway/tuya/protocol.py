"""TuyaMCU codec: frames, with no I/O (sans-IO); DP records and payloads re-exported.

A frame on the UART is::

    55 AA | version | command | length (u16 BE) | data[length] | checksum

where the checksum is the sum of every preceding byte modulo 256. The WiFi side
(the gateway) sends version 0x00; the MCU answers with 0x03.

Feed received bytes to a :class:`FrameDecoder` and iterate it for frames. On garbage, a bad
checksum, an impossible length or a header whose frame would hold a whole valid frame (a
phantom length) it drops to the next ``55 AA`` and counts what it dropped (``on_drop`` sees
each dropped run, in order with the frames); it never raises on input from the wire. DP records
live in :mod:`gateway.tuya.dp`, frame payloads in :mod:`gateway.tuya.payloads`; both are
re-exported here, so this module is the codec's one import.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Callable, Iterator

from gateway.errors import ProtocolError
from gateway.tuya.dp import DpParseResult, DpType, DpValue, decode_dps, encode_dps
from gateway.tuya.payloads import (
    ProductInfo,
    decode_gmt_time,
    decode_local_time,
    decode_module_mac,
    encode_gmt_time,
    encode_local_time,
    encode_module_mac,
)

__all__ = [
    "HEADER",
    "LINE_IDLE_S",
    "MAX_DATA_LEN",
    "VERSION_GATEWAY",
    "VERSION_LOW_POWER",
    "VERSION_MCU",
    "BadChecksum",
    "Command",
    "DpParseResult",
    "DpType",
    "DpValue",
    "Dropped",
    "Frame",
    "FrameDecoder",
    "ProductInfo",
    "Skipped",
    "checksum",
    "decode_dps",
    "decode_gmt_time",
    "decode_local_time",
    "decode_module_mac",
    "encode_dps",
    "encode_gmt_time",
    "encode_local_time",
    "encode_module_mac",
    "hidden_frame",
]

HEADER = b"\x55\xaa"
_HEADER_LEN = 6  # 55 AA ver cmd len_hi len_lo
# The longest frames an MCU sends are its product info (a JSON of a few hundred bytes with every
# optional key) and large raw DPs; breakers stay well under 300 data bytes. A longer length is
# corruption: resynced at once at the next 55 AA instead of stalling on a phantom frame.
MAX_DATA_LEN = 1024

VERSION_GATEWAY = 0x00  # every frame the WiFi module sends
VERSION_MCU = 0x03  # every frame an MCU on the standard serial protocol sends
VERSION_LOW_POWER = 0x00  # an MCU answering with this speaks the low-power protocol
# A half frame this old is given up and what follows its header rescanned. A whole frame
# behind a phantom length comes out at once (hidden_frame); this is for a phantom
# followed by nothing whole. The MCU SDK has no inter-byte timeout and a TCP serial bridge
# (socket://, rfc2217://) may deliver one frame in segments far apart: no byte-time gap, but
# half the 1 s heartbeat and reply timeouts.
LINE_IDLE_S = 0.5


class Command(enum.IntEnum):
    """TuyaMCU command words."""

    HEARTBEAT = 0x00
    PRODUCT_INFO = 0x01
    WORKING_MODE = 0x02
    WIFI_STATE = 0x03
    WIFI_RESET = 0x04
    WIFI_SELECT = 0x05
    DP_COMMAND = 0x06
    DP_REPORT = 0x07
    DP_QUERY = 0x08
    GMT_TIME = 0x0C
    WIFI_TEST = 0x0E
    LOCAL_TIME = 0x1C
    DP_SYNC_REPORT = 0x22
    DP_SYNC_ACK = 0x23
    RSSI = 0x24
    NETWORK_STATUS = 0x2B
    MODULE_MAC = 0x2D
    EXTENDED_SERVICE = 0x34
    MODULE_NOTICE = 0x37


def checksum(data: bytes | bytearray) -> int:
    """Sum of the bytes modulo 256, as TuyaMCU frames carry it."""
    return sum(data) & 0xFF


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One TuyaMCU frame."""

    command: int
    data: bytes = b""
    version: int = VERSION_GATEWAY

    def __post_init__(self) -> None:
        if not 0 <= self.command <= 0xFF or not 0 <= self.version <= 0xFF:
            raise ProtocolError(f"command and version are bytes, got {self!r}")
        if len(self.data) > 0xFFFF:
            raise ProtocolError(f"frame data of {len(self.data)} bytes exceeds 65535")

    def encode(self) -> bytes:
        body = HEADER + bytes((self.version, self.command)) + struct.pack(">H", len(self.data))
        body += self.data
        return body + bytes((checksum(body),))

    def describe(self) -> str:
        """A short human summary, e.g. ``DP_REPORT v3 dp16 bool=True``."""
        try:
            name = Command(self.command).name
        except ValueError:
            name = f"0x{self.command:02X}"
        text = f"{name} v{self.version}"
        if self.command in (Command.DP_COMMAND, Command.DP_REPORT, Command.DP_SYNC_REPORT):
            parsed = decode_dps(self.data)
            parts = [dp.describe() for dp in parsed.values]
            parts += [f"<{err}>" for err in parsed.errors]
            return f"{text} {' '.join(parts)}".rstrip()
        if self.data:
            text += f" [{self.data.hex(' ')}]"
        return text


def hidden_frame(buf: bytes | bytearray, end: int, looked: int = 0) -> int:
    """Where a whole, valid frame starts in ``buf[1:end]`` (0: none), past frames ending by
    ``looked``: an MCU sends frames one after another, so a header whose frame would hold a
    whole frame had a phantom length (noise, a cut frame), quiet line or not."""
    start = buf.find(HEADER, 1, end)
    while start != -1 and start + _HEADER_LEN <= end:
        inner_end = start + _HEADER_LEN + ((buf[start + 4] << 8) | buf[start + 5]) + 1
        if looked < inner_end <= end and checksum(buf[start : inner_end - 1]) == buf[inner_end - 1]:
            return start
        start = buf.find(HEADER, start + 1, end)
    return 0


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped:
    """Bytes that belong to no frame (noise, a cut frame, a header with an absurd length)."""

    data: bytes
    why: str


@dataclasses.dataclass(frozen=True, slots=True)
class BadChecksum:
    """A whole frame whose checksum byte does not match."""

    data: bytes

    @property
    def expected(self) -> int:
        return checksum(self.data[:-1])


Dropped = Skipped | BadChecksum


class FrameDecoder:
    """Incremental frame decoder: ``feed(bytes)``, then iterate for frames."""

    def __init__(
        self, max_data_len: int = MAX_DATA_LEN, on_drop: Callable[[Dropped], None] | None = None
    ) -> None:
        self.max_data_len = max_data_len
        self.on_drop = on_drop
        self._buffer = bytearray()
        self._shown = 0  # leading bytes on_drop saw already, as a bad-checksum frame
        self._looked = 0  # inner frames ending within this many bytes were looked at
        self.frames_decoded = 0
        self.bytes_skipped = 0
        self.checksum_errors = 0
        self.oversize_frames = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self._next_frame()
        if frame is None:
            raise StopIteration
        return frame

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def flush(self) -> list[Frame]:
        """The line went idle: give up on any incomplete frame and rescan what follows it.

        A corrupt length followed by no whole frame makes the decoder wait for bytes that
        never come; the caller calls this after ``LINE_IDLE_S`` of silence.
        """
        return list(self.idle())

    def idle(self) -> Iterator[Frame]:
        """:meth:`flush`, a frame at a time: ``on_drop`` sees each drop in its place."""
        yield from self
        while self._buffer:
            start = self._buffer.find(HEADER, 1)
            self._skip(len(self._buffer) if start == -1 else start, "incomplete frame")
            yield from self

    def _skip(self, count: int, why: str = "noise") -> None:
        if self.on_drop is not None and count > self._shown:
            self.on_drop(Skipped(bytes(self._buffer[self._shown : count]), why))
        self._shown = max(0, self._shown - count)
        self._looked = 0
        del self._buffer[:count]
        self.bytes_skipped += count

    def _hidden_frame(self, end: int) -> int:
        start = hidden_frame(self._buffer, end, self._looked)
        self._looked = max(self._looked, end)
        return start

    def _resync(self, why: str = "noise") -> None:
        """Drop bytes up to the next possible header (a lone trailing 0x55 is kept)."""
        start = self._buffer.find(HEADER, 1)
        if start == -1:
            keep = 1 if self._buffer.endswith(HEADER[:1]) else 0
            self._skip(len(self._buffer) - keep, why)
        else:
            self._skip(start, why)

    def _bad_checksum(self, total: int) -> None:
        """Drop a frame whose checksum fails: at a header inside it, the length was noise."""
        self.checksum_errors += 1
        inner = self._buffer.find(HEADER, 1)
        if inner != -1 and inner < total:
            self._resync("bad frame start")
            return
        if self.on_drop is not None:
            self.on_drop(BadChecksum(bytes(self._buffer[:total])))
            self._shown = total
        self._resync()

    def _next_frame(self) -> Frame | None:
        buf = self._buffer
        while True:
            if len(buf) < 2:
                if buf and buf[0] != HEADER[0]:
                    self._skip(1)
                return None
            if buf[:2] != HEADER:
                self._resync()
                continue
            if len(buf) < _HEADER_LEN:
                return None
            length = (buf[4] << 8) | buf[5]
            if length > self.max_data_len:
                self.oversize_frames += 1
                self._resync(f"length {length} too long")
                continue
            total = _HEADER_LEN + length + 1
            inner = self._hidden_frame(min(total, len(buf)))
            if inner:
                self._skip(inner, "phantom length")
                continue
            if len(buf) < total:
                return None
            if checksum(buf[: total - 1]) != buf[total - 1]:
                self._bad_checksum(total)
                continue
            frame = Frame(command=buf[3], data=bytes(buf[_HEADER_LEN : total - 1]), version=buf[2])
            del buf[:total]
            self._shown = self._looked = 0
            self.frames_decoded += 1
            return frame
