"""Map loading and validation: the default map, every error class, the JSON Schema."""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from gateway.errors import ConfigError
from gateway.modbus.tables import Table
from gateway.regmap.load import load_map, map_json_schema, parse_map
from gateway.regmap.specs import ConstSource, DerivedSource, DpSource, StatusSource
from gateway.tuya.protocol import DpType, DpValue

ROOT = Path(__file__).resolve().parent.parent
MAPS = Path(__file__).resolve().parent / "maps"
DEFAULT_MAP = ROOT / "register_map.yaml"
FAULT_BITS = (
    "short_circuit",
    "surge",
    "overload",
    "leakage",
    "temperature",
    "fire",
    "high_power",
    "self_test",
    "over_current",
    "unbalance",
    "over_voltage",
    "under_voltage",
    "missing_phase",
    "outage",
    "magnetism",
    "credit",
    "no_balance",
)
INPUT_NAMES = (
    "voltage",
    "current",
    "power",
    "energy_total",
    "leakage_current",
    "fault",
    "breaker_id",
    "data_age",
)


def _errors(name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_map(MAPS / name)
    prefix = str(MAPS / name) + ":"
    assert all(e.startswith(prefix) for e in info.value.errors), info.value.errors
    return [e.removeprefix(prefix) for e in info.value.errors]


def test_default_map_validates_with_the_contract_names() -> None:
    regmap = load_map(DEFAULT_MAP)
    names = {t: [p.name for p in regmap.points(t)] for t in Table}
    assert names[Table.COIL] == ["switch", "prepayment"]
    assert names[Table.DISCRETE_INPUT] == [f"fault_{b}" for b in FAULT_BITS] + ["link_online"]
    assert set(INPUT_NAMES) <= set(names[Table.INPUT_REGISTER])
    for kind in ("overcurrent", "overvoltage", "undervoltage", "leakage"):
        assert f"{kind}_threshold" in names[Table.HOLDING_REGISTER]
        assert f"{kind}_enabled" in names[Table.HOLDING_REGISTER]
    assert {dp.dpid for dp in regmap.datapoints.values()} == {1, 6, 9, 11, 15, 16, 17, 18, 19}
    assert regmap.device.product_key == "lih4vjeoyao4jeku"
    assert regmap.device.identification[1] == "AT-Q-SMR1-20"


def test_default_map_blocks_have_no_gaps() -> None:
    regmap = load_map(DEFAULT_MAP)
    for table in Table:
        points = regmap.points(table)
        blocks = 0
        for before, after in itertools.pairwise(points):
            assert after.address >= before.end
            blocks += after.address != before.end
        assert blocks <= 2, table  # integer, float and status blocks at most


def test_default_map_points() -> None:
    regmap = load_map(DEFAULT_MAP)
    voltage = regmap.point("voltage")
    assert (voltage.table, voltage.address, voltage.format, voltage.scale) == (
        Table.INPUT_REGISTER,
        0,
        "uint16",
        10,
    )
    assert voltage.source == DpSource("phase_a", "field", "voltage")
    assert regmap.point("switch").writable
    assert regmap.datapoints["switch"].motor
    assert not regmap.point("voltage").writable
    assert regmap.point("overcurrent_enabled").source == DpSource(
        "alarm_set_2", "enabled", "over_current"
    )
    assert regmap.point("link_online").source == StatusSource("link_online")
    assert regmap.point("breaker_id").count == 8
    with pytest.raises(KeyError):
        regmap.point("nope")
    assert regmap.datapoint_by_id(16) is regmap.datapoints["switch"]
    assert regmap.datapoint_by_id(99) is None


def test_derived_map_sources_and_keepalive() -> None:
    regmap = load_map(MAPS / "derived.yaml")
    assert regmap.point("frequency").source == ConstSource(Fraction(50))
    assert regmap.point("frequency_x100").source == ConstSource(Fraction("49.99"))
    pf = regmap.point("power_factor").source
    assert isinstance(pf, DerivedSource)
    assert (pf.op, pf.min, pf.max, pf.on_zero) == ("div", Fraction(-1), Fraction(1), Fraction(1))
    assert pf.args[1] == DerivedSource(
        "mul", (DpSource("phase_a", "field", "voltage"), DpSource("phase_a", "field", "current"))
    )
    (keepalive,) = regmap.tuya.keepalive
    assert keepalive.dp == DpValue.of_enum(109, 1)
    assert keepalive.interval_s == 60
    assert regmap.tuya.confirm_timeout_s == 0.5
    assert not regmap.point("limit_ro").writable
    assert regmap.point("limit").writable
    assert regmap.datapoints["fine_limit"].step == Fraction("0.5")
    assert regmap.datapoints["online"].dp_type is DpType.ENUM


def test_schema_errors() -> None:
    assert _errors("schema_errors.yaml") == [
        "3: device.vendr: unknown key 'vendr' (did you mean 'vendor'?)",
        "5: tuya.baudrate: expected an integer, got 'fast'",
        "8: datapoints.power.id: 300 is above the maximum 255",
        "12: datapoints.mode.type: 'enumm' is not one of bool, value, string, enum, bitmap,"
        " raw (did you mean 'enum'?)",
        "14: input_registers[0].format: 'flaot32' is not one of bool, uint16, int16, uint32,"
        " int32, uint64, int64, float32, float64, string (did you mean 'float32'?)",
        "15: input_registers[1].name: 'Bad-Name' does not match ^[a-z][a-z0-9_]*$",
        "16: input_registers[2].address: -1 is below the minimum 0",
        "16: input_registers[2].colour: unknown key 'colour' (known: name, address, source,"
        " format, registers, word_order, scale, stale, saturate, writable, description, unit)",
        "17: input_registers[3]: missing required key 'source'",
        "18: input_registers[4].source: expected a source text or a number or a mapping,"
        " got a list",
    ]


SEMANTIC = [
    ("4", "tuya.keepalive[0].value", "'onlin' is not one of offline, online"),
    ("5", "tuya.keepalive[1].datapoint", "unknown datapoint 'nosuch'"),
    ("8", "datapoints.energy.id", "id 1 is also 'voltage'"),
    ("10", "datapoints.fault.labels", "applies only to enum datapoints"),
    ("18", "coils[0].source", "unknown bit 'sureg' of 'fault': expected one of short, surge"),
    ("19", "coils[1].name", "duplicate name 'flag' (also coils[0])"),
    ("19", "coils[1].format", "coils hold bool points only, not uint16"),
    ("21", "discrete_inputs[0].source", "unknown status value 'online'"),
    ("23", "input_registers[0].scale", "scale 1000 overflows uint16 for the declared range 0..500"),
    ("25", "input_registers[2].source", "unknown field 'amps' of 'phase'"),
    ("26", "input_registers[3].address", "'overlapping' at 2..2 overlaps 'voltage_32' at 1..2"),
    ("27", "input_registers[4].stale", "'nan' applies only to float formats, not uint16"),
    ("28", "input_registers[5]", "a string point needs 'registers'"),
    ("28", "input_registers[5].format", "the string format needs a string datapoint"),
    ("29", "input_registers[6].word_order", "applies only to 32- and 64-bit formats"),
    ("31", "holding_registers[0].writable", "datapoint 'energy' is read-only"),
    ("32", "holding_registers[1].source", "record member 'enable': expected 'value' or 'enabled'"),
    ("33", "holding_registers[2].source", "unknown datapoint 'nosuch'"),
]


def test_semantic_errors_all_at_once() -> None:
    errors = _errors("semantic_errors.yaml")
    assert len(errors) == len(SEMANTIC), "\n".join(errors)
    for (line, path, text), error in zip(SEMANTIC, errors, strict=True):
        assert error.startswith(f"{line}: {path}: "), error
        assert text in error, error


MORE = [
    ("3", "datapoints.limit.min", "min 10 is above max 5"),
    ("4", "datapoints.fault.bits.b", "bit 0 is also 'a'"),
    ("4", "datapoints.fault.bits.c", "bit 9 is outside 1 byte(s)"),
    ("9", "datapoints.both.records", "a raw datapoint has fields or records, not both"),
    ("9", "datapoints.both.records.s.id", "id 1 is also 'r'"),
    ("10", "datapoints.mode", "an enum datapoint needs its labels"),
    ("13", "datapoints.limit", "duplicate key"),
    ("15", "input_registers[0].writable", "input_registers are read-only"),
    ("16", "input_registers[1].source.mul[1]", "unknown datapoint 'nosuch'"),
    ("17", "input_registers[2].source", "raw datapoint 'layout' has no fields or records"),
    ("18", "input_registers[3].address", "2 register(s) from 65535 pass the last address"),
    ("19", "input_registers[4].word_order", "applies only to 32- and 64-bit formats"),
    ("20", "input_registers[5].format", "'label' is text: it needs format: string"),
    ("22", "holding_registers[0].source.div", "needs at least 2 item(s)"),
]


def test_more_errors_all_at_once() -> None:
    errors = _errors("more_errors.yaml")
    assert len(errors) == len(MORE), "\n".join(errors)
    for (line, path, text), error in zip(MORE, errors, strict=True):
        assert error.startswith(f"{line}: {path}: "), error
        assert text in error, error


def test_invalid_yaml_empty_and_missing_files(tmp_path: Path) -> None:
    (error,) = _errors("invalid_yaml.yaml")
    assert re.match(r"5: <top>: invalid YAML: expected ',' or '}'", error)
    assert _errors("empty.yaml") == ["1: <top>: the file is empty"]
    with pytest.raises(ConfigError, match="cannot read the map"):
        load_map(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"list.yaml:1: <top>: expected a mapping, got a list"):
        load_map(tmp_path / "list.yaml")


def test_a_broken_datapoint_is_reported_once() -> None:
    text = """
device: {name: x}
datapoints:
  a: {id: 1, type: vlaue}
input_registers:
  - {name: p, address: 0, source: a}
"""
    with pytest.raises(ConfigError) as info:
        parse_map(text, "m.yaml")
    assert info.value.errors == [
        "m.yaml:4: datapoints.a.type: 'vlaue' is not one of bool, value, string, enum, bitmap,"
        " raw (did you mean 'value'?)"
    ]


def test_writable_defaults_follow_table_and_source() -> None:
    text = """
device: {name: x}
datapoints:
  sw: {id: 16, type: bool, writable: true}
  ro: {id: 1, type: value}
coils:
  - {name: sw, address: 0, source: sw}
holding_registers:
  - {name: ro, address: 0, source: ro}
  - {name: c, address: 1, source: 5}
  - {name: st, address: 2, source: status.mcu_reboots}
discrete_inputs:
  - {name: sw_state, address: 0, source: sw}
"""
    regmap = parse_map(text)
    assert regmap.point("sw").writable
    assert not regmap.point("ro").writable
    assert not regmap.point("c").writable
    assert not regmap.point("st").writable
    assert not regmap.point("sw_state").writable
    assert regmap.device.identification == {0: "tuya-modbus-gateway", 1: "x", 2: "1.0", 4: "x"}


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ("{name: w, address: 0, source: ro, writable: true}", "datapoint 'ro' is read-only"),
        ("{name: w, address: 0, source: 5, writable: true}", "const values are read-only"),
        ("{name: w, address: 0, source: bm.a, writable: true}", "a bit of datapoint 'bm'"),
        ("{name: w, address: 0, source: bm, writable: true}", "bitmap datapoints are served"),
        ("{name: w, address: 0, source: {sum: [1, 2]}, writable: true}", "derived values"),
    ],
)
def test_writable_points_on_read_only_sources(point: str, message: str) -> None:
    text = f"""
device: {{name: x}}
datapoints:
  ro: {{id: 1, type: value}}
  bm: {{id: 9, type: bitmap, bits: {{a: 0}}, writable: true}}
holding_registers:
  - {point}
"""
    with pytest.raises(ConfigError) as info:
        parse_map(text, "m.yaml")
    (error,) = info.value.errors
    assert error.startswith("m.yaml:7: holding_registers[0].writable: "), error
    assert message in error


