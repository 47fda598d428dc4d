"""GatewayService in process: links on the sim:// twin, the real Modbus server, pymodbus client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pymodbus.pdu import ModbusPDU
from served import TIMEOUT_S, Served, eventually, start_served

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.errors import ConfigError
from gateway.modbus.server import TcpListener
from gateway.regmap.load import load_map
from gateway.service import GatewayService
from gateway.tuya.capture import read_capture
from gateway.tuya.link import LinkState

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAP = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
TWIN = "sim://family_a?report_interval=1&motor_time=0.1"  # quiet 0.5 s ends the query
_POINTS = load_map(ROOT / "register_map.yaml")
VOLTAGE = _POINTS.point("voltage").address  # input register, value × 10
SWITCH = _POINTS.point("switch").address  # coil
LINK_ONLINE = _POINTS.point("link_online").address  # discrete input

# Heartbeats every 0.2 s, DOWN after two misses: silence is noticed in well under a second.
FAST_TUYA = """tuya:
  heartbeat: {interval_s: 0.2, timeout_s: 0.2, missed_down: 2}
  keepalive:
    - {datapoint: prepayment, value: false, interval_s: 0.2}
"""


def write_map(folder: Path, name: str = "map.yaml", **replace: str) -> str:
    """The default map with the fast tuya section and any text replacements."""
    text = DEFAULT_MAP.replace("tuya:\n", FAST_TUYA, 1)
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new, 1)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def config(
    *devices: DeviceConfig, read_only: bool = False, switch_interval_s: float = 2.0
) -> GatewayConfig:
    policy = WritePolicy(read_only=read_only, switch_interval_s=switch_interval_s)
    return GatewayConfig(devices, TcpListener("127.0.0.1", 0), None, policy)


class Running(Served):
    """A started service and a connected pymodbus client, reading the default map."""

    async def voltage(self, unit: int = 1) -> ModbusPDU:
        return await self.client.read_input_registers(VOLTAGE, count=1, device_id=unit)

    async def ready(self, unit: int = 1) -> None:
        async def served() -> bool:
            return not (await self.voltage(unit)).isError()

        await eventually(served, f"unit {unit} served")


@pytest.fixture
async def start() -> AsyncIterator[Callable[[GatewayConfig], Awaitable[Running]]]:
    started: list[Running] = []

    async def starter(cfg: GatewayConfig) -> Running:
        return await start_served(cfg, Running, started)

    yield starter
    for running in started:
        await running.stop()


async def test_reads_follow_the_twin_and_a_coil_moves_its_switch(
    tmp_path: Path, start: Callable[[GatewayConfig], Awaitable[Running]]
) -> None:
    gw = await start(config(DeviceConfig(1, TWIN, write_map(tmp_path)), switch_interval_s=0.1))
    await gw.ready()
    gw.twin().set_voltage(241.0)  # under the 250 V over-voltage trip

    async def voltage_is_new() -> bool:
        registers = (await gw.voltage()).registers
        return 2390 <= registers[0] <= 2430  # ×10, with the twin's noise

    await eventually(voltage_is_new, "the new voltage in the register")
    assert gw.twin().switch_on
    reply = await gw.client.write_coil(SWITCH, False, device_id=1)
    assert not reply.isError(), reply
    assert not gw.twin().switch_on  # confirmed by the MCU before the answer came
    bits = await gw.client.read_coils(SWITCH, count=1, device_id=1)
    assert bits.bits[0] is False


async def test_switching_faster_than_the_interval_is_busy(
    tmp_path: Path, start: Callable[[GatewayConfig], Awaitable[Running]]
) -> None:
    gw = await start(config(DeviceConfig(1, TWIN, write_map(tmp_path)), switch_interval_s=60))
    await gw.ready()
    assert not (await gw.client.write_coil(SWITCH, False, device_id=1)).isError()
    again = await gw.client.write_coil(SWITCH, True, device_id=1)
    assert again.isError()
    assert again.exception_code == 0x06
    assert not gw.twin().switch_on  # the second request never reached the breaker


async def test_read_only_rejects_writes_and_sends_nothing(
    tmp_path: Path, start: Callable[[GatewayConfig], Awaitable[Running]]
) -> None:
    gw = await start(config(DeviceConfig(1, TWIN, write_map(tmp_path)), read_only=True))
    await gw.ready()
    reply = await gw.client.write_coil(SWITCH, False, device_id=1)
    assert reply.isError()
    assert gw.twin().switch_on
    assert not [dp for _, dp in gw.twin().dp_commands if dp.dpid == 16]


async def test_silent_twin_goes_stale_then_recovers(
    tmp_path: Path, start: Callable[[GatewayConfig], Awaitable[Running]]
) -> None:
    gw = await start(config(DeviceConfig(1, TWIN, write_map(tmp_path))))
    await gw.ready()
    gw.twin().faults.silent = True

    async def stale() -> bool:
        reply = await gw.voltage()
        return reply.isError() and reply.exception_code == 0x0B

    await eventually(stale, "exception 0x0B once the link is down")
    assert gw.service.units[1].link.state is not LinkState.READY
    online = await gw.client.read_discrete_inputs(LINK_ONLINE, count=1, device_id=1)
    assert online.bits[0] is False
    gw.twin().faults.silent = False
    await gw.ready()  # the link handshakes again and reads are served
    online = await gw.client.read_discrete_inputs(LINK_ONLINE, count=1, device_id=1)
    assert online.bits[0] is True


async def test_two_units_keepalive_and_capture(
    tmp_path: Path, start: Callable[[GatewayConfig], Awaitable[Running]]
) -> None:
    path = write_map(tmp_path)
    capture = tmp_path / "unit2.jsonl"
    gw = await start(
        config(
            DeviceConfig(1, TWIN, path),
            DeviceConfig(2, "sim://family_a?voltage=207", path, capture=str(capture)),
        )
    )
    await gw.ready(1)
    await gw.ready(2)
    first, second = (await gw.voltage(1)).registers[0], (await gw.voltage(2)).registers[0]
    assert 2250 <= first <= 2350
    assert 2020 <= second <= 2120  # each unit is its own breaker

    async def kept_alive() -> bool:
        return sum(dp.dpid == 11 for _, dp in gw.twin(2).dp_commands) >= 2

    await eventually(kept_alive, "keep-alive writes of dp11 on unit 2")
    unknown = await gw.client.read_input_registers(VOLTAGE, count=1, device_id=3)
    assert unknown.isError()
    assert unknown.exception_code == 0x0B
    await gw.service.stop()
    directions = {record.direction for record in read_capture(str(capture))}
    assert directions == {"rx", "tx"}


async def test_product_key_mismatch_is_a_loud_warning(
    tmp_path: Path,
    start: Callable[[GatewayConfig], Awaitable[Running]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_map(tmp_path, **{"product_key: lih4vjeoyao4jeku": "product_key: notthisbreaker00"})
    caplog.set_level(logging.INFO, logger="gateway.service")
    gw = await start(config(DeviceConfig(1, TWIN, path)))
    await gw.ready()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("PRODUCT KEY MISMATCH" in r.getMessage() for r in warnings), caplog.text
    assert "'lih4vjeoyao4jeku'" in caplog.text
    summary = next(r.getMessage() for r in caplog.records if "gateway started" in r.getMessage())
    assert "unit 1: link sim://family_a" in summary
    assert "product key notthisbreaker00" in summary


def test_bad_maps_fail_construction_with_every_error(tmp_path: Path) -> None:
    bad_one = write_map(tmp_path, "one.yaml", **{"type: bool": "type: boolean"})
    bad_two = write_map(tmp_path, "two.yaml", **{"address: 0": "address: -5"})
    with pytest.raises(ConfigError) as caught:
        GatewayService(config(DeviceConfig(1, TWIN, bad_one), DeviceConfig(2, TWIN, bad_two)))
    assert any(line.startswith(f"{bad_one}:") for line in caught.value.errors)
    assert any(line.startswith(f"{bad_two}:") for line in caught.value.errors)


async def test_a_listener_that_cannot_bind_leaves_no_link_running(tmp_path: Path) -> None:
    first = GatewayService(config(DeviceConfig(1, TWIN, write_map(tmp_path))))
    await first.start()
    await first.units[1].link.wait_ready(TIMEOUT_S)
    try:
        taken = TcpListener("127.0.0.1", first.tcp_port)
        second = GatewayService(
            GatewayConfig((DeviceConfig(1, TWIN, write_map(tmp_path)),), taken, None)
        )
        with pytest.raises(OSError, match=r"[Aa]ddress already in use"):
            await second.start()
        await asyncio.sleep(0.2)
        assert second.units[1].link.state is LinkState.STOPPED  # never started
        assert second.units[1].link.stats.frames_sent == 0  # no twin was ever connected
    finally:
        await first.stop()
