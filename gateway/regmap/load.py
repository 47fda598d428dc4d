"""Load and validate a register map into frozen specs; every problem is reported at once.

The YAML is first checked against the format tree of :mod:`gateway.regmap.schema` (keys, types,
choices), then for meaning: unknown datapoints, bits, fields, records and enum labels,
duplicate names and ids, overlapping addresses, writable points on read-only sources, and
integer scales that overflow a format for the source's declared range.

A ``fill`` section gives the gaps between points a constant (one read-only ``fill_0x…``
point per address), so clients that read large blocks never meet an unmapped address.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigError
from gateway.modbus.tables import Table
from gateway.regmap.datapoints import build_datapoints, build_device, build_tuya
from gateway.regmap.fill import FILL_PREFIX, fill_points
from gateway.regmap.registers import FLOAT_FORMATS, INTEGER_FORMATS, integer_range, register_count
from gateway.regmap.schema import (
    TABLE_KEYS,
    Checked,
    check_document,
    map_json_schema,
    unknown_name,
)
from gateway.regmap.shipped import not_found_hint, resolve_map
from gateway.regmap.sources import is_text_source, parse_source, source_range, source_writable
from gateway.regmap.specs import (
    DatapointSpec,
    EnergySpec,
    PointSpec,
    RegisterMap,
    SaturationSource,
    StatusSource,
)
from gateway.regmap.vocab import Format, Saturate, StalePolicy, WordOrder
from gateway.regmap.yaml_read import read_text
from gateway.tuya.protocol import DpType

__all__ = ["RegisterMap", "load_map", "map_json_schema", "parse_map"]

_TABLES = dict(zip(TABLE_KEYS, Table, strict=True))
_TEXT_NEEDED = "the string format needs a string datapoint or status.product_key"


def load_map(path: str | os.PathLike[str]) -> RegisterMap:
    """Load and validate the map at ``path``; ConfigError lists every problem."""
    filename = resolve_map(os.fspath(path))
    if not os.path.exists(filename):
        raise ConfigError([f"{filename}: cannot read the map{not_found_hint()}"])
    return parse_map(read_text(filename, "the map"), filename)


def parse_map(text: str, filename: str = "<map>") -> RegisterMap:
    """Validate map text; ``filename`` prefixes the error messages."""
    checked = check_document(text, filename)
    data = checked.data
    datapoints = build_datapoints(checked, data.get("datapoints", {}))
    device = build_device(data.get("device", {"name": "?"}))
    tuya = build_tuya(checked, data.get("tuya", {}), datapoints)
    tables = _tables(checked, data, datapoints)
    energy = _energy(checked, data.get("energy"), datapoints, tables)
    if checked.errors:
        raise ConfigError(sorted(checked.errors, key=_line_of))
    return RegisterMap(filename, device, tuya, MappingProxyType(datapoints), tables, energy)


def _energy(
    checked: Checked,
    raw: Mapping[str, Any] | None,
    datapoints: Mapping[str, DatapointSpec],
    tables: Mapping[Table, tuple[PointSpec, ...]],
) -> EnergySpec | None:
    """The energy section; status.lifetime_energy needs it, and a value datapoint."""
    if raw is None:
        lifetime = StatusSource("lifetime_energy")
        for point in (p for points in tables.values() for p in points if p.source == lifetime):
            checked.errors.append(
                f"{checked.filename}:{point.line}: {point.name}: status.lifetime_energy"
                " needs the energy section"
            )
        return None
    spec = datapoints.get(raw["datapoint"])
    if spec is None or spec.dp_type is not DpType.VALUE:
        why = "is not a value datapoint" if spec else "is not a datapoint of this map"
        checked.error("energy.datapoint", f"{raw['datapoint']!r} {why}")
        return None
    return EnergySpec(spec.name, Fraction(repr(raw["max_power_w"])))


def _line_of(message: str) -> int:
    match = re.match(r".*?:(\d+): ", message)
    return int(match.group(1)) if match else 0


def _tables(
    checked: Checked, data: Mapping[str, Any], datapoints: Mapping[str, DatapointSpec]
) -> Mapping[Table, tuple[PointSpec, ...]]:
    tables: dict[Table, tuple[PointSpec, ...]] = {}
    names: dict[str, str] = {}
    for key, table in _TABLES.items():
        points = []
        for index, item in enumerate(data.get(key, ())):
            path = f"{key}[{index}]"
            if item is None:
                continue
            if item["name"] in names:
                checked.error(
                    f"{path}.name", f"duplicate name {item['name']!r} (also {names[item['name']]})"
                )
            names.setdefault(item["name"], path)
            if item["name"].startswith(FILL_PREFIX):
                checked.error(f"{path}.name", f"names starting {FILL_PREFIX!r} are for fill")
            point = _point(checked, path, table, item, datapoints)
            if point is not None:
                points.append(point)
        points.sort(key=lambda p: p.address)
        _check_overlaps(checked, names, points)
        points += fill_points(checked, key, table, data.get("fill", {}).get(key, ()), points)
        points.sort(key=lambda p: p.address)
        tables[table] = tuple(points)
    return MappingProxyType(_watch_saturation(checked, names, tables))


def _watch_saturation(
    checked: Checked, paths: Mapping[str, str], tables: dict[Table, tuple[PointSpec, ...]]
) -> dict[Table, tuple[PointSpec, ...]]:
    """Each ``status.saturated.point`` source given the point it watches."""
    by_name = {point.name: point for points in tables.values() for point in points}
    known = [n for n, p in by_name.items() if not isinstance(p.source, SaturationSource)]
    watched = {}
    for table, points in tables.items():
        resolved = []
        for point in points:
            source = point.source
            if isinstance(source, SaturationSource):
                target = by_name.get(source.point)
                if target is None or isinstance(target.source, SaturationSource):
                    known = [
                        n for n, p in by_name.items() if not isinstance(p.source, SaturationSource)
                    ]
                    message = unknown_name("point", source.point, known)
                    checked.error(f"{paths[point.name]}.source", message)
                else:
                    point = dataclasses.replace(
                        point, source=SaturationSource(source.point, target)
                    )
            resolved.append(point)
        watched[table] = tuple(resolved)
    return watched


def _point(
    checked: Checked,
    path: str,
    table: Table,
    item: Mapping[str, Any],
    datapoints: Mapping[str, DatapointSpec],
) -> PointSpec | None:
    fmt = Format(item.get("format", Format.BOOL if table.is_bits else Format.UINT16))
    source = parse_source(checked, f"{path}.source", item["source"], datapoints)
    _check_format(checked, path, table, item, fmt)
    if source is None:
        return None
    count = _count(checked, path, table, item, fmt)
    if fmt is Format.STRING and not is_text_source(source, datapoints):
        checked.error(f"{path}.format", f"{_TEXT_NEEDED}, and {item['source']!r} is not text")
    elif fmt is not Format.STRING and is_text_source(source, datapoints):
        checked.error(f"{path}.format", f"{item['source']!r} is text: it needs format: string")
    point = PointSpec(
        table=table,
        name=item["name"],
        address=item["address"],
        count=count,
        source=source,
        format=fmt,
        word_order=WordOrder(item.get("word_order", WordOrder.ABCD)),
        scale=item.get("scale", 1),
        stale=StalePolicy(item.get("stale", StalePolicy.EXCEPTION)),
        saturate=Saturate(item.get("saturate", Saturate.CLAMP)),
        writable=_writable(checked, path, table, item, source, datapoints),
        registers=item.get("registers"),
        description=item.get("description", ""),
        unit=item.get("unit", ""),
        line=checked.line(path),
    )
    _check_scale(checked, path, point, datapoints)
    return point


def _count(checked: Checked, path: str, table: Table, item: Mapping[str, Any], fmt: Format) -> int:
    """How many registers (or bits) the point takes, checked against the last address."""
    if table.is_bits or fmt is Format.STRING:
        count = 1 if table.is_bits else int(item.get("registers", 1))
    else:
        count = register_count(fmt)
    if item["address"] + count > 0x10000:
        checked.error(
            f"{path}.address",
            f"{count} register(s) from {item['address']} pass the last address 65535",
        )
    return count


def _check_format(
    checked: Checked, path: str, table: Table, item: Mapping[str, Any], fmt: Format
) -> None:
    if table.is_bits and fmt is not Format.BOOL:
        checked.error(f"{path}.format", f"{table.value}s hold bool points only, not {fmt}")
    if fmt is Format.STRING and "registers" not in item:
        checked.error(path, "a string point needs 'registers' (its length)")
    if fmt is not Format.STRING and "registers" in item:
        checked.error(f"{path}.registers", "applies only to the string format")
    if "word_order" in item and register_count(fmt, 1) < 2:
        checked.error(f"{path}.word_order", f"applies only to 32- and 64-bit formats, not {fmt}")
    if item.get("stale") == StalePolicy.NAN and fmt not in FLOAT_FORMATS:
        checked.error(f"{path}.stale", f"'nan' applies only to float formats, not {fmt}")
    if "scale" in item and fmt in (Format.BOOL, Format.STRING):
        checked.error(f"{path}.scale", f"applies only to numeric formats, not {fmt}")


def _writable(
    checked: Checked,
    path: str,
    table: Table,
    item: Mapping[str, Any],
    source: object,
    datapoints: Mapping[str, DatapointSpec],
) -> bool:
    why_not = source_writable(source, datapoints)  # type: ignore[arg-type]
    if item.get("format") == Format.STRING:
        why_not = why_not or "string points are read-only"
    wanted = item.get("writable")
    if wanted and not table.is_writable:
        checked.error(f"{path}.writable", f"{table.value}s are read-only")
    elif wanted and why_not:
        checked.error(f"{path}.writable", why_not)
    if wanted is None:
        return table.is_writable and not why_not
    return bool(wanted) and table.is_writable and not why_not


def _check_scale(
    checked: Checked, path: str, point: PointSpec, datapoints: Mapping[str, DatapointSpec]
) -> None:
    if point.format not in INTEGER_FORMATS:
        return
    declared = source_range(point.source, datapoints)
    if declared is None:
        return
    low, high = declared[0] * point.scale, declared[1] * point.scale
    fmt_low, fmt_high = integer_range(point.format)
    if low < fmt_low or high > fmt_high:
        checked.error(
            f"{path}.scale",
            f"scale {point.scale} overflows {point.format} for the declared range"
            f" {float(declared[0]):g}..{float(declared[1]):g}"
            f" ({float(low):g}..{float(high):g} in registers, {point.format} holds"
            f" {fmt_low}..{fmt_high})",
        )


def _check_overlaps(checked: Checked, paths: Mapping[str, str], points: list[PointSpec]) -> None:
    for before, after in itertools.pairwise(points):
        if after.address < before.end:
            checked.error(
                f"{paths[after.name]}.address",
                f"{after.name!r} at {after.address}..{after.end - 1} overlaps"
                f" {before.name!r} at {before.address}..{before.end - 1}",
            )
