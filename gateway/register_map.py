"""Load and validate a register map into frozen specs; every problem is reported at once.

The YAML is first checked against the format tree of :mod:`gateway.map_schema` (keys, types,
choices), then for meaning: unknown datapoints, bits, fields, records and enum labels,
duplicate names and ids, overlapping addresses, writable points on read-only sources, and
integer scales that overflow a format for the source's declared range.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigError, ProtocolError
from gateway.map_schema import (
    TABLE_KEYS,
    Checked,
    check_document,
    map_json_schema,
    not_one_of,
    unknown_name,
)
from gateway.map_sources import is_text_source, parse_source, source_range, source_writable
from gateway.map_specs import (
    DatapointSpec,
    DeviceSpec,
    FieldSpec,
    KeepAlive,
    PointSpec,
    RecordSpec,
    RegisterMap,
    TuyaSpec,
)
from gateway.protocol import DpType, DpValue
from gateway.registers import FLOAT_FORMATS, INTEGER_FORMATS, integer_range, register_count
from gateway.tables import Table

__all__ = ["RegisterMap", "load_map", "map_json_schema", "parse_map"]

_TABLES = dict(zip(TABLE_KEYS, Table, strict=True))
_IDENT_IDS = {
    "vendor_name": 0,
    "product_code": 1,
    "revision": 2,
    "vendor_url": 3,
    "product_name": 4,
    "model_name": 5,
    "user_application_name": 6,
}
_TEXT_NEEDED = "the string format needs a string datapoint or status.product_key"
_TYPE_KEYS = {
    "labels": ("enum",),
    "bits": ("bitmap",),
    "size": ("bitmap",),
    "fields": ("raw",),
    "records": ("raw",),
    "scale": ("value",),
    "signed": ("value",),
    "min": ("value",),
    "max": ("value",),
    "step": ("value",),
}


def load_map(path: str | os.PathLike[str]) -> RegisterMap:
    """Load and validate the map at ``path``; ConfigError lists every problem."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{filename}: cannot read the map: {err}"]) from err
    return parse_map(text, filename)


def parse_map(text: str, filename: str = "<map>") -> RegisterMap:
    """Validate map text; ``filename`` prefixes the error messages."""
    checked = check_document(text, filename)
    data = checked.data
    datapoints = _datapoints(checked, data.get("datapoints", {}))
    device = _device(data.get("device", {"name": "?"}))
    tuya = _tuya(checked, data.get("tuya", {}), datapoints)
    tables = _tables(checked, data, datapoints)
    if checked.errors:
        raise ConfigError(sorted(checked.errors, key=_line_of))
    return RegisterMap(filename, device, tuya, MappingProxyType(datapoints), tables)


def _line_of(message: str) -> int:
    match = re.match(r".*?:(\d+): ", message)
    return int(match.group(1)) if match else 0


def _frac(value: object) -> Fraction | None:
    if value is None:
        return None
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(str(value))


def _device(raw: Mapping[str, Any]) -> DeviceSpec:
    ident = dict(raw.get("identification", {}))
    ident.setdefault("vendor_name", raw.get("vendor", "") or "tuya-modbus-gateway")
    ident.setdefault("product_code", raw.get("model", "") or raw["name"])
    ident.setdefault("revision", "1.0")
    ident.setdefault("product_name", raw["name"])
    if raw.get("model"):
        ident.setdefault("model_name", raw["model"])
    texts = {_IDENT_IDS[key]: str(value) for key, value in ident.items()}
    return DeviceSpec(
        name=raw["name"],
        vendor=raw.get("vendor", ""),
        model=raw.get("model", ""),
        product_key=raw.get("product_key"),
        description=raw.get("description", ""),
        identification=MappingProxyType(dict(sorted(texts.items()))),
    )


