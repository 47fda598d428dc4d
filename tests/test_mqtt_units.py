"""The MQTT northbound against a real Mosquitto: --map auto, many units, refusals' results."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from mqtt_broker import Broker, Heard, gateway_mqtt_settings, heard_text, listening
from served import Served, eventually

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.mqtt.discovery import discovery_messages, published_points
from gateway.mqtt.topics import Topics
from gateway.unit.values import read_source

ROOT = Path(__file__).resolve().parents[1]
GW = "tuya-modbus-gateway/test-gw"
TOPICS = Topics("tuya-modbus-gateway", "test-gw")
SWITCH_CONFIG = "homeassistant/switch/test-gw/1_switch/config"

Start = Callable[[GatewayConfig], Awaitable[Served]]


def twin(unit: int, report_interval: float = 1) -> str:
    return f"sim://family_a?report_interval={report_interval}&motor_time=0.1&seed={unit}"


def config(
    broker: Broker, devices: tuple[DeviceConfig, ...], queue_size: int = 4096
) -> GatewayConfig:
    mqtt = gateway_mqtt_settings(broker, queue_size=queue_size)
    policy = WritePolicy(switch_interval_s=0.1)
    return GatewayConfig(devices, TcpListener("127.0.0.1", 0), None, policy, mqtt=mqtt)


async def test_map_auto_publishes_the_chosen_map(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    devices = (DeviceConfig(1, twin(1), "auto"),)
    async with listening(broker.port, "homeassistant/#", f"{GW}/#") as (client, heard):
        gw = await start(config(broker, devices))
        switch = json.loads(await heard_text(heard, SWITCH_CONFIG))
        assert switch["device"]["model"] == "AT-Q-SMR1-20"
        await heard_text(heard, f"{GW}/1/status", "online")
        voltage = float(await heard_text(heard, f"{GW}/1/voltage"))
        assert voltage > 0
        assert await heard_text(heard, f"{GW}/1/switch") == "ON"
        await client.publish(switch["command_topic"], switch["payload_off"], qos=1)
        await heard_text(heard, f"{GW}/1/switch/result", "ok")  # the chosen map's backend
        assert not gw.twin().switch_on
        await heard_text(heard, f"{GW}/1/switch", "OFF")


def _missing(gw: Served, heard: Heard) -> list[str]:
    """Every topic a unit should have on the broker by now that it has not."""
    missing = []
    for unit_id, unit in gw.service.units.items():
        if heard.text(f"{GW}/{unit_id}/status") != "online":
            missing.append(f"{GW}/{unit_id}/status")
        topics = [topic for topic, _ in discovery_messages(unit.register_map, TOPICS, unit_id)]
        snapshot = unit.cache.snapshot()
        status = unit.backend.status_values(snapshot)
        for point in published_points(unit.register_map):
            topics.append(TOPICS.attributes(unit_id, point.name))
            reading = read_source(point.source, unit.register_map.datapoints, snapshot, status)
            if reading.value is not None:
                topics.append(TOPICS.state(unit_id, point.name))
        missing.extend(topic for topic in topics if topic not in heard.latest)
    return missing


async def test_a_full_outbox_loses_no_status_discovery_or_value(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    devices = tuple(
        DeviceConfig(u, twin(u, report_interval=5), str(ROOT / "register_map.yaml"))
        for u in range(1, 7)
    )
    async with listening(broker.port, "homeassistant/#", f"{GW}/#") as (_, heard):
        gw = await start(config(broker, devices, queue_size=16))
        missing: list[str] = []

        async def all_arrived() -> bool:
            missing[:] = _missing(gw, heard)
            return not missing

        try:
            await eventually(all_arrived, "every unit's status, discovery and values")
        finally:
            print(f"{len(missing)} missing, e.g. {missing[:5]}")
        bridge = gw.service.mqtt
        assert bridge is not None
        assert bridge.outbox_dropped > 0  # the queue was too small, and nothing was lost
        assert len(heard.matching(lambda t: t.endswith("/config"))) > 6 * 16


async def test_commands_for_no_unit_get_a_result(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    devices = (DeviceConfig(1, twin(1), str(ROOT / "register_map.yaml")),)
    async with listening(broker.port, f"{GW}/#") as (client, heard):
        await start(config(broker, devices))
        await heard_text(heard, f"{GW}/1/status", "online")
        await client.publish(f"{GW}/7/switch/set", "OFF", qos=1)
        await heard_text(heard, f"{GW}/7/switch/result", "refused: no unit 7")


async def test_commands_past_the_limit_in_progress_get_a_result(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    # slow heartbeats and a long confirmation window: commands to a hung MCU stay in progress
    text = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
    text = text.replace("tuya:\n", "tuya:\n  heartbeat: {interval_s: 20, timeout_s: 20}\n", 1)
    path = tmp_path / "slow.yaml"
    path.write_text(text.replace("confirm_timeout_s: 3.0", "confirm_timeout_s: 60", 1))
    units = range(1, 34)  # one more than the 32 commands in progress at once
    devices = tuple(DeviceConfig(u, twin(u, report_interval=30), str(path)) for u in units)
    async with listening(broker.port, f"{GW}/+/status", f"{GW}/+/+/result") as (client, heard):
        gw = await start(config(broker, devices))
        for unit in units:
            await heard_text(heard, f"{GW}/{unit}/status", "online")
            gw.twin(unit).faults.silent = True
        for unit in units:
            await client.publish(f"{GW}/{unit}/prepayment/set", "ON", qos=1)
        last = await heard_text(heard, f"{GW}/33/prepayment/result")
        assert last == "refused: too many commands in progress (32)"
        assert [heard.text(f"{GW}/{u}/prepayment/result") for u in units[:-1]] == [None] * 32
