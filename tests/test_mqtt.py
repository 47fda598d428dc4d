"""The MQTT northbound against a real Mosquitto: discovery, values, commands, restarts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mqtt_broker import Broker, Heard, gateway_mqtt_settings, heard_text, listening
from served import Served, eventually

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.mqtt.commands import CommandOutcome
from gateway.regmap.load import load_map

ROOT = Path(__file__).resolve().parents[1]
TWIN = "sim://family_a?report_interval=1&motor_time=0.1"
SWITCH_COIL = load_map(ROOT / "register_map.yaml").point("switch").address
GW = "tuya-modbus-gateway/test-gw"
SWITCH_CONFIG = "homeassistant/switch/test-gw/1_switch/config"
# Heartbeats every 0.2 s, DOWN after two misses: a silent twin is noticed in well under a second.
FAST_TUYA = "tuya:\n  heartbeat: {interval_s: 0.2, timeout_s: 0.2, missed_down: 2}\n"

Start = Callable[[GatewayConfig], Awaitable[Served]]


def gateway_config(
    folder: Path, broker: Broker, units: tuple[int, ...] = (1,), username: str | None = None
) -> GatewayConfig:
    """Twins on a fast-heartbeat map, Modbus on a free port, MQTT to ``broker``."""
    text = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
    path = folder / "map.yaml"
    path.write_text(text.replace("tuya:\n", FAST_TUYA, 1), encoding="utf-8")
    mqtt = gateway_mqtt_settings(broker, username=username)
    devices = tuple(DeviceConfig(unit, TWIN, str(path)) for unit in units)
    policy = WritePolicy(switch_interval_s=0.1)
    return GatewayConfig(devices, TcpListener("127.0.0.1", 0), None, policy, mqtt=mqtt)


def configs(heard: Heard) -> dict[str, dict[str, Any]]:
    found = heard.matching(lambda t: t.startswith("homeassistant/") and t.endswith("/config"))
    return {topic: json.loads(payload) for topic, payload in found.items()}


async def test_discovery_has_what_home_assistant_requires(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    async with listening(broker.port, "homeassistant/#", f"{GW}/#") as (client, heard):
        await start(gateway_config(tmp_path, broker))
        await heard_text(heard, SWITCH_CONFIG)
        await heard_text(heard, f"{GW}/status", "online")
        for point in ("sensor/test-gw/1_energy_lifetime", "sensor/test-gw/1_energy_total"):
            await heard_text(heard, f"homeassistant/{point}/config")
        await heard_text(heard, "homeassistant/sensor/test-gw/1_voltage/config")
        await heard_text(heard, "homeassistant/number/test-gw/1_overvoltage_threshold/config")
        await heard_text(heard, "homeassistant/binary_sensor/test-gw/1_fault_leakage/config")
        found = configs(heard)  # discovery arrives in no set order: what is asserted is awaited
        for topic, config in found.items():
            assert config["unique_id"], topic
            assert config["state_topic"].startswith(f"{GW}/1/"), topic
            assert config["device"]["identifiers"] == ["tuya_modbus_gateway_test-gw_1"]
            assert config["device"]["manufacturer"] == "Tuya"
            assert config["device"]["model"] == "AT-Q-SMR1-20"
            assert [a["topic"] for a in config["availability"]] == [
                f"{GW}/status",
                f"{GW}/1/status",
            ]
            assert config["availability_mode"] == "all"
            assert ("command_topic" in config) == (topic.split("/")[1] in ("switch", "number"))
        assert len({c["unique_id"] for c in found.values()}) == len(found)
        switch = found[SWITCH_CONFIG]
        assert switch["command_topic"] == f"{GW}/1/switch/set"
        assert (switch["payload_on"], switch["payload_off"]) == ("ON", "OFF")
        assert "entity_category" not in switch  # the breaker itself, not a setting
        voltage = found["homeassistant/sensor/test-gw/1_voltage/config"]
        assert (voltage["device_class"], voltage["state_class"]) == ("voltage", "measurement")
        assert voltage["unit_of_measurement"] == "V"
        lifetime = found["homeassistant/sensor/test-gw/1_energy_lifetime/config"]
        assert (lifetime["device_class"], lifetime["state_class"]) == ("energy", "total_increasing")
        energy = found["homeassistant/sensor/test-gw/1_energy_total/config"]
        assert energy["state_class"] == "total"  # the MCU's own counter may drop at a reset
        threshold = found["homeassistant/number/test-gw/1_overvoltage_threshold/config"]
        assert (threshold["min"], threshold["max"], threshold["step"]) == (220, 300, 1)
        fault = found["homeassistant/binary_sensor/test-gw/1_fault_leakage/config"]
        assert fault["device_class"] == "problem"
        assert "homeassistant/sensor/test-gw/1_voltage_f32/config" not in found  # a copy
        sent = len(heard.log)
        await client.publish("homeassistant/status", "online")

        async def announced_again() -> bool:
            return any(topic == SWITCH_CONFIG for topic, _, _ in heard.log[sent:])

        await eventually(announced_again, "discovery after Home Assistant came online")


async def test_values_arrive_and_match_the_twin(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    async with listening(broker.port, f"{GW}/#") as (_, heard):
        gw = await start(gateway_config(tmp_path, broker))
        await heard_text(heard, f"{GW}/1/status", "online")
        gw.twin().set_voltage(241.0)  # under the 250 V over-voltage trip

        async def voltage_is_new() -> bool:
            text = heard.text(f"{GW}/1/voltage")
            return text is not None and abs(float(text) - gw.twin().voltage_v) <= 0.15

        await eventually(voltage_is_new, "the twin's new voltage on MQTT")
        attributes = json.loads(await heard_text(heard, f"{GW}/1/voltage/attributes"))
        assert attributes["stale"] is False
        assert attributes["unit_of_measurement"] == "V"
        assert attributes["age_s"] >= 0
        assert await heard_text(heard, f"{GW}/1/switch") == "ON"
        assert gw.twin().switch_on
        energy = float(await heard_text(heard, f"{GW}/1/energy_total"))
        assert abs(energy - gw.twin().energy_kwh) < 0.02


async def test_the_discovered_switch_command_opens_the_breaker(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    async with listening(broker.port, "homeassistant/#", f"{GW}/#") as (client, heard):
        gw = await start(gateway_config(tmp_path, broker))
        assert gw.service.mqtt is not None
        audited: list[CommandOutcome] = []
        gw.service.mqtt.audit_hook = audited.append
        switch = json.loads(await heard_text(heard, SWITCH_CONFIG))
        await heard_text(heard, f"{GW}/1/status", "online")
        assert gw.twin().switch_on
        await client.publish(switch["command_topic"], switch["payload_off"], qos=1)
        await heard_text(heard, f"{GW}/1/switch/result", "ok")
        coil = await gw.client.read_coils(SWITCH_COIL, count=1, device_id=1)
        assert coil.bits[0] is False  # over Modbus: the breaker is open
        assert not gw.twin().switch_on
        await heard_text(heard, switch["state_topic"], switch["payload_off"])
        (outcome,) = audited
        assert (outcome.unit, outcome.point, outcome.old, outcome.payload, outcome.result) == (
            1,
            "switch",
            "ON",
            "OFF",
            "ok",
        )


async def test_bad_commands_are_refused_with_a_reason(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    async with listening(broker.port, f"{GW}/#") as (client, heard):
        gw = await start(gateway_config(tmp_path, broker))
        await heard_text(heard, f"{GW}/1/status", "online")
        await client.publish(f"{GW}/1/overvoltage_threshold/set", "400", qos=1)
        result = await heard_text(heard, f"{GW}/1/overvoltage_threshold/result")
        assert result == "refused: out of range or off step"
        await client.publish(f"{GW}/1/switch/set", "maybe", qos=1)
        assert "expected ON or OFF" in await heard_text(heard, f"{GW}/1/switch/result")
        gw.twin().faults.silent = True
        await heard_text(heard, f"{GW}/1/status", "offline")
        await client.publish(f"{GW}/1/switch/set", "OFF", qos=1)
        await heard_text(heard, f"{GW}/1/switch/result", "refused: link down")
        gw.twin().faults.silent = False
        await heard_text(heard, f"{GW}/1/status", "online")
        assert gw.twin().switch_on  # refused, not kept for later
        assert not [dp for _, dp in gw.twin().dp_commands if dp.dpid == 16]


async def test_a_retained_command_is_never_executed_live_or_after_a_restart(
    tmp_path: Path, broker: Broker, start: Start
) -> None:
    cfg = gateway_config(tmp_path, broker)
    async with listening(broker.port, f"{GW}/#") as (client, heard):
        first = await start(cfg)
        await heard_text(heard, f"{GW}/1/status", "online")
        # published live, a retained command reaches the gateway with its retain flag
        # (retain-as-published) and is refused: the broker would replay it later
        await client.publish(f"{GW}/1/switch/set", "OFF", qos=1, retain=True)
        result = await heard_text(heard, f"{GW}/1/switch/result")
        assert result == "refused: retained commands are never executed"
        assert first.twin().switch_on
        await first.stop()
        await heard_text(heard, f"{GW}/status", "offline")
        heard.latest.pop(f"{GW}/1/switch/result")
        # the broker's replay of it to the restarted gateway never runs either
        second = await start(cfg)
        result = await heard_text(heard, f"{GW}/1/switch/result")
        assert result == "refused: retained commands are never executed"
        await heard_text(heard, f"{GW}/1/status", "online")
        assert second.twin().switch_on
        assert not [dp for _, dp in second.twin().dp_commands if dp.dpid == 16]
        heard.latest.pop(f"{GW}/1/switch/result")
        await client.publish(f"{GW}/1/switch/set", "OFF", qos=1)  # not retained: executed
        await heard_text(heard, f"{GW}/1/switch/result", "ok")
        assert not second.twin().switch_on


async def test_a_broker_restart_is_survived(tmp_path: Path, broker: Broker, start: Start) -> None:
    gw = await start(gateway_config(tmp_path, broker))
    async with listening(broker.port, f"{GW}/#") as (_, heard):
        await heard_text(heard, f"{GW}/1/status", "online")
    await broker.restart()  # without persistence: every retained message is gone
    async with listening(broker.port, "homeassistant/#", f"{GW}/#") as (client, heard):
        await heard_text(heard, f"{GW}/status", "online")
        await heard_text(heard, f"{GW}/1/status", "online")
        await heard_text(heard, SWITCH_CONFIG)
        await heard_text(heard, f"{GW}/1/voltage")
        await client.publish(f"{GW}/1/switch/set", "OFF", qos=1)
        await heard_text(heard, f"{GW}/1/switch/result", "ok")
        assert not gw.twin().switch_on
    assert gw.service.mqtt is not None
    assert gw.service.mqtt.stats.sessions >= 2


async def test_without_a_broker_modbus_serves_and_the_queue_stays_bounded(
    tmp_path: Path, start: Start
) -> None:
    cfg = gateway_config(tmp_path, Broker(tmp_path), units=(1, 2, 3))  # never started
    assert cfg.mqtt is not None
    cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, queue_size=16))
    gw = await start(cfg)
    bridge = gw.service.mqtt
    assert bridge is not None

    async def served() -> bool:
        reply = await gw.client.read_input_registers(0, count=1, device_id=3)
        return not reply.isError()

    await eventually(served, "Modbus reads with no broker anywhere")

    async def dropped() -> bool:
        return bridge.outbox.dropped > 0

    await eventually(dropped, "the oldest messages dropped and counted")
    assert len(bridge.outbox) <= 16
    assert bridge.stats.sessions == 0


async def test_the_readme_acl_keeps_each_gateway_to_its_topics(
    tmp_path: Path, start: Start
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    acl = readme.split("# gateways: user name = gateway id\n", 1)[1].split("```", 1)[0]
    broker = Broker(tmp_path, acl=acl)
    await broker.start()
    try:
        gw = await start(gateway_config(tmp_path, broker, username="test-gw"))
        async with (
            listening(broker.port, "homeassistant/#", f"{GW}/#", username="homeassistant") as (
                home_assistant,
                heard,
            ),
            listening(broker.port, username="other-gw") as (other, _),
        ):
            await heard_text(heard, SWITCH_CONFIG)  # the gateway may announce itself
            await heard_text(heard, f"{GW}/1/status", "online")
            await other.publish(f"{GW}/1/switch/set", "OFF", qos=1)  # dropped by the broker
            await other.publish(f"{GW}/status", "offline", qos=1, retain=True)
            await home_assistant.publish(f"{GW}/1/prepayment/set", "ON", qos=1)
            await heard_text(heard, f"{GW}/1/prepayment/result", "ok")
            assert heard.text(f"{GW}/1/switch/result") is None
            assert heard.text(f"{GW}/status") == "online"
            assert gw.twin().switch_on
    finally:
        await broker.stop()
