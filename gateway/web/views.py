"""What the JSON API and the metrics show of a unit, read from its live objects on request.

Nothing is copied ahead of time: one cache snapshot per request, the same reading and encoding
functions the Modbus backend answers with, so the console never disagrees with a Modbus client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from gateway.modbus.tables import ExceptionCode
from gateway.regmap.docs import COLUMNS, table_rows
from gateway.regmap.specs import DatapointSpec, PointSpec, RegisterMap
from gateway.tuya.link import LinkState
from gateway.tuya.protocol import DpType, DpValue
from gateway.unit.cache import CacheSnapshot, DpEntry
from gateway.unit.dp_codecs import find_record, read_field, scale_wire
from gateway.unit.reads import encode_point
from gateway.unit.values import StatusValues, read_source
from gateway.unit.view import UnitView
from gateway.web.observe import ObservedBackend

__all__ = ["WatchedUnit", "dp_label", "health", "point_readings", "register_table", "unit_view"]

Json = dict[str, Any]


WatchedUnit = UnitView  # the service's Unit, as this package reads it


@dataclasses.dataclass(frozen=True, slots=True)
class PointReading:
    """A point's value now: engineering value, register words or exception, staleness."""

    point: PointSpec
    value: float | str | None
    registers: tuple[int, ...] | None
    exception: int | None
    stale: bool


def dp_label(register_map: RegisterMap, dpid: int) -> str:
    """The ``dp`` label of a DP: its name in the map, or ``dp<id>`` for one the map lacks."""
    spec = register_map.datapoint_by_id(dpid)
    return spec.name if spec is not None else f"dp{dpid}"


def point_readings(unit: WatchedUnit, snapshot: CacheSnapshot) -> list[PointReading]:
    """Every point of the unit's map, in table and address order."""
    regmap = unit.register_map
    status: StatusValues = unit.backend.status_values(snapshot)
    readings = []
    for table in regmap.tables:
        for point in regmap.points(table):
            reading = read_source(point.source, regmap.datapoints, snapshot, status)
            words, _ = encode_point(point, regmap.datapoints, snapshot, status)
            value = reading.value
            readings.append(
                PointReading(
                    point,
                    float(value) if isinstance(value, Fraction) else value,
                    None if isinstance(words, ExceptionCode) else words,
                    int(words) if isinstance(words, ExceptionCode) else None,
                    reading.stale or value is None,
                )
            )
    return readings


def unit_view(unit_id: int, unit: WatchedUnit, observed: ObservedBackend | None) -> Json:
    """``/api/units`` for one unit: link, product key, DPs, points and the last writes."""
    link, regmap = unit.link, unit.register_map
    snapshot = unit.cache.snapshot()
    info = link.product_info
    return {
        "unit": unit_id,
        "device": regmap.device.name,
        "map": regmap.path,
        "link": {"url": link.config.url, "state": link.state.name},
        "product_key": info.product_key if info is not None else None,
        "expected_product_key": regmap.device.product_key,
        "stats": dataclasses.asdict(link.stats),
        "dps": [
            _dp_view(regmap.datapoint_by_id(dpid), entry, snapshot.age(dpid))
            for dpid, entry in sorted(snapshot.entries.items())
        ],
        "points": [_point_view(reading) for reading in point_readings(unit, snapshot)],
        "writes": [] if observed is None else [dataclasses.asdict(w) for w in observed.writes],
    }


def health(units: Mapping[int, WatchedUnit]) -> tuple[bool, Json]:
    """Whether every link is READY, and the body that says so."""
    states = {str(u): unit.link.state.name for u, unit in sorted(units.items())}
    not_ready = {u: s for u, s in states.items() if s != LinkState.READY.name}
    body: Json = {"status": "unavailable" if not_ready else "ok", "units": states}
    if not_ready:
        body["not_ready"] = not_ready
    return not not_ready, body


def register_table(register_map: RegisterMap) -> Json:
    """The map's register table with the columns ``tuya-modbus-gateway docs`` prints."""
    return {"columns": list(COLUMNS), "rows": [list(row) for row in table_rows(register_map)]}


def _point_view(reading: PointReading) -> Json:
    point = reading.point
    return {
        "name": point.name,
        "table": point.table.value,
        "address": point.address,
        "count": point.count,
        "value": reading.value,
        "unit": point.unit,
        "registers": None if reading.registers is None else list(reading.registers),
        "exception": reading.exception,
        "stale": reading.stale,
    }


def _dp_view(spec: DatapointSpec | None, entry: DpEntry, age: float | None) -> Json:
    dp = entry.dp
    return {
        "dp": dp.dpid,
        "name": spec.name if spec is not None else f"dp{dp.dpid}",
        "type": dp.dp_type.name.lower(),
        "value": _dp_value(spec, dp),
        "text": describe_dp(spec, dp),
        "raw": dp.payload.hex(" "),
        "age_s": age,
        "updates": entry.updates,
    }


def _dp_value(spec: DatapointSpec | None, dp: DpValue) -> Any:
    """The decoded value: scaled number, label, set bits, fields or records, else as sent."""
    value = dp.value
    if spec is None or dp.dp_type is not spec.dp_type:
        return value.hex(" ") if isinstance(value, bytes) else value
    if spec.fields:
        return {
            name: _field(f.offset, f.size, f.signed, f.scale, dp) for name, f in spec.fields.items()
        }
    if spec.records:
        return {name: _record(r.rid, r.scale, dp) for name, r in spec.records.items()}
    if isinstance(value, bytes):
        return value.hex(" ")
    if dp.dp_type is DpType.VALUE:
        wire = value if spec.signed else int.from_bytes(dp.payload, "big")
        return float(scale_wire(int(wire), spec.scale))
    if dp.dp_type is DpType.ENUM and isinstance(value, int) and value < len(spec.labels):
        return spec.labels[value]
    if dp.dp_type is DpType.BITMAP and spec.bits:
        return [name for name, bit in spec.bits.items() if int(value) >> bit & 1]
    return value


def describe_dp(spec: DatapointSpec | None, dp: DpValue) -> str:
    """The value as the console shows it, with units and the map's resolution."""
    value = _dp_value(spec, dp)
    if spec is None:
        return str(value)
    if spec.fields:
        return ", ".join(
            f"{name} {_number(value[name], f.scale)} {f.unit}".rstrip()
            for name, f in spec.fields.items()
        )
    if spec.records:
        return ", ".join(
            f"{name} {_record_text(value[name], r.scale, r.unit)}"
            for name, r in spec.records.items()
        )
    if isinstance(value, float):
        return f"{_number(value, spec.scale)} {spec.unit}".rstrip()
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return str(value)


def _field(offset: int, size: int, signed: bool, scale: int, dp: DpValue) -> float | None:
    wire = read_field(dp.payload, offset, size, signed)
    return None if wire is None else float(scale_wire(wire, scale))


def _record(rid: int, scale: int, dp: DpValue) -> Json | None:
    record = find_record(dp.payload, rid)
    if record is None:
        return None
    return {"enabled": record.enabled, "value": float(scale_wire(record.value, scale))}


def _record_text(record: Json | None, scale: int, unit: str) -> str:
    if record is None:
        return "-"
    state = "on" if record["enabled"] else "off"
    return f"{_number(record['value'], scale)} {unit} ({state})"


def _number(value: float | None, scale: int) -> str:
    return "-" if value is None else f"{value:.{max(0, -scale)}f}"
