"""Point sources in a map: parsing ``dp.member`` text and derived mappings, and what they allow.

Text sources are ``dp`` (a whole datapoint), ``dp.field`` (raw field), ``dp.bit`` (bitmap bit),
``dp.record`` / ``dp.record.enabled`` (alarm_set record value or enable flag), ``status.name``
and ``status.saturated.point`` (1 while that point reads a clamped value).
A number or ``{constant: x}`` is a constant; ``{mul|sum|sub|div: [...]}``,
``{sqrt: [x]}`` and ``{acos_deg: [x]}`` derive a value from other sources, with no eval.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from gateway.regmap.schema import Checked, unknown_name
from gateway.regmap.specs import (
    ConstSource,
    DatapointSpec,
    DerivedSource,
    DpSource,
    SaturationSource,
    Source,
    StatusSource,
)
from gateway.regmap.status import STATUS_VALUES, StatusKind
from gateway.regmap.vocab import DerivedOp, SourceKind, to_fraction
from gateway.tuya.protocol import DpType

__all__ = ["is_text_source", "parse_source", "source_range", "source_writable"]

_SATURATED = "saturated"


def parse_source(
    checked: Checked, path: str, raw: Any, datapoints: Mapping[str, DatapointSpec]
) -> Source | None:
    """The source ``raw`` describes; None (with the error recorded) when it names nothing."""
    if raw is None:  # an argument the schema rejected: reported already
        return None
    if isinstance(raw, int | float):
        return ConstSource(to_fraction(raw))
    if isinstance(raw, str):
        return _parse_text(checked, path, raw, datapoints)
    if "constant" in raw:
        return ConstSource(to_fraction(raw["constant"]))
    op = next(name for name in DerivedOp if name in raw)
    args = [
        parse_source(checked, f"{path}.{op}[{i}]", arg, datapoints) for i, arg in enumerate(raw[op])
    ]
    if None in args:
        return None
    if any(isinstance(arg, SaturationSource) for arg in args):
        checked.error(path, "status.saturated.<point> is a whole source, not an argument")
        return None
    bounds = {key: to_fraction(raw[key]) for key in ("min", "max", "on_zero") if key in raw}
    return DerivedSource(op, tuple(a for a in args if a is not None), **bounds)


def _parse_text(
    checked: Checked, path: str, text: str, datapoints: Mapping[str, DatapointSpec]
) -> Source | None:
    name, *members = text.split(".")
    if name == "status":
        if len(members) == 1 and members[0] in STATUS_VALUES:
            return StatusSource(members[0])
        if len(members) == 2 and members[0] == _SATURATED:
            return SaturationSource(members[1])  # the point's name is checked once all are known
        known = [*STATUS_VALUES, f"{_SATURATED}.<point>"]
        checked.error(path, unknown_name("status value", ".".join(members), known))
        return None
    spec = datapoints.get(name)
    if spec is None:
        if not checked.is_broken(f"datapoints.{name}"):
            checked.error(path, unknown_name("datapoint", name, list(datapoints)))
        return None
    source = _member(spec, members)
    if isinstance(source, str):
        checked.error(path, source)
        return None
    return source


def _member(spec: DatapointSpec, members: list[str]) -> DpSource | str:
    """The source, or why the members do not fit the datapoint."""
    kind = spec.dp_type.name.lower()
    if spec.dp_type is DpType.BITMAP and len(members) == 1:
        if members[0] in spec.bits:
            return DpSource(spec.name, SourceKind.BIT, members[0])
        return unknown_name("bit", members[0], list(spec.bits), spec.name)
    if spec.dp_type is DpType.RAW and spec.fields:
        if len(members) == 1 and members[0] in spec.fields:
            return DpSource(spec.name, SourceKind.FIELD, members[0])
        wanted = ".".join(members)
        return unknown_name("field", wanted, list(spec.fields), spec.name)
    if spec.dp_type is DpType.RAW and spec.records:
        return _record(spec, members)
    if members:
        return f"datapoint {spec.name!r} is a {kind} and has no member {'.'.join(members)!r}"
    if spec.dp_type is DpType.RAW:
        return f"raw datapoint {spec.name!r} has no fields or records to serve"
    return DpSource(spec.name)


def _record(spec: DatapointSpec, members: list[str]) -> DpSource | str:
    if not members or members[0] not in spec.records:
        wanted = members[0] if members else ""
        return unknown_name("record", wanted, list(spec.records), spec.name)
    if len(members) == 1 or members[1:] == ["value"]:
        return DpSource(spec.name, SourceKind.RECORD, members[0])
    if members[1:] == ["enabled"]:
        return DpSource(spec.name, SourceKind.ENABLED, members[0])
    return f"record member {'.'.join(members[1:])!r}: expected 'value' or 'enabled'"


def is_text_source(source: Source, datapoints: Mapping[str, DatapointSpec]) -> bool:
    if isinstance(source, StatusSource):
        return STATUS_VALUES[source.name].kind is StatusKind.TEXT
    if isinstance(source, DpSource):
        return datapoints[source.datapoint].dp_type is DpType.STRING
    return False


def source_writable(source: Source, datapoints: Mapping[str, DatapointSpec]) -> str | None:
    """None when a write can reach the source, else the reason it cannot."""
    if not isinstance(source, DpSource):
        return f"{type(source).__name__.removesuffix('Source').lower()} values are read-only"
    spec = datapoints[source.datapoint]
    if not spec.writable:
        return f"datapoint {spec.name!r} is read-only (writable: false)"
    if source.kind in (SourceKind.FIELD, SourceKind.BIT):
        return f"a {source.kind} of datapoint {spec.name!r} cannot be written"
    if spec.dp_type in (DpType.STRING, DpType.BITMAP):
        return f"{spec.dp_type.name.lower()} datapoints are served read-only"
    return None


def source_range(
    source: Source, datapoints: Mapping[str, DatapointSpec]
) -> tuple[Fraction, Fraction] | None:
    """The source's declared range in engineering units, if it has one."""
    if isinstance(source, ConstSource):
        return source.value, source.value
    if isinstance(source, SaturationSource):
        return Fraction(0), Fraction(1)
    if isinstance(source, StatusSource):
        status = STATUS_VALUES[source.name]
        return None if status.low is None or status.high is None else (status.low, status.high)
    if isinstance(source, DerivedSource):
        return _derived_range(source)
    if not isinstance(source, DpSource):
        return None
    spec = datapoints[source.datapoint]
    if source.kind in (SourceKind.BIT, SourceKind.ENABLED) or spec.dp_type is DpType.BOOL:
        return Fraction(0), Fraction(1)
    if source.kind is SourceKind.FIELD:
        field = spec.fields[str(source.member)]
        natural = _natural(field.size, field.signed, field.scale)
        return _declared(field.min, field.max, natural)
    if source.kind is SourceKind.RECORD:
        record = spec.records[str(source.member)]
        natural = _natural(2, False, record.scale)
        return _declared(record.min, record.max, natural)
    if spec.dp_type is DpType.ENUM:
        return Fraction(0), Fraction(len(spec.labels) - 1)
    if spec.dp_type is DpType.BITMAP and spec.size is not None:
        return Fraction(0), Fraction(2 ** (8 * spec.size) - 1)
    if spec.min is not None and spec.max is not None:
        return spec.min, spec.max
    return None


def _derived_range(source: DerivedSource) -> tuple[Fraction, Fraction] | None:
    """Bounds from ``min``/``max`` and, for acos_deg, its natural 0..180."""
    low, high = source.min, source.max
    if source.op is DerivedOp.ACOS_DEG:
        low = Fraction(0) if low is None else max(low, Fraction(0))
        high = Fraction(180) if high is None else min(high, Fraction(180))
    if low is None or high is None:
        return None
    return low, high


def _natural(size: int, signed: bool, scale: int) -> tuple[Fraction, Fraction]:
    step = Fraction(10) ** scale
    if signed:
        return -(2 ** (8 * size - 1)) * step, (2 ** (8 * size - 1) - 1) * step
    return Fraction(0), (2 ** (8 * size) - 1) * step


def _declared(
    low: Fraction | None, high: Fraction | None, natural: tuple[Fraction, Fraction]
) -> tuple[Fraction, Fraction]:
    return (natural[0] if low is None else low), (natural[1] if high is None else high)
