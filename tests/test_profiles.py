"""Meter profiles: derived ops, fill, and the SDM120 and Tongou maps served on the twin."""

from __future__ import annotations

import asyncio
import math
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from served import TIMEOUT_S, eventually, start_served
from served import Served as ServedBase
from tools import require

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.errors import ConfigError
from gateway.modbus.server import TcpListener
from gateway.modbus.tables import Table
from gateway.regmap.load import load_map, map_json_schema, parse_map
from gateway.regmap.specs import RegisterMap
from gateway.twin import McuTwin, running_twin
from gateway.twin.families import Protection
from gateway.unit.cache import DatapointCache
from gateway.unit.values import read_source

ROOT = Path(__file__).resolve().parents[1]
SDM120 = ROOT / "gateway" / "maps" / "sdm120.yaml"
SDM630 = ROOT / "gateway" / "maps" / "sdm630.yaml"
TONGOU = ROOT / "gateway" / "maps" / "tongou_tosmr1.yaml"
TONGOU_QCB2 = ROOT / "gateway" / "maps" / "tongou_qcb2.yaml"
MAPS = (ROOT / "register_map.yaml", SDM120, SDM630, TONGOU, TONGOU_QCB2)
TWIN_OPTIONS = "noise=0&report_interval=1&motor_time=0.1"  # quiet 0.5 s ends the query


def f32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def floats(registers: Sequence[int]) -> list[float]:
    """ABCD float32 values of a register list."""
    raw = b"".join(word.to_bytes(2, "big") for word in registers)
    return [value for (value,) in struct.iter_unpack(">f", raw)]


# -- maps validate ----------------------------------------------------------------------


@pytest.mark.parametrize("path", MAPS, ids=lambda p: p.name)
def test_every_shipped_map_validates_and_matches_the_json_schema(path: Path) -> None:
    assert isinstance(load_map(path), RegisterMap)
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(map_json_schema())
    assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == []


def test_sdm120_leaves_no_gap_in_the_meter_range() -> None:
    points = load_map(SDM120).points(Table.INPUT_REGISTER)
    covered = {a for p in points for a in range(p.address, p.end)}
    assert set(range(0x0000, 0x015A)) <= covered
    assert load_map(SDM120).point("fill_0x0002").source.value == 0  # type: ignore[union-attr]


# -- derived ops ------------------------------------------------------------------------

OPS_MAP = """device: {{name: ops}}
datapoints:
  phase: {{id: 6, type: raw, fields: {{v: {{offset: 0, size: 2, scale: -1}}}}}}
input_registers:
  - {{name: x, address: 0, source: {source}, format: float64}}
"""


def evaluate(source: str) -> Fraction | str | None:
    regmap = parse_map(OPS_MAP.format(source=source))
    reading = read_source(
        regmap.point("x").source, regmap.datapoints, DatapointCache().snapshot(), {}
    )
    assert not reading.stale
    return reading.value


def reactive(apparent: float, active: float) -> str:
    return (
        f"{{sqrt: [{{sub: [{{mul: [{apparent}, {apparent}]}}, {{mul: [{active}, {active}]}}]}}]}}"
    )


@pytest.mark.parametrize(
    ("apparent", "active", "expected"),
    [(5, 3, 4), (230, 230, 0), (0, 0, 0), (229, 230, 0), (1156, 0, 1156), (2.5, 1.5, 2)],
)
def test_reactive_power_is_the_root_of_s2_minus_p2_and_never_negative(
    apparent: float, active: float, expected: float
) -> None:
    assert evaluate(reactive(apparent, active)) == expected


