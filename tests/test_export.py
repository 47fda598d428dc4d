"""``export``: client configs from a map, read back with exactly the exported settings."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient
from served import Served, eventually, start_served

from gateway.config import DeviceConfig, GatewayConfig
from gateway.modbus.server import TcpListener
from gateway.modbus.tables import Table
from gateway.regmap.export import FORMATS, render
from gateway.regmap.load import load_map
from gateway.regmap.specs import StatusSource

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "register_map.yaml"
SDM120 = ROOT / "gateway" / "maps" / "sdm120.yaml"
TWIN = "sim://family_a?noise=0&report_interval=1&voltage=231.2&current=5&energy=1234.56"
VOLTS, AMPS, WATTS, KWH = 231.2, 5.0, 1156.0, 1234.56
DTYPE = AsyncModbusTcpClient.DATATYPE
SIZES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
SIZES |= {"int64": 4, "uint64": 4}
DEFAULT_EXPECTED = {
    **dict.fromkeys(("voltage", "voltage_f32"), VOLTS),
    **dict.fromkeys(("current", "current_f32"), AMPS),
    **dict.fromkeys(("power", "power_f32"), WATTS),
    **dict.fromkeys(("energy_total", "energy_total_f32"), KWH),
    **dict.fromkeys(("energy_lifetime", "energy_lifetime_f32"), KWH),
    **dict.fromkeys(("leakage_current", "leakage_current_f32", "fault"), 0.0),
    "apparent_power_f32": VOLTS * AMPS,
    "power_factor_f32": WATTS / (VOLTS * AMPS),
    "handshake_state": 3.0,
    # the twin's alarm_set DPs: 63 A, 250 V, 170 V on; leakage 30 mA off
    "overcurrent_threshold": 63.0,
    "overvoltage_threshold": 250.0,
    "undervoltage_threshold": 170.0,
    "leakage_threshold": 30.0,
    **dict.fromkeys(("overcurrent_enabled", "overvoltage_enabled", "undervoltage_enabled"), 1.0),
    "leakage_enabled": 0.0,
}
# gateway counters, not the twin's values: they only have to decode
LIVE = {"data_age", "mcu_reboots", "frames_received", "frames_sent", "checksum_errors"}
LIVE |= {"modbus_requests", "modbus_exceptions", "heartbeat_rtt", "register_saturations"}
LIVE |= {"refused_connections", "refused_writes"}
ENERGY_NAMES = {"energy_total", "energy_total_f32", "energy_lifetime", "energy_lifetime_f32"}


@pytest.fixture
async def gateway() -> AsyncIterator[Served]:
    started: list[Served] = []
    config = GatewayConfig((DeviceConfig(1, TWIN, str(DEFAULT)),), TcpListener("127.0.0.1", 0))
    served = await start_served(config, Served, started)

    async def all_fresh() -> bool:
        reply = await served.client.read_input_registers(0, count=10, device_id=1)
        return not reply.isError() and reply.registers[0] == 2312

    await eventually(all_fresh, "every input served")
    yield served
    for one in started:
        await one.stop()


async def read_sensor(client: AsyncModbusTcpClient, sensor: dict[str, Any]) -> float:
    """What Home Assistant's modbus integration computes for ``sensor``."""
    read = {"input": client.read_input_registers, "holding": client.read_holding_registers}
    count = SIZES[sensor["data_type"]]
    reply = await read[sensor["input_type"]](
        sensor["address"], count=count, device_id=sensor["device_address"]
    )
    assert not reply.isError(), sensor
    order = "little" if sensor.get("swap", "none") == "word" else "big"
    assert sensor.get("swap", "none") in ("none", "word")
    raw = client.convert_from_registers(
        reply.registers, DTYPE[sensor["data_type"].upper()], word_order=order
    )
    assert isinstance(raw, int | float)
    return round(raw * sensor["scale"], sensor["precision"])


