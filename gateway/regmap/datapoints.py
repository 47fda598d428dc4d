"""Datapoints, device and link settings of a register map: building the specs, checking them."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from gateway.errors import ProtocolError
from gateway.regmap.layouts import PhaseLayout, layout_fields
from gateway.regmap.schema import Checked, not_one_of, unknown_name
from gateway.regmap.specs import (
    DatapointSpec,
    DeviceSpec,
    FieldSpec,
    KeepAlive,
    RecordSpec,
    TuyaSpec,
)
from gateway.regmap.vocab import to_fraction
from gateway.tuya.protocol import DpType, DpValue

__all__ = ["build_datapoints", "build_device", "build_tuya", "keepalive_value"]

_IDENT_IDS = {
    "vendor_name": 0,
    "product_code": 1,
    "revision": 2,
    "vendor_url": 3,
    "product_name": 4,
    "model_name": 5,
    "user_application_name": 6,
}
_TYPE_KEYS = {
    "labels": ("enum",),
    "bits": ("bitmap",),
    "size": ("bitmap",),
    "fields": ("raw",),
    "layout": ("raw",),
    "records": ("raw",),
    "write_only_changed_records": ("raw",),
    "scale": ("value",),
    "signed": ("value",),
    "min": ("value",),
    "max": ("value",),
    "step": ("value",),
}


def _frac(value: Any) -> Fraction | None:
    return None if value is None else to_fraction(value)


def build_device(raw: Mapping[str, Any]) -> DeviceSpec:
    ident = dict(raw.get("identification", {}))
    ident.setdefault("vendor_name", raw.get("vendor", "") or "tuya-modbus-gateway")
    ident.setdefault("product_code", raw.get("model", "") or raw["name"])
    ident.setdefault("revision", "1.0")
    ident.setdefault("product_name", raw["name"])
    if raw.get("model"):
        ident.setdefault("model_name", raw["model"])
    texts = {_IDENT_IDS[key]: str(value) for key, value in ident.items()}
    keys = ([raw["product_key"]] if raw.get("product_key") else []) + raw.get("product_keys", [])
    return DeviceSpec(
        name=raw["name"],
        vendor=raw.get("vendor", ""),
        model=raw.get("model", ""),
        product_key=raw.get("product_key"),
        description=raw.get("description", ""),
        identification=MappingProxyType(dict(sorted(texts.items()))),
        product_keys=tuple(dict.fromkeys(keys)),
    )


def build_datapoints(checked: Checked, raw: Mapping[str, Any]) -> dict[str, DatapointSpec]:
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
            fields=MappingProxyType(_layout(item) | _fields(checked, path, item.get("fields", {}))),
            records=MappingProxyType(_records(checked, path, item.get("records", {}))),
            write_only_changed_records=item.get("write_only_changed_records", False),
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


def _layout(item: Mapping[str, Any]) -> dict[str, FieldSpec]:
    return dict(layout_fields(PhaseLayout(item["layout"]))) if "layout" in item else {}


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


def build_tuya(
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
        limit = raw.get("max_frame_data", 24)
        if len(dp.encode()) > limit:
            checked.error(f"{path}.value", f"needs {len(dp.encode())} data bytes, over {limit}")
            continue
        keepalive.append(KeepAlive(spec.name, dp, float(item["interval_s"])))
    heartbeat = raw.get("heartbeat", {})
    return TuyaSpec(
        baudrate=raw.get("baudrate", 9600),
        wifi_state=raw.get("wifi_state", 4),
        query_interval_s=raw.get("query_interval_s"),
        confirm_timeout_s=raw.get("confirm_timeout_s", 3.0),
        max_frame_data=raw.get("max_frame_data", 24),
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
        wire = to_fraction(value) / Fraction(10) ** spec.scale
        if wire.denominator == 1 and spec.dp_type is DpType.VALUE:
            return DpValue.of_value(spec.dpid, wire.numerator)
        if wire.denominator == 1 and spec.dp_type is DpType.ENUM:
            return DpValue.of_enum(spec.dpid, wire.numerator)
    raise ValueError(f"{value!r} does not fit the {spec.dp_type.name.lower()} datapoint")