def test_sqrt_is_bounded_and_takes_exactly_one_argument() -> None:
    assert evaluate("{sqrt: [16], max: 3}") == 3
    assert evaluate("{sqrt: [-4]}") == 0
    with pytest.raises(ConfigError, match=r"<map>:5: input_registers\[0\]\.source\.sqrt: takes"):
        parse_map(OPS_MAP.format(source="{sqrt: [1, 2]}"))
    with pytest.raises(ConfigError, match=r"<map>:5: .*acos_deg: needs at least 1"):
        parse_map(OPS_MAP.format(source="{acos_deg: []}"))
    with pytest.raises(ConfigError, match=r"<map>:5: .*on_zero"):
        parse_map(OPS_MAP.format(source="{sqrt: [1], on_zero: 1}"))


@pytest.mark.parametrize(
    ("cosine", "degrees"),
    [(1, 0), (0, 90), (-1, 180), (0.5, 60), (1.5, 0), (-7, 180), (0.8, 36.86989764584402)],
)
def test_phase_angle_from_a_power_factor_bounded_to_one(cosine: float, degrees: float) -> None:
    value = evaluate(f"{{acos_deg: [{cosine}]}}")
    assert isinstance(value, Fraction)
    assert float(value) == pytest.approx(degrees, abs=1e-9)


def test_power_factor_of_nothing_flowing_is_one_and_its_angle_zero() -> None:
    pf = "{div: [0, {mul: [230, 0]}], min: -1, max: 1, on_zero: 1}"
    assert evaluate(pf) == 1
    assert evaluate(f"{{acos_deg: [{pf}]}}") == 0
    assert evaluate("{div: [-300, 200], min: -1, max: 1}") == -1


def test_units_and_constants_are_exact() -> None:
    assert evaluate("{mul: [1234, 0.001]}") == Fraction("1.234")  # W -> kW
    assert evaluate("{mul: [1.234, 1000]}") == 1234  # kW -> W
    assert evaluate("50") == 50
    assert evaluate("{constant: 59.95}") == Fraction("59.95")


def test_a_derived_value_without_its_input_is_stale() -> None:
    regmap = parse_map(OPS_MAP.format(source="{sqrt: [phase.v]}"))
    reading = read_source(
        regmap.point("x").source, regmap.datapoints, DatapointCache().snapshot(), {}
    )
    assert reading.stale
    assert reading.value is None


def test_unknown_op_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"<map>:5: .*one of .*sqrt, acos_deg") as err:
        parse_map(OPS_MAP.format(source="{pow: [2, 3]}"))
    assert len(err.value.errors) == 1


def test_an_angle_in_an_integer_register_is_checked_for_overflow() -> None:
    text = OPS_MAP.format(source="{acos_deg: [0.5]}").replace("float64", "uint16, scale: 100")
    assert parse_map(text).point("x").scale == 100  # 0..18000
    with pytest.raises(ConfigError, match=r"scale 1000 overflows uint16 .* 0\.\.180 "):
        parse_map(text.replace("scale: 100", "scale: 1000"))


def test_json_schema_knows_the_new_ops() -> None:
    options = map_json_schema()["$defs"]["source"]["anyOf"]
    required = {name for option in options for name in option.get("required", ())}
    assert {"sqrt", "acos_deg", "div", "mul"} <= required
    sqrt = next(o for o in options if o.get("required") == ["sqrt"])
    assert sqrt["properties"]["sqrt"]["maxItems"] == 1
    assert sqrt["additionalProperties"] is False


# -- fill -------------------------------------------------------------------------------

FILL_MAP = """device: {{name: fill}}
datapoints:
  sw: {{id: 16, type: bool}}
coils:
  - {{name: sw, address: 1, source: sw}}
input_registers:
  - {{name: five, address: 2, source: 5}}
fill:
{fill}
"""


def test_fill_covers_only_the_gaps_with_read_only_constants() -> None:
    fill = (
        "  input_registers: [{from: 0, to: 4, value: 7}, {from: 3, to: 5}]\n"
        "  coils: [{from: 0, to: 2}]"
    )
    regmap = parse_map(FILL_MAP.format(fill=fill))
    registers = regmap.points(Table.INPUT_REGISTER)
    assert [(p.name, p.address) for p in registers] == [
        ("fill_0x0000", 0),
        ("fill_0x0001", 1),
        ("five", 2),
        ("fill_0x0003", 3),
        ("fill_0x0004", 4),
        ("fill_0x0005", 5),
    ]
    assert registers[0].source.value == 7  # type: ignore[union-attr]
    assert registers[5].source.value == 0  # type: ignore[union-attr]
    assert not any(p.writable for p in registers)
    assert [p.name for p in regmap.points(Table.COIL)] == ["fill_0x0000", "sw", "fill_0x0002"]


