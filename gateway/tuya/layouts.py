"""Raw DP payload layouts that breakers share: alarm_set record lists and the phase_a block.

The gateway's value codecs, ``discover`` and the MCU twin all read and write these through
this one module (no I/O).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

__all__ = [
    "PHASE_A",
    "RECORD_SIZE",
    "AlarmRecord",
    "FieldLayout",
    "decode_records",
    "encode_fields",
    "encode_records",
]

RECORD_SIZE = 4  # [id, enabled, value u16 BE]


@dataclasses.dataclass(frozen=True, slots=True)
class AlarmRecord:
    """One alarm_set record: ``[id, enabled 0/1, value u16 BE]``."""

    rid: int
    enabled: bool
    value: int

    def encode(self) -> bytes:
        return bytes((self.rid, int(self.enabled))) + self.value.to_bytes(2, "big")


def decode_records(payload: bytes) -> tuple[tuple[AlarmRecord, ...], bytes]:
    """The records, and any trailing bytes too short for a record (kept on re-encoding)."""
    whole = len(payload) - len(payload) % RECORD_SIZE
    records = tuple(
        AlarmRecord(payload[i], payload[i + 1] != 0, int.from_bytes(payload[i + 2 : i + 4], "big"))
        for i in range(0, whole, RECORD_SIZE)
    )
    return records, payload[whole:]


def encode_records(records: Iterable[AlarmRecord], trailing: bytes = b"") -> bytes:
    return b"".join(record.encode() for record in records) + trailing


@dataclasses.dataclass(frozen=True, slots=True)
class FieldLayout:
    """One unsigned big-endian field of a raw DP: value = wire × 10^scale ``unit``."""

    name: str
    offset: int
    size: int
    scale: int
    unit: str

    def read(self, payload: bytes) -> int | None:
        end = self.offset + self.size
        return int.from_bytes(payload[self.offset : end], "big") if len(payload) >= end else None


# Both known families (vectors file): V u16 0.1 V, I u24 mA, P u24 W; 8 bytes in all.
PHASE_A = (
    FieldLayout("voltage", 0, 2, -1, "V"),
    FieldLayout("current", 2, 3, -3, "A"),
    FieldLayout("power", 5, 3, 0, "W"),
)


def encode_fields(layout: Iterable[FieldLayout], wire: Mapping[str, int]) -> bytes:
    """A payload holding each field's wire value, clamped to what its bytes can hold."""
    fields = list(layout)
    data = bytearray(max(f.offset + f.size for f in fields))
    for field in fields:
        value = max(0, min(wire.get(field.name, 0), (1 << (8 * field.size)) - 1))
        data[field.offset : field.offset + field.size] = value.to_bytes(field.size, "big")
    return bytes(data)
