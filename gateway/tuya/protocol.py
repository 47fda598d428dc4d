"""TuyaMCU codec: frames and DP records, with no I/O (sans-IO).

A frame on the UART is::

    55 AA | version | command | length (u16 BE) | data[length] | checksum

where the checksum is the sum of every preceding byte modulo 256. The WiFi side
(the gateway) sends version 0x00; the MCU answers with 0x03.

Feed received bytes to a :class:`FrameDecoder` and iterate it for frames. On
garbage, a bad checksum or an impossible length it drops to the next ``55 AA``
and counts what it dropped; it never raises on input from the wire.

DP records inside 0x06/0x07/0x22 frames are ``dpid | type | length (u16 BE) |
value``; :class:`DpValue` keeps the wire payload and decodes it on demand.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import struct
from collections.abc import Iterable, Iterator
from datetime import datetime

from gateway.errors import DpRecordError, ProtocolError

__all__ = [
    "HEADER",
    "MAX_DATA_LEN",
    "Command",
    "DpParseResult",
    "DpType",
    "DpValue",
    "Frame",
    "FrameDecoder",
    "ProductInfo",
    "checksum",
    "decode_dps",
    "decode_local_time",
    "encode_dps",
    "encode_local_time",
]

HEADER = b"\x55\xaa"
_HEADER_LEN = 6  # 55 AA ver cmd len_hi len_lo
# Breakers send well under 300 data bytes; a larger length is corruption, and
# waiting for it would stall the decoder on a 64 KiB phantom frame.
MAX_DATA_LEN = 1024

VERSION_GATEWAY = 0x00
VERSION_MCU = 0x03


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
    WIFI_TEST = 0x0E
    LOCAL_TIME = 0x1C
    DP_SYNC_REPORT = 0x22
    DP_SYNC_ACK = 0x23
    RSSI = 0x24
    NETWORK_STATUS = 0x2B
    EXTENDED_SERVICE = 0x34
    MODULE_NOTICE = 0x37


class DpType(enum.IntEnum):
    """Types of a DP record."""

    RAW = 0
    BOOL = 1
    VALUE = 2
    STRING = 3
    ENUM = 4
    BITMAP = 5


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


class FrameDecoder:
    """Incremental frame decoder: ``feed(bytes)``, then iterate for frames."""

    def __init__(self, max_data_len: int = MAX_DATA_LEN) -> None:
        self.max_data_len = max_data_len
        self._buffer = bytearray()
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

        A corrupt length makes the decoder wait for bytes that never come; the
        caller calls this after a silence longer than any inter-byte gap, so a
        real frame hidden behind a phantom header still comes out.
        """
        frames = list(self)
        while self._buffer:
            self._skip(1)
            self._resync()
            frames.extend(self)
        return frames

    def _skip(self, count: int) -> None:
        del self._buffer[:count]
        self.bytes_skipped += count

    def _resync(self) -> None:
        """Drop bytes up to the next possible header (a lone trailing 0x55 is kept)."""
        start = self._buffer.find(HEADER, 1)
        if start == -1:
            keep = 1 if self._buffer.endswith(HEADER[:1]) else 0
            self._skip(len(self._buffer) - keep)
        else:
            self._skip(start)

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
                self._resync()
                continue
            total = _HEADER_LEN + length + 1
            if len(buf) < total:
                return None
            if checksum(buf[: total - 1]) != buf[total - 1]:
                self.checksum_errors += 1
                self._resync()
                continue
            frame = Frame(command=buf[3], data=bytes(buf[_HEADER_LEN : total - 1]), version=buf[2])
            del buf[:total]
            self.frames_decoded += 1
            return frame


_FIXED_SIZES = {DpType.BOOL: (1,), DpType.VALUE: (4,), DpType.ENUM: (1,), DpType.BITMAP: (1, 2, 4)}