async def test_every_home_assistant_sensor_reads_the_twins_value(gateway: Served) -> None:
    text = render(load_map(DEFAULT), "homeassistant", "127.0.0.1", gateway.service.tcp_port, 1)
    (hub,) = yaml.safe_load(text)["modbus"]
    assert (hub["host"], hub["port"], hub["type"]) == ("127.0.0.1", gateway.service.tcp_port, "tcp")
    client = AsyncModbusTcpClient(hub["host"], port=hub["port"], timeout=5)
    assert await client.connect()
    try:
        names = {sensor["name"] for sensor in hub["sensors"]}
        assert names == set(DEFAULT_EXPECTED) | LIVE
        for sensor in hub["sensors"]:
            value = await read_sensor(client, sensor)
            if sensor["name"] in LIVE:
                continue
            want = round(DEFAULT_EXPECTED[sensor["name"]], sensor["precision"])
            slack = 0.02 if sensor["name"] in ENERGY_NAMES else 10.0 ** -sensor["precision"]
            assert value == pytest.approx(want, abs=slack), sensor["name"]
        switch = next(s for s in hub["switches"] if s["name"] == "switch")
        coil = await client.read_coils(switch["verify"]["address"], count=1, device_id=1)
        assert coil.bits[0] is gateway.twin().switch_on is True
    finally:
        client.close()


def test_home_assistant_classes_and_the_lifetime_as_total_increasing() -> None:
    text = render(load_map(SDM120), "homeassistant", "10.0.0.2", 502, 7)
    sensors = {s["name"]: s for s in yaml.safe_load(text)["modbus"][0]["sensors"]}
    assert not any(name.startswith("fill_") for name in sensors)
    imported = sensors["import_energy"]
    assert imported["device_class"] == "energy"
    assert imported["state_class"] == "total_increasing"
    assert imported["unit_of_measurement"] == "kWh"
    assert sensors["mcu_energy_counter"]["state_class"] == "total"  # it may go backwards
    assert sensors["voltage"] | {"device_address": 7} == sensors["voltage"]
    assert sensors["reactive_power"]["unit_of_measurement"] == "var"  # HA's spelling
    assert sensors["voltage"]["data_type"] == "float32"
    assert sensors["power_factor"]["device_class"] == "power_factor"
    assert sensors["frequency"]["device_class"] == "frequency"


async def test_evcc_meter_reads_power_energy_currents_and_voltages(gateway: Served) -> None:
    text = render(load_map(DEFAULT), "evcc", "127.0.0.1", gateway.service.tcp_port, 1)
    (meter,) = yaml.safe_load(text)["meters"]
    assert meter["type"] == "custom"
    client = gateway.client
    for key, want in (("power", WATTS), ("energy", KWH)):
        source = meter[key]
        register = source["register"]
        assert source["uri"] == f"127.0.0.1:{gateway.service.tcp_port}"
        reply = await client.read_input_registers(
            register["address"], count=SIZES[register["decode"]], device_id=1
        )
        raw = client.convert_from_registers(reply.registers, DTYPE[register["decode"].upper()])
        assert isinstance(raw, int | float)
        assert raw * source.get("scale", 1) == pytest.approx(want, abs=0.02), key
    energy = meter["energy"]["register"]["address"]
    chosen = next(p for p in load_map(DEFAULT).points(Table.INPUT_REGISTER) if p.address == energy)
    assert chosen.source == StatusSource("lifetime_energy")  # not the MCU's counter
    assert [c.get("value") for c in meter["currents"][1:]] == [0, 0]
    assert meter["voltages"][0]["register"]["address"] == 0


def test_the_tag_list_has_every_point_but_the_fill() -> None:
    regmap = load_map(SDM120)
    rows = list(csv.DictReader(io.StringIO(render(regmap, "csv", "h", 1, 3))))
    named = {p.name for points in regmap.tables.values() for p in points}
    assert {row["tag"] for row in rows} == {n for n in named if not n.startswith("fill_")}
    voltage = next(row for row in rows if row["tag"] == "voltage")
    # 0xFC00 is past 4xxxx's last address (9998): every reference takes the 6-digit form
    assert (voltage["reference"], voltage["data_type"], voltage["unit_id"]) == (
        "300001",
        "float32",
        "3",
    )
    serial = next(row for row in rows if row["tag"] == "serial_number")
    assert serial["reference"] == str(400001 + 0xFC00)
    switch = next(row for row in load_tags(DEFAULT) if row["tag"] == "switch")
    assert switch["reference"] == "1"  # coil 00001: the default map's addresses fit 5 digits
    power = next(row for row in load_tags(DEFAULT) if row["tag"] == "power")
    assert power["reference"] == "30003"


def load_tags(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(render(load_map(path), "csv", "h", 1, 1))))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_export_command(fmt: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "export", str(SDM120), "--format", fmt, "--port", "502"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    if fmt != "csv":
        assert yaml.safe_load(result.stdout)
