"""A map's register table as CSV or Markdown (``tuya-modbus-gateway docs``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from fractions import Fraction

from gateway.modbus.tables import Table
from gateway.regmap.registers import INTEGER_FORMATS
from gateway.regmap.sources import source_range
from gateway.regmap.specs import DpSource, PointSpec, RegisterMap, SaturationSource, StatusSource
from gateway.regmap.vocab import Format, SourceKind

__all__ = ["COLUMNS", "SCALE_SENTENCE", "point_unit", "render_csv", "render_markdown", "table_rows"]

COLUMNS = (
    "table",
    "address",
    "count",
    "name",
    "format",
    "word_order",
    "scale",
    "unit",
    "access",
    "range",
    "step",
    "description",
)
SCALE_SENTENCE = (
    "Scale: register = value × scale (voltage 232.6 V at scale 10 reads 2326); a float point"
    " carries the value itself. Range and step are the value's, in its unit: a write outside"
    " the range or off the step is refused with 0x03."
)


def table_rows(register_map: RegisterMap) -> Iterator[tuple[str, ...]]:
    """One row per point, tables in Modbus order, addresses 0-based and ascending."""
    for table in Table:
        for point in register_map.points(table):
            yield (
                table.value,
                str(point.address),
                str(point.count),
                point.name,
                point.format,
                point.word_order if point.count > 1 and point.format is not Format.STRING else "",
                str(point.scale) if point.format in INTEGER_FORMATS else "",
                point_unit(register_map, point),
                "rw" if point.writable else "r",
                *_range_step(register_map, point),
                point.description or _source_text(register_map, point),
            )


def render_csv(register_map: RegisterMap) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(table_rows(register_map))
    return out.getvalue()


def render_markdown(register_map: RegisterMap) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table_rows(register_map):
        cells = (cell.replace("|", "\\|") for cell in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", SCALE_SENTENCE]) + "\n"


def point_unit(register_map: RegisterMap, point: PointSpec) -> str:
    """The point's unit, else its datapoint's."""
    return point.unit or _source_unit(register_map, point)


def _source_unit(register_map: RegisterMap, point: PointSpec) -> str:
    source = point.source
    if not isinstance(source, DpSource) or source.kind in (SourceKind.BIT, SourceKind.ENABLED):
        return ""
    spec = register_map.datapoints[source.datapoint]
    member = source.member or ""
    if source.kind is SourceKind.FIELD and member in spec.fields:
        return spec.fields[member].unit
    if source.kind is SourceKind.RECORD and member in spec.records:
        return spec.records[member].unit
    return spec.unit


def _source_text(register_map: RegisterMap, point: PointSpec) -> str:
    source = point.source
    if isinstance(source, StatusSource):
        return f"gateway status: {source.name}"
    if isinstance(source, SaturationSource):
        return f"1 while {source.point} reads a clamped value"
    if not isinstance(source, DpSource):
        return ""
    spec = register_map.datapoints[source.datapoint]
    member = f" {source.kind} {source.member}" if source.member else ""
    return f"dp{spec.dpid} {spec.name}{member}"


def _range_step(register_map: RegisterMap, point: PointSpec) -> tuple[str, str]:
    """A writable point's accepted range and step, in the value's unit; blank when read-only."""
    if not point.writable:
        return "", ""
    limits = source_range(point.source, register_map.datapoints)
    low, high = ("", "") if limits is None else (_number(limits[0]), _number(limits[1]))
    step = _value_step(register_map, point)
    if point.format in INTEGER_FORMATS and point.scale:
        step = max(step, Fraction(1, point.scale))  # one register count is the finest step
    return (f"{low}..{high}" if limits else ""), _number(step)


def _value_step(register_map: RegisterMap, point: PointSpec) -> Fraction:
    source = point.source
    if not isinstance(source, DpSource) or source.kind in (SourceKind.BIT, SourceKind.ENABLED):
        return Fraction(1)
    spec = register_map.datapoints[source.datapoint]
    member = source.member or ""
    if source.kind == SourceKind.RECORD and member in spec.records:
        record = spec.records[member]
        return record.step or Fraction(10) ** record.scale
    if source.kind == SourceKind.FIELD and member in spec.fields:
        return Fraction(10) ** spec.fields[member].scale
    return spec.step or Fraction(10) ** spec.scale


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"