@dataclasses.dataclass(frozen=True, slots=True)
class DpValue:
    """One datapoint as it travels on the wire; ``value`` decodes the payload."""

    dpid: int
    dp_type: DpType
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.dpid <= 0xFF:
            raise DpRecordError(f"dpid must be 0..255, got {self.dpid}")
        sizes = _FIXED_SIZES.get(self.dp_type)
        if sizes is not None and len(self.payload) not in sizes:
            expected = " or ".join(map(str, sizes))
            raise DpRecordError(
                f"dp{self.dpid} {self.dp_type.name.lower()}: expected {expected} byte(s),"
                f" got {len(self.payload)}"
            )
        if len(self.payload) > 0xFFFF:
            raise DpRecordError(f"dp{self.dpid}: payload of {len(self.payload)} bytes too long")

    @classmethod
    def of_bool(cls, dpid: int, value: bool) -> DpValue:
        return cls(dpid, DpType.BOOL, b"\x01" if value else b"\x00")

    @classmethod
    def of_value(cls, dpid: int, value: int) -> DpValue:
        if not -(2**31) <= value < 2**31:
            raise DpRecordError(f"dp{dpid} value {value} does not fit a signed 32-bit integer")
        return cls(dpid, DpType.VALUE, struct.pack(">i", value))

    @classmethod
    def of_enum(cls, dpid: int, value: int) -> DpValue:
        if not 0 <= value <= 0xFF:
            raise DpRecordError(f"dp{dpid} enum {value} is not 0..255")
        return cls(dpid, DpType.ENUM, bytes((value,)))

    @classmethod
    def of_bitmap(cls, dpid: int, value: int, size: int = 4) -> DpValue:
        if size not in (1, 2, 4) or not 0 <= value < 1 << (8 * size):
            raise DpRecordError(f"dp{dpid} bitmap {value} does not fit {size} byte(s)")
        return cls(dpid, DpType.BITMAP, value.to_bytes(size, "big"))

    @classmethod
    def of_string(cls, dpid: int, value: str) -> DpValue:
        return cls(dpid, DpType.STRING, value.encode("utf-8"))

    @classmethod
    def of_raw(cls, dpid: int, value: bytes) -> DpValue:
        return cls(dpid, DpType.RAW, bytes(value))

    @property
    def value(self) -> bytes | bool | int | str:
        """The payload decoded by type: bytes, bool, int or str."""
        if self.dp_type is DpType.BOOL:
            return self.payload != b"\x00"
        if self.dp_type is DpType.VALUE:
            return int.from_bytes(self.payload, "big", signed=True)
        if self.dp_type in (DpType.ENUM, DpType.BITMAP):
            return int.from_bytes(self.payload, "big")
        if self.dp_type is DpType.STRING:
            return self.payload.decode("utf-8", errors="replace")
        return self.payload

    def encode(self) -> bytes:
        return struct.pack(">BBH", self.dpid, self.dp_type, len(self.payload)) + self.payload

    def describe(self) -> str:
        value = self.value
        shown = value.hex(" ") if isinstance(value, bytes) else repr(value)
        return f"dp{self.dpid} {self.dp_type.name.lower()}={shown}"


@dataclasses.dataclass(frozen=True, slots=True)
class DpParseResult:
    """The records of a frame that parsed, and why any others were rejected."""

    values: tuple[DpValue, ...]
    errors: tuple[str, ...]


def encode_dps(values: Iterable[DpValue]) -> bytes:
    return b"".join(dp.encode() for dp in values)


def decode_dps(data: bytes) -> DpParseResult:
    """Parse DP records; a bad record is reported and parsing stops there."""
    values: list[DpValue] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            return DpParseResult(tuple(values), (f"truncated record header at byte {offset}",))
        dpid, raw_type, length = struct.unpack_from(">BBH", data, offset)
        payload = data[offset + 4 : offset + 4 + length]
        if len(payload) != length:
            error = f"dp{dpid}: record says {length} bytes, {len(payload)} present"
            return DpParseResult(tuple(values), (error,))
        try:
            values.append(DpValue(dpid, DpType(raw_type), payload))
        except ValueError as err:  # unknown type, or DpRecordError for a wrong size
            return DpParseResult(tuple(values), (f"dp{dpid}: {err}",))
        offset += 4 + length
    return DpParseResult(tuple(values), ())


@dataclasses.dataclass(frozen=True, slots=True)
class ProductInfo:
    """The MCU's answer to 0x01: product key, MCU version, mode, and the raw text."""

    product_key: str
    version: str
    mode: int | None
    raw: str

    @classmethod
    def decode(cls, data: bytes) -> ProductInfo:
        text = data.decode("utf-8", errors="replace")
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):  # very old MCUs send the bare product key
            return cls(product_key=text.strip(), version="", mode=None, raw=text)
        mode = fields.get("m")
        return cls(
            product_key=str(fields.get("p", "")),
            version=str(fields.get("v", "")),
            mode=mode if isinstance(mode, int) else None,
            raw=text,
        )

    def encode(self) -> bytes:
        fields: dict[str, object] = {"p": self.product_key, "v": self.version}
        if self.mode is not None:
            fields["m"] = self.mode
        return json.dumps(fields, separators=(",", ":")).encode()


def encode_local_time(now: datetime | None) -> bytes:
    """The 8-byte answer to 0x1C; all zero when the time is unknown."""
    if now is None:
        return bytes(8)
    return bytes(
        (1, now.year % 100, now.month, now.day, now.hour, now.minute, now.second, now.isoweekday())
    )


def decode_local_time(data: bytes) -> datetime | None:
    if len(data) != 8 or data[0] == 0:
        return None
    return datetime(2000 + data[1], data[2], data[3], data[4], data[5], data[6])
