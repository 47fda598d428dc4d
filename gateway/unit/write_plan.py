"""What a Modbus write sends: its register values decoded and turned into one DP per datapoint.

Record lists (alarm_set) are modified from the cached list, so a write of one threshold keeps
the others as the MCU last reported them. A list DP marked ``write_only_changed_records`` (its
MCU merges records by id) is sent as only the records the write changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from fractions import Fraction

from gateway.errors import NoRecordListError
from gateway.regmap.registers import decode_value
from gateway.regmap.specs import DatapointSpec, DpSource, PointSpec
from gateway.regmap.vocab import SourceKind
from gateway.tuya.protocol import DpValue
from gateway.unit.cache import CacheSnapshot
from gateway.unit.dp_codecs import (
    decode_records,
    encode_record_write,
    encode_records,
    encode_scalar,
)
from gateway.unit.values import read_source

__all__ = ["Pending", "plan_write"]


@dataclasses.dataclass(slots=True)
class Pending:
    """One DP a write will send, built from one or more points."""

    spec: DatapointSpec
    dp: DpValue | None = None
    payload: bytes | None = None  # record lists: the list being modified
    record_ids: tuple[int, ...] = ()
    changes: list[tuple[str, object, object]] = dataclasses.field(default_factory=list)


def plan_write(
    datapoints: Mapping[str, DatapointSpec],
    points: list[PointSpec],
    address: int,
    values: list[int],
    snapshot: CacheSnapshot,
) -> list[Pending]:
    """One Pending per DP; WriteRejectedError for a bad value, NoRecordListError."""
    plan: dict[int, Pending] = {}
    for point in points:
        words = values[point.address - address : point.end - address]
        if point.table.is_bits:
            decoded = decode_value(words, "bool")
        else:
            decoded = decode_value(
                words, point.format, scale=point.scale, word_order=point.word_order
            )
        source = point.source
        assert isinstance(source, DpSource)  # only datapoint sources are writable
        spec = datapoints[source.datapoint]
        pending = plan.setdefault(spec.dpid, Pending(spec))
        old = read_source(source, datapoints, snapshot, {}).value
        pending.changes.append((point.name, _show(old), _show(decoded)))
        if source.kind == SourceKind.VALUE:
            pending.dp = encode_scalar(spec, decoded)
            continue
        if pending.payload is None:
            entry = snapshot.get(spec.dpid)
            if entry is None:
                raise NoRecordListError(f"{point.name}: dp{spec.dpid} has not reported its records")
            pending.payload = entry.raw
        pending.payload = encode_record_write(spec, source, decoded, pending.payload)
        rid = spec.records[str(source.member)].rid
        if rid not in pending.record_ids:
            pending.record_ids += (rid,)
        pending.dp = DpValue.of_raw(spec.dpid, _records_sent(pending))
    return list(plan.values())


def _records_sent(pending: Pending) -> bytes:
    """The whole modified list, or only its changed records when the DP asks for that."""
    assert pending.payload is not None
    if not pending.spec.write_only_changed_records:
        return pending.payload
    records, _ = decode_records(pending.payload)
    return encode_records(tuple(r for r in records if r.rid in pending.record_ids))


def _show(value: object) -> object:
    """Fractions logged as plain numbers."""
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else float(value)
    return value
