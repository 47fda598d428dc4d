"""``export``: client configurations written from a map (Home Assistant, evcc, a SCADA tag list).

Every exported register is read exactly as the map serves it: data type, word order, scale.
Fill points (``fill_0x…``) and text points are left out; bits become binary sensors, and the
switch coil a Home Assistant switch.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from gateway.modbus.tables import Table
from gateway.regmap.docs import point_unit
from gateway.regmap.fill import FILL_PREFIX
from gateway.regmap.load import load_map
from gateway.regmap.registers import FLOAT_FORMATS
from gateway.regmap.specs import DpSource, PointSpec, RegisterMap, StatusSource
from gateway.regmap.vocab import Format, SourceKind, WordOrder

__all__ = [
    "FORMATS",
    "add_export_options",
    "cmd_export",
    "evcc",
    "evcc_roles",
    "ha_sensor",
    "homeassistant",
    "numeric_points",
    "render",
    "tag_list",
]

FORMATS = ("homeassistant", "evcc", "csv")
_HA_SWAP = {"ABCD": "none", "CDAB": "word", "BADC": "byte", "DCBA": "word_byte"}
_HA_INPUT = {Table.INPUT_REGISTER: "input", Table.HOLDING_REGISTER: "holding"}
_CLASSES = {  # unit -> (device_class, state_class)
    "V": ("voltage", "measurement"),
    "A": ("current", "measurement"),
    "mA": ("current", "measurement"),
    "W": ("power", "measurement"),
    "VA": ("apparent_power", "measurement"),
    "var": ("reactive_power", "measurement"),
    "Hz": ("frequency", "measurement"),
    "°C": ("temperature", "measurement"),
    "kWh": ("energy", "total"),
    "kvarh": (None, "total"),
}
# Home Assistant spells these units its own way and checks them against the device class.
_HA_UNITS = {"VAr": "var", "kVArh": "kvarh"}
_LIFETIME = StatusSource("lifetime_energy")
_CSV_COLUMNS = (
    *("tag", "unit_id", "table", "address", "reference", "data_type", "word_order"),
    *("scale", "unit", "access", "description"),
)
_REFERENCE_PREFIX = {
    Table.COIL: 0,
    Table.DISCRETE_INPUT: 1,
    Table.INPUT_REGISTER: 3,
    Table.HOLDING_REGISTER: 4,
}
_FIVE_DIGIT_MAX = 9998  # 4xxxx references end at 49999 (address 9998)


def numeric_points(regmap: RegisterMap, table: Table) -> Iterator[PointSpec]:
    """The points a client reads as numbers: no fill, no text."""
    for point in regmap.points(table):
        if not point.name.startswith(FILL_PREFIX) and point.format != Format.STRING:
            yield point


def _data_type(point: PointSpec) -> str:
    return str(Format.UINT16 if point.format == Format.BOOL else point.format)


def _precision(regmap: RegisterMap, point: PointSpec) -> int:
    """Decimals worth showing: the register's own, else the datapoint's resolution."""
    if point.format not in FLOAT_FORMATS:
        return len(str(point.scale)) - 1
    source = point.source
    if isinstance(source, DpSource) and source.kind not in (SourceKind.BIT, SourceKind.ENABLED):
        spec = regmap.datapoints[source.datapoint]
        scale = spec.scale
        field = spec.fields.get(source.member or "")
        if source.kind == SourceKind.FIELD and field is not None:
            scale = field.scale
        return max(-scale, 0)
    return 2


def ha_unit(unit: str) -> str:
    """``unit`` as Home Assistant writes it (reactive power: ``var``)."""
    return _HA_UNITS.get(unit, unit)


def _classes(regmap: RegisterMap, point: PointSpec) -> dict[str, str]:
    unit = ha_unit(point_unit(regmap, point))
    device_class, state_class = _CLASSES.get(unit, (None, "measurement"))
    if point.source == _LIFETIME:
        state_class = "total_increasing"  # it never goes backwards: the energy dashboard's kind
    if unit == "" and "power_factor" in point.name:
        device_class = "power_factor"
    found = {"device_class": device_class, "state_class": state_class}
    if unit:
        found["unit_of_measurement"] = unit
    return {key: value for key, value in found.items() if value is not None}


def ha_sensor(regmap: RegisterMap, point: PointSpec, unit_id: int) -> dict[str, Any]:
    """One Home Assistant modbus sensor reading ``point``."""
    sensor: dict[str, Any] = {
        "name": point.name,
        "unique_id": f"{regmap.device.name}_{unit_id}_{point.name}",
        "device_address": unit_id,
        "address": point.address,
        "input_type": _HA_INPUT[point.table],
        "data_type": _data_type(point),
    }
    if point.count > 1:
        sensor["swap"] = _HA_SWAP[point.word_order]
    sensor["scale"] = 1 / point.scale if point.scale != 1 else 1
    sensor["precision"] = _precision(regmap, point)
    return sensor | _classes(regmap, point)


def _ha_bits(regmap: RegisterMap, unit_id: int) -> dict[str, list[dict[str, Any]]]:
    switches = [
        {
            "name": point.name,
            "device_address": unit_id,
            "address": point.address,
            "write_type": "coil",
            "verify": {"input_type": "coil", "address": point.address},
        }
        for point in regmap.points(Table.COIL)
        if point.writable and not point.name.startswith(FILL_PREFIX)
    ]
    binary = [
        {
            "name": point.name,
            "device_address": unit_id,
            "address": point.address,
            "input_type": kind,
        }
        for table, kind in ((Table.DISCRETE_INPUT, "discrete_input"), (Table.COIL, "coil"))
        for point in regmap.points(table)
        if not point.name.startswith(FILL_PREFIX) and not (table is Table.COIL and point.writable)
    ]
    return {"switches": switches, "binary_sensors": binary}


def homeassistant(regmap: RegisterMap, host: str, port: int, unit_id: int) -> str:
    """A Home Assistant ``modbus:`` block for one unit."""
    sensors = [
        ha_sensor(regmap, point, unit_id)
        for table in (Table.INPUT_REGISTER, Table.HOLDING_REGISTER)
        for point in numeric_points(regmap, table)
    ]
    hub: dict[str, Any] = {"name": regmap.device.name, "type": "tcp", "host": host, "port": port}
    hub["sensors"] = sensors
    hub |= {key: items for key, items in _ha_bits(regmap, unit_id).items() if items}
    header = f"# Home Assistant modbus for {regmap.path} (tuya-modbus-gateway export)\n"
    return header + yaml.safe_dump({"modbus": [hub]}, sort_keys=False, allow_unicode=True)


def _evcc_decode(point: PointSpec) -> str | None:
    """evcc's decode name; None for a byte-swapped layout evcc cannot read."""
    if point.word_order not in ("ABCD", "CDAB"):
        return None
    base = _data_type(point)
    return base + "s" if point.word_order == WordOrder.CDAB and point.count > 1 else base


