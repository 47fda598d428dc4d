"""DP records, as they travel inside 0x06/0x07/0x22 frames (sans-IO).

A record is ``dpid | type | length (u16 BE) | value``; :class:`DpValue` keeps the wire payload
and decodes it on demand.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Iterable

from gateway.errors import DpRecordError

__all__ = ["DpParseResult", "DpType", "DpValue", "decode_dps", "encode_dps"]


class DpType(enum.IntEnum):
    """Types of a DP record."""

    RAW = 0
    BOOL = 1
    VALUE = 2
    STRING = 3
    ENUM = 4
    BITMAP = 5


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
    """Parse DP records: a bad record that fits the frame is skipped (the MCU SDK's own loop
    steps ``len + 4`` on), one that runs past the frame ends the parse."""
    values: list[DpValue] = []
    errors: list[str] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            errors.append(f"truncated record header at byte {offset}")
            break
        dpid, raw_type, length = struct.unpack_from(">BBH", data, offset)
        payload = data[offset + 4 : offset + 4 + length]
        if len(payload) != length:
            errors.append(f"dp{dpid}: record says {length} bytes, {len(payload)} present")
            break
        try:
            values.append(DpValue(dpid, DpType(raw_type), payload))
        except ValueError as err:  # unknown type, or DpRecordError for a wrong size
            errors.append(f"dp{dpid}: {err}")
        offset += 4 + length
    return DpParseResult(tuple(values), tuple(errors))
