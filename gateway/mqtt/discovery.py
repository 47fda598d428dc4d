"""Home Assistant MQTT discovery: one device per unit, one entity per point. Pure code.

Components: a writable on/off point is a ``switch`` (the motor's is the breaker itself, the
others are settings), a writable number a ``number`` with the map's range and step, a
read-only on/off point a ``binary_sensor`` (fault bits as ``problem``), anything else a
``sensor`` with the device class and state class its unit implies. Points that show gateway
status, and second encodings of a source already announced (the float32 copies), get no
entity; their values are still published. The lifetime energy point is the one whose source
is ``status.lifetime_energy`` (whatever the map names it: the SDM maps' ``import_energy``);
it is published, and announced as ``total_increasing``. Fill points are neither.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

from gateway.mqtt.payloads import OFF, ON, is_on_off
from gateway.mqtt.topics import OFFLINE, ONLINE, Topics
from gateway.regmap.export import ha_unit
from gateway.regmap.specs import DpSource, PointSpec, RegisterMap, Source, StatusSource
from gateway.regmap.vocab import Format

__all__ = ["Entity", "discovery_messages", "entities", "is_lifetime", "published_points"]

# unit of measurement -> (device_class, state_class)
_CLASSES: dict[str, tuple[str | None, str | None]] = {
    "V": ("voltage", "measurement"),
    "A": ("current", "measurement"),
    "mA": ("current", "measurement"),
    "W": ("power", "measurement"),
    "kW": ("power", "measurement"),
    "VA": ("apparent_power", "measurement"),
    "var": ("reactive_power", "measurement"),
    "Hz": ("frequency", "measurement"),
    "°C": ("temperature", "measurement"),
    "kWh": ("energy", "total_increasing"),
    "Wh": ("energy", "total_increasing"),
}
_ENERGY_UNITS = ("kWh", "Wh")
_LIFETIME = StatusSource("lifetime_energy")  # the gateway's never-decreasing energy
_FILL = "fill_0x"  # the maps' fill section: placeholders, no values


@dataclasses.dataclass(frozen=True, slots=True)
class Entity:
    """One point as a Home Assistant entity."""

    component: str
    point: PointSpec
    config: dict[str, Any]


def _reads_status(source: Source) -> bool:
    if isinstance(source, StatusSource):
        return True
    args = getattr(source, "args", ())
    return any(_reads_status(arg) for arg in args)


def is_lifetime(point: PointSpec) -> bool:
    """Whether ``point`` reads the lifetime energy (which never decreases)."""
    return point.source == _LIFETIME


def published_points(regmap: RegisterMap) -> list[PointSpec]:
    """The points whose values go to MQTT: all but fill and the gateway's own status values.

    The lifetime energy point is published although the gateway keeps its value.
    """
    return [
        point
        for points in regmap.tables.values()
        for point in points
        if not point.name.startswith(_FILL)
        and (is_lifetime(point) or not _reads_status(point.source))
    ]


def _announced(regmap: RegisterMap) -> list[PointSpec]:
    """One point per source: the first of its plain encodings, else its first (float) copy."""
    chosen: dict[Source, PointSpec] = {}
    for point in published_points(regmap):
        first = chosen.get(point.source)
        if first is None or (_is_float(first) and not _is_float(point)):
            chosen[point.source] = point
    kept = {id(point) for point in chosen.values()}
    return [point for point in published_points(regmap) if id(point) in kept]


def _is_float(point: PointSpec) -> bool:
    return point.format in (Format.FLOAT32, Format.FLOAT64)


def _is_motor(regmap: RegisterMap, point: PointSpec) -> bool:
    source = point.source
    return isinstance(source, DpSource) and regmap.datapoints[source.datapoint].motor


def _number_range(regmap: RegisterMap, point: PointSpec) -> dict[str, float]:
    """min, max and step of a writable number, in the point's unit."""
    source = point.source
    assert isinstance(source, DpSource)  # only datapoint sources are writable
    spec = regmap.datapoints[source.datapoint]
    low, high, step = spec.min, spec.max, spec.step
    if spec.labels and source.kind == "value":  # an enum: its value is the label's index
        low, high, step = Fraction(0), Fraction(len(spec.labels) - 1), Fraction(1)
    record = spec.records.get(source.member or "") if source.kind == "record" else None
    if record is not None:
        low, high, step = record.min, record.max, record.step
    resolution = Fraction(1, point.scale) if point.scale > 0 else Fraction(1)
    found = {"min": low, "max": high, "step": step or resolution}
    return {key: float(value) for key, value in found.items() if value is not None}