def _datapoints(checked: Checked, raw: Mapping[str, Any]) -> dict[str, DatapointSpec]:
    specs: dict[str, DatapointSpec] = {}
    owners: dict[int, str] = {}
    for name, item in raw.items():
        path = f"datapoints.{name}"
        dp_type = DpType[item["type"].upper()]
        for key, types in _TYPE_KEYS.items():
            if key in item and item["type"] not in types:
                checked.error(f"{path}.{key}", f"applies only to {', '.join(types)} datapoints")
        if item["id"] in owners:
            checked.error(f"{path}.id", f"id {item['id']} is also {owners[item['id']]!r}")
        owners.setdefault(item["id"], name)
        spec = DatapointSpec(
            name=name,
            dpid=item["id"],
            dp_type=dp_type,
            writable=item.get("writable", False),
            motor=item.get("motor", False),
            scale=item.get("scale", 0),
            unit=item.get("unit", ""),
            signed=item.get("signed", True),
            min=_frac(item.get("min")),
            max=_frac(item.get("max")),
            step=_frac(item.get("step")),
            labels=tuple(item.get("labels", ())),
            bits=MappingProxyType(dict(item.get("bits", {}))),
            size=item.get("size"),
            fields=MappingProxyType(_fields(checked, path, item.get("fields", {}))),
            records=MappingProxyType(_records(checked, path, item.get("records", {}))),
            confirm_timeout_s=item.get("confirm_timeout_s"),
            max_age_s=item.get("max_age_s"),
            description=item.get("description", ""),
        )
        _check_datapoint(checked, path, spec)
        specs[name] = spec
    return specs


def _check_datapoint(checked: Checked, path: str, spec: DatapointSpec) -> None:
    _check_range(checked, path, spec.min, spec.max)
    if spec.fields and spec.records:
        checked.error(f"{path}.records", "a raw datapoint has fields or records, not both")
    if spec.dp_type is DpType.ENUM and not spec.labels:
        checked.error(path, "an enum datapoint needs its labels")
    if len(set(spec.labels)) != len(spec.labels):
        checked.error(f"{path}.labels", "labels must be unique")
    named: dict[int, str] = {}
    for bit_name, bit in spec.bits.items():
        if bit in named:
            checked.error(f"{path}.bits.{bit_name}", f"bit {bit} is also {named[bit]!r}")
        named.setdefault(bit, bit_name)
        if spec.size is not None and bit >= 8 * spec.size:
            checked.error(f"{path}.bits.{bit_name}", f"bit {bit} is outside {spec.size} byte(s)")
    rids: dict[int, str] = {}
    for record in spec.records.values():
        if record.rid in rids:
            checked.error(
                f"{path}.records.{record.name}.id", f"id {record.rid} is also {rids[record.rid]!r}"
            )
        rids.setdefault(record.rid, record.name)


def _check_range(checked: Checked, path: str, low: Fraction | None, high: Fraction | None) -> None:
    if low is not None and high is not None and low > high:
        checked.error(f"{path}.min", f"min {float(low):g} is above max {float(high):g}")


def _fields(checked: Checked, path: str, raw: Mapping[str, Any]) -> dict[str, FieldSpec]:
    fields = {}
    for name, item in raw.items():
        field = FieldSpec(
            name,
            item["offset"],
            item["size"],
            item.get("scale", 0),
            item.get("unit", ""),
            item.get("signed", False),
            _frac(item.get("min")),
            _frac(item.get("max")),
        )
        _check_range(checked, f"{path}.fields.{name}", field.min, field.max)
        fields[name] = field
    return fields


def _records(checked: Checked, path: str, raw: Mapping[str, Any]) -> dict[str, RecordSpec]:
    records = {}
    for name, item in raw.items():
        record = RecordSpec(
            name,
            item["id"],
            item.get("scale", 0),
            item.get("unit", ""),
            _frac(item.get("min")),
            _frac(item.get("max")),
            _frac(item.get("step")),
        )
        _check_range(checked, f"{path}.records.{name}", record.min, record.max)
        records[name] = record
    return records


def _tuya(
    checked: Checked, raw: Mapping[str, Any], datapoints: Mapping[str, DatapointSpec]
) -> TuyaSpec:
    keepalive = []
    for index, item in enumerate(raw.get("keepalive", ())):
        path = f"tuya.keepalive[{index}]"
        if item is None or checked.is_broken(f"datapoints.{item['datapoint']}"):
            continue
        spec = datapoints.get(item["datapoint"])
        if spec is None:
            name = item["datapoint"]
            checked.error(f"{path}.datapoint", unknown_name("datapoint", name, list(datapoints)))
            continue
        try:
            dp = keepalive_value(spec, item["value"])
        except (ProtocolError, ValueError) as err:
            checked.error(f"{path}.value", str(err))
            continue
        keepalive.append(KeepAlive(spec.name, dp, float(item["interval_s"])))
    heartbeat = raw.get("heartbeat", {})
    return TuyaSpec(
        baudrate=raw.get("baudrate", 9600),
        wifi_state=raw.get("wifi_state", 4),
        query_interval_s=raw.get("query_interval_s"),
        confirm_timeout_s=raw.get("confirm_timeout_s", 3.0),
        keepalive=tuple(keepalive),
        heartbeat_interval_s=heartbeat.get("interval_s"),
        heartbeat_timeout_s=heartbeat.get("timeout_s"),
        heartbeats_missed_down=heartbeat.get("missed_down"),
    )


