"""Datapoint value codecs: power-of-ten scale, raw field layouts and alarm_set record lists.

Engineering values are exact :class:`~fractions.Fraction` s: 2326 × 10^-1 is 232.6 V with no
float rounding, so a write is either exactly on the datapoint's resolution or rejected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from fractions import Fraction

from gateway.errors import ProtocolError, WriteRejectedError
from gateway.regmap.specs import DatapointSpec, DpSource
from gateway.regmap.vocab import SourceKind
from gateway.tuya.layouts import AlarmRecord, decode_records, encode_records
from gateway.tuya.protocol import DpType, DpValue

__all__ = [
    "AlarmRecord",
    "confirms",
    "decode_records",
    "encode_record_write",
    "encode_records",
    "encode_scalar",
    "find_record",
    "matcher",
    "member_value",
    "read_field",
    "scale_wire",
    "set_record",
    "unscale",
]


def scale_wire(wire: int, exponent: int) -> Fraction:
    """The engineering value of a wire integer: ``wire × 10^exponent``."""
    return Fraction(wire) * Fraction(10) ** exponent


def unscale(value: Fraction, exponent: int) -> int:
    """The wire integer for an engineering value; WriteRejectedError when off the resolution."""
    wire = value / Fraction(10) ** exponent
    if wire.denominator != 1:
        step = Fraction(10) ** exponent
        raise WriteRejectedError(f"{float(value)} is not a multiple of the resolution {step}")
    return wire.numerator


def read_field(payload: bytes, offset: int, size: int, signed: bool) -> int | None:
    """The big-endian integer at ``offset``; None when the payload is too short."""
    if len(payload) < offset + size:
        return None
    return int.from_bytes(payload[offset : offset + size], "big", signed=signed)


def set_record(
    payload: bytes, rid: int, *, enabled: bool | None = None, value: int | None = None
) -> bytes:
    """The record list with record ``rid`` changed; others stay as they are, in their order.

    A record the list does not hold yet is appended (disabled, value 0, unless given).
    """
    if value is not None and not 0 <= value <= 0xFFFF:
        raise WriteRejectedError(f"record {rid}: {value} does not fit 16 bits")
    records, trailing = decode_records(payload)
    if all(record.rid != rid for record in records):
        records += (AlarmRecord(rid, False, 0),)
    changed = tuple(
        AlarmRecord(
            r.rid,
            r.enabled if enabled is None or r.rid != rid else enabled,
            r.value if value is None or r.rid != rid else value,
        )
        for r in records
    )
    return encode_records(changed, trailing)


def find_record(payload: bytes, rid: int) -> AlarmRecord | None:
    records, _ = decode_records(payload)
    return next((record for record in records if record.rid == rid), None)


def _in_range(value: Fraction, low: Fraction | None, high: Fraction | None, what: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{float(low):g}"
        hi = "inf" if high is None else f"{float(high):g}"
        raise WriteRejectedError(f"{what}: {float(value):g} is outside {lo}..{hi}")


def _on_step(value: Fraction, low: Fraction | None, step: Fraction | None, what: str) -> None:
    if step is not None and ((value - (low or 0)) / step).denominator != 1:
        raise WriteRejectedError(f"{what}: {float(value):g} is off the step {float(step):g}")


def member_value(spec: DatapointSpec, source: DpSource, dp: DpValue) -> Fraction | str | None:
    """The engineering value of a source from a DP report; None if the report does not hold it."""
    if dp.dp_type is not spec.dp_type:
        return None
    if source.kind == SourceKind.BIT:
        bitmap = int.from_bytes(dp.payload, "big")
        return Fraction((bitmap >> spec.bits[str(source.member)]) & 1)
    if source.kind == SourceKind.FIELD:
        field = spec.fields[str(source.member)]
        wire = read_field(dp.payload, field.offset, field.size, field.signed)
        return None if wire is None else scale_wire(wire, field.scale)
    if source.kind in (SourceKind.RECORD, SourceKind.ENABLED):
        record_spec = spec.records[str(source.member)]
        record = find_record(dp.payload, record_spec.rid)
        if record is None:
            return None
        if source.kind == SourceKind.ENABLED:
            return Fraction(int(record.enabled))
        return scale_wire(record.value, record_spec.scale)
    value = dp.value
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return None
    if spec.dp_type is DpType.VALUE and not spec.signed:
        value = int.from_bytes(dp.payload, "big")
    return scale_wire(int(value), spec.scale if spec.dp_type is DpType.VALUE else 0)


def encode_scalar(spec: DatapointSpec, value: Fraction) -> DpValue:
    """The DpValue a write of ``value`` sends to a bool, value or enum DP; validated."""
    what = spec.name
    if spec.dp_type is DpType.BOOL:
        if value not in (0, 1):
            raise WriteRejectedError(f"{what}: a bool takes 0 or 1, got {float(value):g}")
        return DpValue.of_bool(spec.dpid, value == 1)
    if spec.dp_type is DpType.ENUM:
        if value.denominator != 1 or not 0 <= value < len(spec.labels):
            raise WriteRejectedError(f"{what}: enum index {float(value):g} has no label")
        return DpValue.of_enum(spec.dpid, int(value))
    if spec.dp_type is not DpType.VALUE:
        raise WriteRejectedError(f"{what}: {spec.dp_type.name.lower()} datapoints are read-only")
    _in_range(value, spec.min, spec.max, what)
    _on_step(value, spec.min, spec.step, what)
    try:
        return DpValue.of_value(spec.dpid, unscale(value, spec.scale))
    except ProtocolError as err:
        raise WriteRejectedError(f"{what}: {err}") from err


def encode_record_write(
    spec: DatapointSpec, source: DpSource, value: Fraction, payload: bytes
) -> bytes:
    """The record list ``payload`` with one record's value or enabled flag changed; validated."""
    record = spec.records[str(source.member)]
    what = f"{spec.name}.{record.name}"
    if source.kind == SourceKind.ENABLED:
        if value not in (0, 1):
            raise WriteRejectedError(f"{what}.enabled: takes 0 or 1, got {float(value):g}")
        return set_record(payload, record.rid, enabled=value == 1)
    _in_range(value, record.min, record.max, what)
    _on_step(value, record.min, record.step, what)
    wire = unscale(value, record.scale)
    if not 0 <= wire <= 0xFFFF:
        raise WriteRejectedError(f"{what}: {float(value):g} does not fit the record's 16 bits")
    return set_record(payload, record.rid, value=wire)


def confirms(sent: DpValue, reported: DpValue, record_ids: tuple[int, ...] = ()) -> bool:
    """Whether the MCU's report carries what was written (for record lists: those records,
    wherever the report places them)."""
    if sent.dp_type is not reported.dp_type:
        return False
    if not record_ids:
        return sent.value == reported.value
    return all(find_record(sent.payload, r) == find_record(reported.payload, r) for r in record_ids)


def matcher(sent: DpValue, record_ids: tuple[int, ...] = ()) -> Callable[[DpValue], bool]:
    """The write gate's predicate: does a report of ``sent``'s DP confirm it?"""
    return functools.partial(confirms, sent, record_ids=record_ids)
