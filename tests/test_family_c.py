"""Family C (Tongou AT-Q-SMR1-40-JWT, AT-QCB2-JWT): maps/tongou_qcb2.yaml on ``sim://family_c``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from served import Served, eventually, start_served

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.twin.families import VARIANTS, Protection, Role

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "gateway" / "maps" / "tongou_qcb2.yaml"
TWIN = "sim://family_c?noise=0&report_interval=1&motor_time=0.1&current=7.5&energy=12.34"


@pytest.fixture
async def gw() -> AsyncIterator[Served]:
    started: list[Served] = []
    device = DeviceConfig(1, TWIN, str(MAP))
    config = GatewayConfig(
        (device,), TcpListener("127.0.0.1", 0), None, WritePolicy(switch_interval_s=0.1)
    )
    served = await start_served(config, Served, started)

    async def measured() -> bool:
        reply = await served.client.read_input_registers(0, count=14, device_id=1)
        return not reply.isError()

    await eventually(measured, "the measurements served")
    yield served
    for one in started:
        await one.stop()


def test_the_variant_has_the_issues_datapoints() -> None:
    variant = VARIANTS["family_c"]
    assert {dp.dpid for dp in variant.dps} == {1, 15, 16, *range(101, 127)}
    assert variant.dpids(Role.VOLTAGE) == (106,)
    assert variant.dpids(Role.CURRENT) == (107,)
    assert variant.dpids(Role.POWER) == (117,)
    assert variant.dpids(Role.PHASE_A) == ()
    actions = [p.action_dp for p in variant.protections]
    assert actions == [111, 112, 113, 114, 115, 116]


async def test_separate_voltage_current_and_power_dps(gw: Served) -> None:
    reply = await gw.client.read_input_registers(0, count=14, device_id=1)
    volts, amps, power_hi, power_lo, energy_hi, energy_lo = reply.registers[:6]
    assert (volts, amps) == (2300, 750)  # 230.0 V, 7.50 A (0.01 A registers)
    assert (power_hi << 16) | power_lo == 1725
    assert (energy_hi << 16) | energy_lo == 1234
    assert reply.registers[7] == 350  # 35.0 °C
    assert reply.registers[10:12] == [230, 80]  # rated voltage, signal
    assert (reply.registers[12] << 16) | reply.registers[13] == 1234  # lifetime
    version = await gw.client.read_input_registers(20, count=8, device_id=1)
    assert bytes(b for w in version.registers for b in w.to_bytes(2, "big")).rstrip(b"\0") == (
        b"1.0.3"
    )


async def code(gw: Served, address: int, value: int) -> int:
    reply = await gw.client.write_register(address, value & 0xFFFF, device_id=1)
    return int(reply.exception_code) if reply.isError() else 0


@pytest.mark.parametrize(
    ("address", "good", "bad", "protection"),
    [
        (0, 100, [0, 101], Protection.OVER_CURRENT),
        (1, 250, [244, 296], Protection.OVER_VOLTAGE),
        (2, 200, [144, 221], Protection.UNDER_VOLTAGE),
        (3, 40, [0, 45, 110], Protection.LEAKAGE),
        (4, 90, [-26, 101], Protection.OVER_TEMPERATURE),
        (5, 2500, [0, 2505, 25010], Protection.OVER_POWER),
    ],
)
async def test_limits_take_their_range_and_step(
    gw: Served, address: int, good: int, bad: list[int], protection: Protection
) -> None:
    assert [await code(gw, address, value) for value in bad] == [0x03] * len(bad)
    assert await code(gw, address, good) == 0
    assert gw.twin().thresholds[protection].limit == good


async def test_an_action_an_overload_trip_and_the_event(gw: Served) -> None:
    twin = gw.twin()
    assert await code(gw, 10, 1) == 0  # over-current action: alarm
    assert twin.thresholds[Protection.OVER_CURRENT].trips is False
    assert await code(gw, 10, 2) == 0  # back to trip
    assert await code(gw, 0, 5) == 0  # a 5 A limit under the 7.5 A load
    twin.set_load(7.5)

    async def tripped() -> bool:
        event = await gw.client.read_input_registers(8, count=1, device_id=1)
        switch = await gw.client.read_coils(0, count=1, device_id=1)
        return event.registers == [1] and switch.bits[0] is False  # trip_over_current

    await eventually(tripped, "the over-current trip and its event")
