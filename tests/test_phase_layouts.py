"""The phase DP's two layouts: the map names one (``layout:``), the codec decodes by it."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from served import Served, eventually, start_served

from gateway.config import DeviceConfig, GatewayConfig
from gateway.errors import ConfigError
from gateway.modbus.server import TcpListener
from gateway.regmap.layouts import PhaseLayout, layout_fields
from gateway.regmap.load import parse_map
from gateway.twin.family_c import phase_15

ROOT = Path(__file__).resolve().parents[1]
PQ_MAP = """device: {name: pq}
datapoints:
  phase_a:
    id: 6
    type: raw
    max_age_s: 90
    layout: LAYOUT
    fields: {current: {offset: 2, size: 3, scale: -3, unit: A, max: 65}}
input_registers:
  - {name: voltage, address: 0, source: phase_a.voltage, format: float32}
  - {name: current, address: 2, source: phase_a.current, format: float32}
  - {name: power, address: 4, source: phase_a.power, format: float32}
  - {name: reactive_power, address: 6, source: phase_a.reactive_power, format: float32}
  - {name: apparent_power, address: 8, source: phase_a.apparent_power, format: float32}
  - {name: power_factor, address: 10, source: phase_a.power_factor, format: float32}
"""
TWIN = "noise=0&report_interval=1&voltage=230&current=2"


def test_the_layouts_and_their_offsets() -> None:
    eight = layout_fields(PhaseLayout.VIP8)
    fifteen = layout_fields(PhaseLayout.VIPQSF15)
    assert sum(f.size for f in eight.values()) == 8
    assert sum(f.size for f in fifteen.values()) == 15
    assert list(fifteen)[:3] == list(eight)
    assert [f.offset for f in fifteen.values()] == [0, 2, 5, 8, 11, 14]
    assert phase_15(2300, 2000) == bytes.fromhex("08fc 0007d0 0001cc 000000 0001cc 64")


def test_explicit_fields_override_the_layout_and_unknown_layouts_are_errors() -> None:
    regmap = parse_map(PQ_MAP.replace("LAYOUT", "vipqsf15"))
    fields = regmap.datapoints["phase_a"].fields
    assert fields["current"].max == 65
    assert fields["power_factor"].scale == -2
    with pytest.raises(ConfigError, match=r"layout: 'vip9' is not one of .*vip8"):
        parse_map(PQ_MAP.replace("LAYOUT", "vip9"))
    with pytest.raises(ConfigError, match=r"unknown field 'reactive_power'"):
        parse_map(PQ_MAP.replace("LAYOUT", "vip8"))


Start = Callable[[str, str], Awaitable[Served]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Start]:
    started: list[Served] = []

    async def start(map_text: str, variant: str) -> Served:
        path = tmp_path / f"{variant}.yaml"
        path.write_text(map_text, encoding="utf-8")
        device = DeviceConfig(1, f"sim://{variant}?{TWIN}", str(path))
        config = GatewayConfig((device,), TcpListener("127.0.0.1", 0))
        return await start_served(config, Served, started)

    yield start
    for served in started:
        await served.stop()


async def read_floats(gw: Served, count: int) -> list[float] | None:
    reply = await gw.client.read_input_registers(0, count=count, device_id=1)
    if reply.isError():
        return None
    raw = b"".join(word.to_bytes(2, "big") for word in reply.registers)
    return [value for (value,) in struct.iter_unpack(">f", raw)]


async def test_the_15_byte_form_serves_reactive_apparent_power_and_power_factor(
    serve: Start,
) -> None:
    gw = await serve(PQ_MAP.replace("LAYOUT", "vipqsf15"), "family_a_pq")
    seen: list[list[float] | None] = []

    async def served() -> bool:
        seen.append(await read_floats(gw, 12))
        return seen[-1] is not None

    await eventually(served, "the 15-byte phase DP served")
    assert seen[-1] == [230.0, 2.0, 460.0, 0.0, 460.0, 1.0]


async def test_an_8_byte_map_reads_the_15_byte_form_and_a_15_byte_field_of_8_is_stale(
    serve: Start,
) -> None:
    default = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
    gw = await serve(default, "family_a_pq")

    async def served() -> bool:
        reply = await gw.client.read_input_registers(0, count=4, device_id=1)
        return not reply.isError() and reply.registers == [2300, 2000, 0, 460]

    await eventually(served, "V, I and P from the first 8 bytes")
    pq = await serve(PQ_MAP.replace("LAYOUT", "vipqsf15"), "family_a")

    async def eight_served() -> bool:
        return await read_floats(pq, 6) == [230.0, 2.0, 460.0]

    await eventually(eight_served, "V, I and P from an 8-byte DP")
    reply = await pq.client.read_input_registers(6, count=2, device_id=1)
    assert reply.exception_code == 0x0B  # no reactive power in 8 bytes: stale, not invented