def keepalive_value(spec: DatapointSpec, value: object) -> DpValue:
    """The DpValue a keep-alive writes; ValueError when the value does not fit the datapoint."""
    if spec.dp_type is DpType.BOOL and isinstance(value, bool):
        return DpValue.of_bool(spec.dpid, value)
    if spec.dp_type is DpType.ENUM and isinstance(value, str):
        if value not in spec.labels:
            raise ValueError(not_one_of(value, spec.labels))
        return DpValue.of_enum(spec.dpid, spec.labels.index(value))
    if spec.dp_type is DpType.STRING and isinstance(value, str):
        return DpValue.of_string(spec.dpid, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        wire = Fraction(repr(value)) / Fraction(10) ** spec.scale
        if wire.denominator == 1 and spec.dp_type is DpType.VALUE:
            return DpValue.of_value(spec.dpid, wire.numerator)
        if wire.denominator == 1 and spec.dp_type is DpType.ENUM:
            return DpValue.of_enum(spec.dpid, wire.numerator)
    raise ValueError(f"{value!r} does not fit the {spec.dp_type.name.lower()} datapoint")


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
            point = _point(checked, path, table, item, datapoints)
            if point is not None:
                points.append(point)
        points.sort(key=lambda p: p.address)
        _check_overlaps(checked, names, points)
        tables[table] = tuple(points)
    return MappingProxyType(tables)


def _point(
    checked: Checked,
    path: str,
    table: Table,
    item: Mapping[str, Any],
    datapoints: Mapping[str, DatapointSpec],
) -> PointSpec | None:
    fmt = item.get("format", "bool" if table.is_bits else "uint16")
    source = parse_source(checked, f"{path}.source", item["source"], datapoints)
    _check_format(checked, path, table, item, fmt)
    if source is None:
        return None
    writable = _writable(checked, path, table, item, source, datapoints)
    if table.is_bits or fmt == "string":
        count = 1 if table.is_bits else item.get("registers", 1)
    else:
        count = register_count(fmt)
    if fmt == "string" and not is_text_source(source, datapoints):
        checked.error(f"{path}.format", f"{_TEXT_NEEDED}, and {item['source']!r} is not text")
    elif fmt != "string" and is_text_source(source, datapoints):
        checked.error(f"{path}.format", f"{item['source']!r} is text: it needs format: string")
    if item["address"] + count > 0x10000:
        checked.error(
            f"{path}.address",
            f"{count} register(s) from {item['address']} pass the last address 65535",
        )
    point = PointSpec(
        table=table,
        name=item["name"],
        address=item["address"],
        count=count,
        source=source,
        format=fmt,
        word_order=item.get("word_order", "ABCD"),
        scale=item.get("scale", 1),
        stale=item.get("stale", "exception"),
        writable=writable,
        registers=item.get("registers"),
        description=item.get("description", ""),
        unit=item.get("unit", ""),
        line=checked.line(path),
    )
    _check_scale(checked, path, point, datapoints)
    return point


def _check_format(
    checked: Checked, path: str, table: Table, item: Mapping[str, Any], fmt: str
) -> None:
    if table.is_bits and fmt != "bool":
        checked.error(f"{path}.format", f"{table.value}s hold bool points only, not {fmt}")
    if fmt == "string" and "registers" not in item:
        checked.error(path, "a string point needs 'registers' (its length)")
    if fmt != "string" and "registers" in item:
        checked.error(f"{path}.registers", "applies only to the string format")
    if "word_order" in item and register_count(fmt, 1) < 2:
        checked.error(f"{path}.word_order", f"applies only to 32- and 64-bit formats, not {fmt}")
    if item.get("stale") == "nan" and fmt not in FLOAT_FORMATS:
        checked.error(f"{path}.stale", f"'nan' applies only to float formats, not {fmt}")
    if "scale" in item and fmt in ("bool", "string"):
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
    if item.get("format") == "string":
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