@pytest.mark.parametrize(
    ("source", "fmt", "scale", "ok"),
    [
        ("phase.v", "uint16", 10, True),  # 0..6553.5 V ×10 fits
        ("phase.v", "uint16", 100, False),
        ("phase.i", "uint16", 1000, True),  # declared max 65
        ("phase.i", "int16", 1000, False),
        ("phase.p", "uint16", 1, False),  # natural u24 range
        ("phase.p", "uint32", 1, True),
        ("phase.t", "int16", 10, True),  # signed field -3276.8..3276.7
        ("phase.t", "uint16", 10, False),
        ("alarms.oc", "uint16", 1000, True),
        ("alarms.oc", "uint16", 10000, False),
        ("alarms.raw", "int16", 1, False),
        ("sw", "bool", 1, True),
        ("mode", "uint16", 1, True),
        ("limit", "int16", 100, True),
        ("limit", "int16", 1000, False),
        ("big", "uint16", 1000, True),  # no declared range: saturates at run time
    ],
)
def test_scale_overflow_for_the_declared_range(source: str, fmt: str, scale: int, ok: bool) -> None:
    scale_text = "" if fmt == "bool" else f", scale: {scale}"
    text = f"""
device: {{name: x}}
datapoints:
  phase:
    id: 6
    type: raw
    fields:
      v: {{offset: 0, size: 2, scale: -1}}
      i: {{offset: 2, size: 3, scale: -3, max: 65}}
      p: {{offset: 5, size: 3}}
      t: {{offset: 8, size: 2, scale: -1, signed: true}}
  alarms: {{id: 18, type: raw, records: {{oc: {{id: 1, max: 63}}, raw: {{id: 2}}}}}}
  sw: {{id: 16, type: bool}}
  mode: {{id: 3, type: enum, labels: [a, b]}}
  limit: {{id: 4, type: value, min: -100, max: 100}}
  big: {{id: 5, type: value}}
input_registers:
  - {{name: x, address: 0, source: {source}, format: {fmt}{scale_text}}}
"""
    if ok:
        assert parse_map(text).point("x").scale == (1 if fmt == "bool" else scale)
        return
    with pytest.raises(ConfigError, match=r"input_registers\[0\]\.scale: scale \d+ overflows"):
        parse_map(text)


def test_json_schema_is_valid_and_agrees_with_the_loader() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = map_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    for path in (DEFAULT_MAP, MAPS / "derived.yaml"):
        document = yaml.safe_load(path.read_text())
        assert list(validator.iter_errors(document)) == [], path
    broken = yaml.safe_load((MAPS / "schema_errors.yaml").read_text())
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("flaot32" in m for m in messages)
    assert any("vendr" in m for m in messages)
    kinds = schema["$defs"]["source"]["anyOf"]
    operations = {name for kind in kinds for name in kind.get("required", [])}
    assert operations == {"constant", "mul", "sum", "sub", "div", "sqrt", "acos_deg"}
    assert {kind["type"] for kind in kinds} == {"string", "number", "object"}
    formats = schema["properties"]["input_registers"]["items"]["properties"]["format"]["enum"]
    assert "float64" in formats
