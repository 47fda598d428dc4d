"""A point's current value from a cache snapshot and live status: datapoints, status, derived.

Derived values are exact fractions except ``sqrt`` and ``acos_deg``, which go through float.
A datapoint value outside the min/max its map declares is clamped to them and flagged, so
the point's ``saturate`` policy decides what the read answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from fractions import Fraction

from gateway.regmap.specs import (
    ConstSource,
    DatapointSpec,
    DerivedSource,
    DpSource,
    SaturationSource,
    Source,
)
from gateway.regmap.vocab import DerivedOp, SourceKind, to_fraction
from gateway.tuya.protocol import DpType
from gateway.unit.cache import CacheSnapshot
from gateway.unit.dp_codecs import member_value

__all__ = ["Reading", "StatusValues", "read_source"]

StatusValues = Mapping[str, bool | int | float | str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """A source's value (None: nothing to serve), whether it is stale, whether it was clamped."""

    value: Fraction | str | None
    stale: bool
    clamped: bool = False


def read_source(
    source: Source,
    datapoints: Mapping[str, DatapointSpec],
    snapshot: CacheSnapshot,
    status: StatusValues,
) -> Reading:
    """Evaluate ``source``; a derived value is stale when any of its inputs is."""
    if isinstance(source, ConstSource):
        return Reading(source.value, False)
    if isinstance(source, DpSource):
        return _read_dp(source, datapoints[source.datapoint], snapshot)
    if isinstance(source, DerivedSource):
        return _derive(source, [read_source(a, datapoints, snapshot, status) for a in source.args])
    if isinstance(source, SaturationSource):
        return Reading(None, True)  # served by the reads module, which encodes the target
    value = status.get(source.name)
    if value is None:
        return Reading(None, True)
    if isinstance(value, str):
        return Reading(value, False)
    return Reading(to_fraction(value), False)


def _read_dp(source: DpSource, spec: DatapointSpec, snapshot: CacheSnapshot) -> Reading:
    entry = snapshot.get(spec.dpid)
    stale = snapshot.is_stale(spec.dpid, spec.max_age_s)
    if entry is None:
        return Reading(None, True)
    value = member_value(spec, source, entry.dp)
    if not isinstance(value, Fraction):
        return Reading(value, stale or value is None)
    low, high = _declared(spec, source)
    bounded = _bound(value, low, high)
    return Reading(bounded, stale, bounded != value)


def _declared(spec: DatapointSpec, source: DpSource) -> tuple[Fraction | None, Fraction | None]:
    """The min and max the map declares for what ``source`` reads."""
    if source.kind is SourceKind.FIELD:
        field = spec.fields[str(source.member)]
        return field.min, field.max
    if source.kind is SourceKind.RECORD:
        record = spec.records[str(source.member)]
        return record.min, record.max
    if source.kind is SourceKind.VALUE and spec.dp_type is DpType.VALUE:
        return spec.min, spec.max
    return None, None


def _bound(value: Fraction, low: Fraction | None, high: Fraction | None) -> Fraction:
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value


def _derive(source: DerivedSource, inputs: list[Reading]) -> Reading:
    stale = any(r.stale for r in inputs)
    clamped = any(r.clamped for r in inputs)
    values = [r.value for r in inputs]
    numbers = [v for v in values if isinstance(v, Fraction)]
    if len(numbers) != len(values):
        return Reading(None, True)
    result = _OPS[source.op](source, numbers)
    if result is None:
        return Reading(None, stale)
    return Reading(_bound(result, source.min, source.max), stale, clamped)


def _mul(_: DerivedSource, numbers: list[Fraction]) -> Fraction:
    result = Fraction(1)
    for number in numbers:
        result *= number
    return result


def _div(source: DerivedSource, numbers: list[Fraction]) -> Fraction | None:
    return numbers[0] / numbers[1] if numbers[1] else source.on_zero


def _sqrt(_: DerivedSource, numbers: list[Fraction]) -> Fraction:
    # S² − P² dips below 0 when rounding makes P a little larger than V × I: that is Q = 0.
    return Fraction(math.sqrt(max(numbers[0], Fraction(0))))


def _acos_deg(_: DerivedSource, numbers: list[Fraction]) -> Fraction:
    cosine = min(max(numbers[0], Fraction(-1)), Fraction(1))
    return Fraction(math.degrees(math.acos(cosine)))


_OPS: dict[DerivedOp, Callable[[DerivedSource, list[Fraction]], Fraction | None]] = {
    DerivedOp.MUL: _mul,
    DerivedOp.SUM: lambda _, numbers: sum(numbers, Fraction(0)),
    DerivedOp.SUB: lambda _, numbers: numbers[0] - sum(numbers[1:], Fraction(0)),
    DerivedOp.DIV: _div,
    DerivedOp.SQRT: _sqrt,
    DerivedOp.ACOS_DEG: _acos_deg,
}
assert set(_OPS) == set(DerivedOp), "every derived operation needs its function here"