def _evcc_source(point: PointSpec, uri: str, unit_id: int) -> dict[str, Any]:
    register = {"address": point.address, "type": _HA_INPUT[point.table]}
    source: dict[str, Any] = {"source": "modbus", "uri": uri, "id": unit_id}
    source["register"] = register | {"decode": _evcc_decode(point)}
    if point.scale != 1:
        source["scale"] = 1 / point.scale
    return source


def evcc_roles(regmap: RegisterMap) -> dict[str, PointSpec]:
    """The points evcc reads: power, energy (the lifetime one if any), current, voltage."""
    points = [
        p
        for table in (Table.INPUT_REGISTER, Table.HOLDING_REGISTER)
        for p in numeric_points(regmap, table)
        if _evcc_decode(p) is not None and "demand" not in p.name
    ]
    roles: dict[str, PointSpec] = {}
    lifetime = [p for p in points if p.source == _LIFETIME]
    if lifetime:
        roles["energy"] = lifetime[0]
    for role, unit in (("power", "W"), ("energy", "kWh"), ("current", "A"), ("voltage", "V")):
        found = next((p for p in points if point_unit(regmap, p) == unit), None)
        if found is not None:
            roles.setdefault(role, found)
    return roles


def evcc(regmap: RegisterMap, host: str, port: int, unit_id: int) -> str:
    """An evcc custom meter for one unit; phases 2 and 3 read 0 (a single-phase breaker)."""
    uri = f"{host}:{port}"
    meter: dict[str, Any] = {"name": regmap.device.name, "type": "custom"}
    roles = evcc_roles(regmap)
    for role in ("power", "energy"):
        if role in roles:
            meter[role] = _evcc_source(roles[role], uri, unit_id)
    for role, key in (("current", "currents"), ("voltage", "voltages")):
        if role in roles:
            zeros = [{"source": "const", "value": 0} for _ in range(2)]
            meter[key] = [_evcc_source(roles[role], uri, unit_id), *zeros]
    header = f"# evcc custom meter for {regmap.path} (tuya-modbus-gateway export)\n"
    return header + yaml.safe_dump({"meters": [meter]}, sort_keys=False, allow_unicode=True)


def tag_list(regmap: RegisterMap, unit_id: int) -> str:
    """Every point but the fill, as a SCADA tag list (CSV, 0-based addresses + references)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    reference_of = _references(regmap)
    for table in Table:
        for p in regmap.points(table):
            if p.name.startswith(FILL_PREFIX):
                continue
            words = str(p.word_order) if p.count > 1 and p.format != Format.STRING else ""
            scale = "" if table.is_bits or p.format in FLOAT_FORMATS else str(p.scale)
            access = "rw" if p.writable else "r"
            reference = reference_of(table, p.address)
            fmt = "bool" if table.is_bits else _data_type(p)
            where = (p.name, unit_id, table.value, p.address, reference, fmt, words)
            writer.writerow([*where, scale, point_unit(regmap, p), access, p.description])
    return out.getvalue()


def _references(regmap: RegisterMap) -> Callable[[Table, int], int]:
    """Modicon references: 5-digit (40001) when every address fits, else 6-digit (400001)."""
    addresses = (p.address for points in regmap.tables.values() for p in points)
    width = 5 if max(addresses, default=0) <= _FIVE_DIGIT_MAX else 6
    return lambda table, address: _REFERENCE_PREFIX[table] * 10 ** (width - 1) + 1 + address


def add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", metavar="MAP")
    parser.add_argument("--format", choices=FORMATS, default="homeassistant")
    parser.add_argument("--host", default="127.0.0.1", help="the gateway's Modbus TCP host")
    parser.add_argument("--port", type=int, default=5020, help="the gateway's Modbus TCP port")
    parser.add_argument("--unit", type=int, default=1, help="the breaker's Modbus unit id")


def render(regmap: RegisterMap, fmt: str, host: str, port: int, unit_id: int) -> str:
    """The export of ``regmap`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "evcc":
        return evcc(regmap, host, port, unit_id)
    if fmt == "csv":
        return tag_list(regmap, unit_id)
    return homeassistant(regmap, host, port, unit_id)


def cmd_export(args: argparse.Namespace) -> int:
    regmap = load_map(args.map)
    sys.stdout.write(render(regmap, args.format, args.host, args.port, args.unit))
    return 0