def _sensor_classes(point: PointSpec, has_lifetime: bool) -> dict[str, str]:
    unit = ha_unit(point.unit)
    device_class, state_class = _CLASSES.get(unit, (None, None))
    if unit == "" and "power_factor" in point.name:
        device_class, state_class = "power_factor", "measurement"
    if point.format == "string":
        return {}
    if device_class == "energy" and has_lifetime and not is_lifetime(point):
        state_class = "total"  # the MCU's own counter can go back; the lifetime one cannot
    classes = {"device_class": device_class, "state_class": state_class or "measurement"}
    if unit:
        classes["unit_of_measurement"] = unit
    return {key: value for key, value in classes.items() if value is not None}


def _component(
    regmap: RegisterMap, point: PointSpec, has_lifetime: bool
) -> tuple[str, dict[str, Any]]:
    if point.writable and is_on_off(point):
        extra: dict[str, Any] = {"payload_on": ON, "payload_off": OFF}
        if not _is_motor(regmap, point):
            extra["entity_category"] = "config"
        return "switch", extra
    if point.writable:
        extra = {"mode": "box", "entity_category": "config", **_number_range(regmap, point)}
        if point.unit:
            extra["unit_of_measurement"] = ha_unit(point.unit)
        return "number", extra
    if is_on_off(point):
        extra = {"payload_on": ON, "payload_off": OFF}
        if isinstance(point.source, DpSource) and point.source.kind == "bit":
            extra.update(device_class="problem", entity_category="diagnostic")
        return "binary_sensor", extra
    return "sensor", _sensor_classes(point, has_lifetime)


def _device(regmap: RegisterMap, topics: Topics, unit: int) -> dict[str, Any]:
    spec = regmap.device
    device: dict[str, Any] = {
        "identifiers": [f"tuya_modbus_gateway_{topics.unit_key(unit)}"],
        "name": f"{spec.model or spec.name} unit {unit} ({topics.gateway_id})",
        "model": spec.model or spec.name,
        "manufacturer": spec.vendor or "Tuya",
    }
    return device


def entities(regmap: RegisterMap, topics: Topics, unit: int) -> list[Entity]:
    """The entities of one unit, each with its discovery config."""
    points = list(_announced(regmap))
    has_lifetime = any(is_lifetime(p) and p.unit in _ENERGY_UNITS for p in points)
    availability = [
        {"topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE},
        {
            "topic": topics.unit_status(unit),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        },
    ]
    device = _device(regmap, topics, unit)
    found = []
    for point in points:
        component, extra = _component(regmap, point, has_lifetime)
        config: dict[str, Any] = {
            "name": point.name.replace("_", " ").capitalize(),
            "unique_id": f"tuya_modbus_gateway_{topics.unit_key(unit)}_{point.name}",
            "state_topic": topics.state(unit, point.name),
            "json_attributes_topic": topics.attributes(unit, point.name),
            "availability": availability,
            "availability_mode": "all",
            "device": device,
            "origin": {"name": "tuya-modbus-gateway"},
            **extra,
        }
        if point.writable:
            config["command_topic"] = topics.command(unit, point.name)
        found.append(Entity(component, point, config))
    return found


def discovery_messages(
    regmap: RegisterMap, topics: Topics, unit: int
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) of every entity of one unit."""
    return [
        (topics.discovery(e.component, unit, e.point.name), e.config)
        for e in entities(regmap, topics, unit)
    ]