@pytest.mark.parametrize(
    ("fill", "error"),
    [
        ("  input_registers: [{from: 9, to: 3}]", r":9: fill\.input_registers\[0\]\.from: from 9"),
        ("  coils: [{from: 0, to: 3, value: 2}]", r":9: fill\.coils\[0\]\.value: coils hold 0"),
        ("  coils: [{from: 0, too: 3}]", r":9: fill\.coils\[0\]\.too: unknown key"),
        ("  registers: [{from: 0, to: 3}]", r":9: fill\.registers: unknown key"),
        ("  input_registers: [{from: 0, to: 70000}]", r":9: .*above the maximum 65535"),
    ],
)
def test_fill_mistakes_are_errors_with_their_line(fill: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_map(FILL_MAP.format(fill=fill))


def test_fill_names_are_reserved() -> None:
    text = FILL_MAP.format(fill="  coils: []").replace("name: five", "name: fill_0x0002")
    with pytest.raises(ConfigError, match=r"input_registers\[0\]\.name: names starting"):
        parse_map(text)


# -- served on the twin -----------------------------------------------------------------


class Served(ServedBase):
    """A GatewayService on one twin, and a pymodbus client connected to it."""

    async def input_floats(self, address: int, count: int) -> list[float]:
        reply = await self.client.read_input_registers(address, count=count, device_id=1)
        assert not reply.isError(), reply
        return floats(reply.registers)


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    started: list[Served] = []

    async def starter(map_path: str, variant: str, options: str = "") -> Served:
        device = DeviceConfig(1, f"sim://{variant}?{TWIN_OPTIONS}{options}", map_path)
        policy = WritePolicy(switch_interval_s=0.1)
        cfg = GatewayConfig((device,), TcpListener("127.0.0.1", 0), None, policy)
        served = await start_served(cfg, Served, started)
        service = served.service

        async def twin_made() -> bool:
            return running_twin(service.units[1].link.config.url) is not None

        await eventually(twin_made, "the sim link's twin")
        return served

    yield starter
    for served in started:
        await served.stop()


async def sdm_on_twin(serve: Serve, path: Path = SDM120) -> Served:
    """An SDM map on a family A twin at 231.2 V, 5 A, 1234.56 kWh, once all are served."""
    gw = await serve(str(path), "family_a", "&energy=1234.56")
    gw.twin().set_voltage(231.2)
    gw.twin().set_load(5.0)

    async def settled() -> bool:
        reply = await gw.client.read_input_registers(0x0000, count=80, device_id=1)
        if reply.isError():
            return False
        values = floats(reply.registers)
        return values[0] == f32(231.2) and values[3] == 5.0 and values[36] >= 1234.56

    await eventually(settled, "the twin's new state in the SDM registers")
    return gw


def sdm_expected(twin: McuTwin) -> dict[int, float]:
    """What each SDM float register should hold for the twin's state (P = V × I, PF 1)."""
    volts, amps = twin.voltage_v, twin.current_a
    watts = float(int(round(volts * 10) * round(amps * 1000) / 10_000))
    apparent = volts * amps
    return {
        0x00: volts,
        0x06: amps,
        0x0C: watts,
        0x12: apparent,
        0x18: math.sqrt(max(apparent**2 - watts**2, 0.0)),
        0x1E: min(watts / apparent, 1.0),
        0x24: math.degrees(math.acos(min(watts / apparent, 1.0))),
        0x30: amps,
        0x34: watts,
        0x38: apparent,
        0x3C: math.sqrt(max(apparent**2 - watts**2, 0.0)),
        0x3E: min(watts / apparent, 1.0),
        0x42: math.degrees(math.acos(min(watts / apparent, 1.0))),
        0x46: 50.0,
        0x48: twin.energy_kwh,
        0x54: watts,
        0x56: watts,
        0x58: watts,
        0x5A: watts,
        0x102: amps,
        0x108: amps,
        0x156: twin.energy_kwh,
    }


def check_block(start: int, values: list[float], expected: dict[int, float]) -> None:
    """Each float at its address: the expected value (energy within one report), else 0."""
    for index, value in enumerate(values):
        address = start + 2 * index
        want = expected.get(address, 0.0)
        slack = 0.011 if address in (0x48, 0x156) else 0.0
        assert value == pytest.approx(f32(want), rel=1e-6, abs=slack), hex(address)


async def test_sdm120_as_openwb_reads_it(serve: Serve) -> None:
    gw = await sdm_on_twin(serve)
    serial = await gw.client.read_holding_registers(0xFC00, count=2, device_id=1)
    assert not serial.isError(), serial
    assert (serial.registers[0] << 16) | serial.registers[1] == 12000001
    expected = sdm_expected(gw.twin())
    for address in (0x48, 0x4A, 0x46, 0x0C, 0x06, 0x00, 0x1E):
        await asyncio.sleep(0.1)  # openWB's pace between requests
        (value,) = await gw.input_floats(address, 2)
        check_block(address, [value], expected)
    assert (await gw.input_floats(0x46, 2)) == [50.0]
    settings = await gw.client.read_holding_registers(0x0014, count=2, device_id=1)
    assert floats(settings.registers) == [1.0]


@pytest.mark.parametrize(("start", "count"), [(0x0000, 80), (0x0054, 12), (0x0102, 8), (0x0156, 4)])
async def test_sdm120_block_reads_agree_with_the_twin(serve: Serve, start: int, count: int) -> None:
    gw = await sdm_on_twin(serve)
    values = await gw.input_floats(start, count)
    assert len(values) == count // 2
    check_block(start, values, sdm_expected(gw.twin()))


async def test_sdm120_through_mbpoll(serve: Serve) -> None:
    mbpoll = require("mbpoll")
    gw = await sdm_on_twin(serve)
    args = ("-m", "tcp", "-t", "3:float", "-B", "-r", "1", "-c", "10", "-1")
    process = await asyncio.create_subprocess_exec(
        mbpoll,
        *args,
        "-p",
        str(gw.service.tcp_port),
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    assert process.returncode == 0, stderr
    found = re.findall(r"^\[(\d+)\]:\s+(\S+)", stdout.decode(), flags=re.MULTILINE)
    values = {int(ref) - 1: float(text) for ref, text in found}  # mbpoll counts from 1
    assert sorted(values) == list(range(0, 20, 2))
    expected = sdm_expected(gw.twin())
    for address, value in values.items():
        assert value == pytest.approx(expected.get(address, 0.0), rel=1e-5), hex(address)


# -- Tongou on the family B twin ---------------------------------------------------------


async def tongou_on_twin(serve: Serve, folder: Path) -> Served:
    """The Tongou map, keep-alive every 0.3 s instead of 60, on a family B twin."""
    text = TONGOU.read_text(encoding="utf-8")
    assert "interval_s: 60}" in text
    path = folder / "tongou.yaml"
    path.write_text(text.replace("interval_s: 60}", "interval_s: 0.3}"), encoding="utf-8")
    gw = await serve(str(path), "family_b")

    async def served() -> bool:
        reply = await gw.client.read_holding_registers(0, count=6, device_id=1)
        return not reply.isError()

    await eventually(served, "the thresholds served")
    return gw


async def write_code(gw: Served, address: int, value: int) -> int:
    """0 when the write is confirmed, else the Modbus exception code."""
    reply = await gw.client.write_register(address, value & 0xFFFF, device_id=1)
    return int(reply.exception_code) if reply.isError() else 0


@pytest.mark.parametrize(
    ("address", "good", "bad", "protection", "limit"),
    [
        (0, 32, [0, 64], Protection.OVER_CURRENT, 32.0),
        (1, 250, [244, 296], Protection.OVER_VOLTAGE, 250.0),
        (2, 200, [144, 221], Protection.UNDER_VOLTAGE, 200.0),
        (3, 35, [25, 37, 105], Protection.LEAKAGE, 35.0),
        (4, -250, [-251, 1001], Protection.OVER_TEMPERATURE, -25.0),
        (5, 2500, [0, 2505, 25010], Protection.OVER_POWER, 2500.0),
    ],
)
async def test_tongou_thresholds_take_their_range_and_step(
    serve: Serve,
    tmp_path: Path,
    address: int,
    good: int,
    bad: list[int],
    protection: Protection,
    limit: float,
) -> None:
    gw = await tongou_on_twin(serve, tmp_path)
    assert gw.twin().thresholds[protection].limit != limit
    assert [await write_code(gw, address, value) for value in bad] == [0x03] * len(bad)
    assert await write_code(gw, address, good) == 0
    assert gw.twin().thresholds[protection].limit == pytest.approx(limit)
    reply = await gw.client.read_holding_registers(address, count=1, device_id=1)
    assert reply.registers == [good & 0xFFFF]


async def test_tongou_measurements_actions_events_and_keepalive(
    serve: Serve, tmp_path: Path
) -> None:
    gw = await tongou_on_twin(serve, tmp_path)
    twin = gw.twin()

    async def keepalive_seen() -> bool:
        return any(dp.dpid == 109 and dp.value == 1 for _, dp in twin.dp_commands)

    await eventually(keepalive_seen, "the DP 109 = online keep-alive")
    assert twin.fast_reporting
    reply = await gw.client.read_input_registers(0, count=8, device_id=1)
    assert reply.registers[:4] == [2300, 1000, 0, 230]  # 230.0 V, 1.000 A, 230 W (noise 0)
    assert reply.registers[6] == 0  # no leakage
    assert reply.registers[7] == round(twin.temperature_c * 10)
    assert await write_code(gw, 12, 1) == 0  # over-current action: alarm
    assert twin.thresholds[Protection.OVER_CURRENT].trips is False
    assert await write_code(gw, 12, 3) == 0x03  # no fourth label
    assert not (await gw.client.write_coil(1, True, device_id=1)).isError()
    reclose = twin.dp_value(112)
    assert reclose is not None
    assert reclose.value is True
    assert not (await gw.client.write_coil(0, False, device_id=1)).isError()

    async def remote_off_event() -> bool:
        event = await gw.client.read_input_registers(8, count=1, device_id=1)
        return not event.isError() and event.registers == [12]  # remote_off

    await eventually(remote_off_event, "the last event register showing remote_off")


# -- SDM120 and SDM630: every documented register, read three ways ------------------------
# Eastron's documents (see the maps' headers for which, and what sdm_modbus adds): parameter
# start addresses, float32 unless noted.
SDM120_INPUTS = (
    *(0x00, 0x06, 0x0C, 0x12, 0x18, 0x1E, 0x24, 0x46, 0x48, 0x4A, 0x4C, 0x4E),
    *(0x54, 0x56, 0x58, 0x5A, 0x5C, 0x5E, 0x102, 0x108, 0x156, 0x158),
)
SDM120_HOLDING = (0x00, 0x02, 0x0C, 0x12, 0x14, 0x1C, 0x56, 0xF900, 0xF910, 0xF920, 0xF930)
SDM120_HOLDING += (0xF500, 0xFC00, 0xFC02, 0xFC03)
SDM630_INPUTS = (
    *range(0x00, 0x2A, 2),
    *(0x2A, 0x2E, 0x30, 0x34, 0x38, 0x3C, 0x3E, 0x42, 0x46, 0x48, 0x4A, 0x4C, 0x4E, 0x50, 0x52),
    *(0x54, 0x56, 0x58, 0x5A, 0x5C, 0x5E, 0x64, 0x66, 0x68, 0x6A, 0xC8, 0xCA, 0xCC, 0xCE, 0xE0),
    *(0xEA, 0xEC, 0xEE, 0xF0, 0xF2, 0xF4, 0xF8, 0xFA, 0xFE, *range(0x102, 0x10E, 2)),
    *(0x14E, 0x150, 0x152, 0x154, 0x156),
    *range(0x158, 0x17E, 2),
)
SDM630_HOLDING = (0x00, 0x02, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x12, 0x14, 0x16, 0x18, 0x1C, 0x1E)
SDM630_HOLDING += (0x24, 0x28, 0x2A, 0x2C, 0x56, 0x58, 0xD8, 0xF010, 0xF910, 0xF920, 0xF930)
SDM630_HOLDING += (0xFC00, 0xFC03)
# the documented ranges, inclusive: what block readers sweep
RANGES = {
    SDM120: {
        Table.INPUT_REGISTER: ((0x0000, 0x0159),),
        Table.HOLDING_REGISTER: (
            *((0x0000, 0x0057), (0xF500, 0xF501)),
            *((0xF900, 0xF931), (0xFC00, 0xFC04)),
        ),
    },
    SDM630: {
        Table.INPUT_REGISTER: ((0x0000, 0x017D),),
        Table.HOLDING_REGISTER: (
            *((0x0000, 0x0059), (0x00D8, 0x00D9), (0xF010, 0xF011)),
            *((0xF910, 0xF931), (0xFC00, 0xFC04)),
        ),
    },
}
DOCUMENTED = {
    SDM120: {Table.INPUT_REGISTER: SDM120_INPUTS, Table.HOLDING_REGISTER: SDM120_HOLDING},
    SDM630: {Table.INPUT_REGISTER: SDM630_INPUTS, Table.HOLDING_REGISTER: SDM630_HOLDING},
}
EASTRON_MAX_REGISTERS = 80  # "each request ... restricted to 40 parameters"
ENERGY = (0x48, 0x156, 0x15A, 0x166)
SDM_FLOATS = {0x00: 0.0, 0x02: 0.0, 0x0C: 100.0, 0x12: 0.0, 0x14: 1.0, 0x1C: 2.0, 0x56: 1.0}
SDM630_FLOATS = {0x06: 230.0, 0x08: 63.0, 0x0A: 3.0, 0x0E: 0.0, 0x16: 1.0, 0x18: 0.0}
SDM630_FLOATS |= {0x1E: 0.0, 0x24: 43470.0, 0x28: 0.0, 0x2A: 0.0, 0x2C: 0.0, 0x58: 0.0}
SDM630_FLOATS |= {0xD8: 0.0, 0xF930: 0.0}
HOLDING_FLOATS = {SDM120: SDM_FLOATS, SDM630: SDM_FLOATS | SDM630_FLOATS}
HEX_WORDS = {
    SDM120: {0xF900: 0, 0xF910: 0, 0xF920: 1, 0xF930: 0, 0xFC02: 0x0020, 0xFC03: 0x0100},
    SDM630: {0xF010: 0, 0xF910: 0, 0xF920: 1, 0xFC03: 0x0100},
}
SERIALS = {SDM120: 12000001, SDM630: 63000001}
UINT32S = {SDM120: {0xF500: 0, 0xFC00: 12000001}, SDM630: {0xFC00: 63000001}}


def sdm630_expected(twin: McuTwin) -> dict[int, float]:
    """SDM630 with the breaker on L1: L2 and L3 read 0, averages are over three phases."""
    one = sdm_expected(twin)
    volts, amps, energy = one[0x00], one[0x06], one[0x48]
    same = (0x00, 0x06, 0x0C, 0x12, 0x18, 0x1E, 0x24, 0x30, 0x34, 0x38, 0x3C, 0x3E, 0x42, 0x46)
    expected = {a: one[a] for a in (*same, 0x54, 0x56)}
    expected |= {0x2A: volts / 3, 0x2E: amps / 3, 0x64: one[0x12], 0x66: one[0x12]}
    expected |= {0x68: amps, 0x6A: amps, 0xE0: amps, 0x102: amps, 0x108: amps}
    expected |= {0x48: energy, 0x156: energy, 0x15A: energy, 0x166: energy}
    expected |= {0x58: one[0x58], 0x5A: one[0x5A], 0xFE: -one[0x3E]}
    return expected


def check_floats(start: int, values: list[float], expected: dict[int, float]) -> None:
    for index, value in enumerate(values):
        address = start + 2 * index
        slack = 0.011 if address in ENERGY else 0.0
        want = f32(expected.get(address, 0.0))
        assert value == pytest.approx(want, rel=1e-6, abs=slack), hex(address)


def check_holding(path: Path, address: int, words: Sequence[int]) -> None:
    """Holding words at ``address``: the documented constant there, else 0."""
    documented = DOCUMENTED[path][Table.HOLDING_REGISTER]
    hex_words = HEX_WORDS[path]
    if address not in documented:
        if address - 1 not in documented or address - 1 in hex_words:  # not a 2nd word
            assert words[0] == 0, hex(address)
    elif address in HOLDING_FLOATS[path]:
        assert floats(words[:2]) == [HOLDING_FLOATS[path][address]], hex(address)
    elif address in UINT32S[path]:
        assert (words[0] << 16) | words[1] == UINT32S[path][address], hex(address)
    else:
        assert words[0] == hex_words[address], hex(address)


def chunks(low: int, high: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(size, high + 1 - start)) for start in range(low, high + 1, size)]


async def read_words(gw: Served, table: Table, address: int, count: int) -> list[int]:
    read = gw.client.read_input_registers
    if table is Table.HOLDING_REGISTER:
        read = gw.client.read_holding_registers
    reply = await read(address, count=count, device_id=1)
    assert not reply.isError(), (table, hex(address), count, reply)
    return list(reply.registers)


SDM_PROFILES = pytest.mark.parametrize("path", [SDM120, SDM630], ids=lambda p: p.stem)


@SDM_PROFILES
def test_every_documented_register_is_a_named_point_and_the_ranges_have_no_gap(
    path: Path,
) -> None:
    regmap = load_map(path)
    for table, addresses in DOCUMENTED[path].items():
        named = {p.address: p for p in regmap.points(table) if not p.name.startswith("fill_")}
        assert set(addresses) <= set(named), sorted(hex(a) for a in set(addresses) - set(named))
        covered = {a for p in regmap.points(table) for a in range(p.address, p.end)}
        for low, high in RANGES[path][table]:
            assert set(range(low, high + 1)) <= covered, (table, hex(low))


def expected_for(path: Path, twin: McuTwin) -> dict[int, float]:
    return sdm630_expected(twin) if path == SDM630 else sdm_expected(twin)


@SDM_PROFILES
async def test_sdm_whole_ranges_in_the_largest_blocks(serve: Serve, path: Path) -> None:
    gw = await sdm_on_twin(serve, path)
    expected = expected_for(path, gw.twin())
    for table, ranges in RANGES[path].items():
        for low, high in ranges:
            for start, count in chunks(low, high, EASTRON_MAX_REGISTERS):
                words = await read_words(gw, table, start, count)
                assert len(words) == count
                if table is Table.INPUT_REGISTER:
                    check_floats(start, floats(words[: count - count % 2]), expected)
                else:
                    for offset in range(count - 1):
                        check_holding(path, start + offset, words[offset:])


@SDM_PROFILES
async def test_sdm_register_by_register(serve: Serve, path: Path) -> None:
    """One parameter per request, then one register per request over every range."""
    gw = await sdm_on_twin(serve, path)
    expected = expected_for(path, gw.twin())
    for address in DOCUMENTED[path][Table.INPUT_REGISTER]:
        check_floats(
            address,
            floats(await read_words(gw, Table.INPUT_REGISTER, address, 2)),
            {address: expected.get(address, 0.0)},
        )
    for address in DOCUMENTED[path][Table.HOLDING_REGISTER]:
        check_holding(path, address, await read_words(gw, Table.HOLDING_REGISTER, address, 2))
    for table, ranges in RANGES[path].items():
        for low, high in ranges:
            block = await read_words(gw, table, low, min(high + 1 - low, 125))
            for address in range(low, high + 1):
                (word,) = await read_words(gw, table, address, 1)
                if address - low < len(block) and address & ~1 not in ENERGY:
                    assert word == block[address - low], (table, hex(address))


# openWB 2 (github.com/openWB/core, packages/modules/common/sdm.py at 3039a21, 2026-08-21):
# the serial number (holding 0xFC00, uint32) when the meter is set up, then per cycle, 100 ms
# apart, Sdm120.get_counter_state: 0x0000 x14, 0x001E x2, 0x0046 x6; Sdm630_72 in fast mode:
# 0x0000 x18, 0x001E x6, 0x0046 x6, and after an exception its compatibility mode.
OPENWB_ORDER = {
    SDM120: [(0x00, 14), (0x1E, 2), (0x46, 6)],
    SDM630: [(0x00, 18), (0x1E, 6), (0x46, 6)],
}
OPENWB_COMPATIBILITY = [(0x00, 6), (0x06, 6), (0x0C, 6), (0x1E, 6), (0x48, 4), (0x46, 2)]


async def openwb_reads(gw: Served, path: Path) -> list[tuple[int, list[float]]]:
    """openWB 2's SDM modules, in their order (see OPENWB_ORDER)."""
    serial = await read_words(gw, Table.HOLDING_REGISTER, 0xFC00, 2)
    assert (serial[0] << 16) | serial[1] == SERIALS[path]
    order = OPENWB_ORDER[path]
    if path == SDM630:
        order = order + OPENWB_COMPATIBILITY
    values = []
    for address, count in order:
        await asyncio.sleep(0.1)
        words = await read_words(gw, Table.INPUT_REGISTER, address, count)
        values.append((address, floats(words)))
    return values


@SDM_PROFILES
async def test_sdm_as_openwb_reads_it(serve: Serve, path: Path) -> None:
    gw = await sdm_on_twin(serve, path)
    expected = expected_for(path, gw.twin())
    for address, values in await openwb_reads(gw, path):
        check_floats(address, values, expected)


async def test_sdm630_totals_are_consistent_with_one_live_phase(serve: Serve) -> None:
    gw = await sdm_on_twin(serve, SDM630)
    values = dict(zip(range(0, 0x50, 2), await gw.input_floats(0x00, 80), strict=True))
    assert values[0x34] == values[0x0C] > 0  # system power = L1 power
    assert values[0x30] == values[0x06]  # sum of currents = L1 current
    assert values[0x02] == values[0x04] == values[0x0E] == values[0x10] == 0
    assert values[0x2A] == pytest.approx(values[0x00] / 3, rel=1e-6)
    line = await gw.input_floats(0xC8, 8)
    assert line == [0.0, 0.0, 0.0, 0.0]  # line-to-line voltages
    assert (await gw.input_floats(0xE0, 2)) == [values[0x06]]  # neutral current


@SDM_PROFILES
async def test_sdm_settings_are_read_only(serve: Serve, path: Path) -> None:
    gw = await sdm_on_twin(serve, path)
    reply = await gw.client.write_registers(0x0014, [0x4000, 0], device_id=1)
    assert reply.isError()
    assert reply.exception_code == 0x02
    gap = await gw.client.write_register(0x0016, 1, device_id=1)
    assert gap.exception_code == 0x02
