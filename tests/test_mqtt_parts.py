"""The MQTT northbound's pure parts: settings, topics, payloads, discovery, outbox, refusals."""

from __future__ import annotations

import argparse
import asyncio
from fractions import Fraction
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.mqtt import MqttSettings, add_cli_options, settings_from_args
from gateway.mqtt.commands import Command, refusal
from gateway.mqtt.connection import raise_if_cancelled
from gateway.mqtt.discovery import entities, published_points
from gateway.mqtt.outbox import Outbox, Outgoing
from gateway.mqtt.payloads import CommandPayloadError, command_words, format_value
from gateway.mqtt.settings import default_gateway_id
from gateway.mqtt.state import UnitState
from gateway.mqtt.topics import Topics
from gateway.regmap.load import load_map, parse_map
from gateway.regmap.specs import DpSource, StatusSource
from gateway.tuya.dp import DpType, DpValue
from gateway.tuya.link import LinkState
from gateway.unit.cache import DatapointCache

ROOT = Path(__file__).resolve().parents[1]
MAP = load_map(ROOT / "register_map.yaml")
TOPICS = Topics("tuya-modbus-gateway", "gw1")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli_options(parser)
    return parser.parse_args(argv)


def test_broker_urls_give_host_port_tls_and_login() -> None:
    plain = settings_from_args(_args("--mqtt", "mqtt://broker.lan"), None)
    assert plain is not None
    assert (plain.host, plain.port, plain.tls) == ("broker.lan", 1883, False)
    assert plain.gateway_id == default_gateway_id()
    tls = settings_from_args(_args("--mqtt", "mqtts://u%40x:p@10.0.0.5:9883"), None)
    assert tls is not None
    assert (tls.host, tls.port, tls.tls, tls.username, tls.password) == (
        "10.0.0.5",
        9883,
        True,
        "u@x",
        "p",
    )
    assert settings_from_args(_args(), None) is None
    with pytest.raises(ConfigError, match="--mqtt"):
        settings_from_args(_args("--mqtt", "http://broker"), None)


def test_the_default_gateway_id_is_stable_and_topic_safe() -> None:
    assert default_gateway_id("Pi-4.Home.Lan") == "gw-pi-4"
    assert default_gateway_id("a b/c+#") == "gw-a-b-c"
    assert default_gateway_id("...") == "gw-host"


def test_the_mqtt_section_of_gateway_yaml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    (tmp_path / "ca.pem").write_text("")
    path.write_text(
        "modbus: {tcp: {port: 0}}\n"
        "mqtt:\n  url: mqtts://broker:8884\n  username: gw\n  password: secret\n"
        "  ca: ca.pem\n  base: plant/breakers\n  gateway_id: hall-2\n  min_interval_s: 5\n"
        f"devices:\n  - {{unit: 1, link: 'sim://', map: {ROOT / 'register_map.yaml'}}}\n"
    )
    settings = load_config(str(path)).mqtt
    assert settings == MqttSettings(
        "broker",
        8884,
        tls=True,
        username="gw",
        password="secret",
        ca=str(tmp_path / "ca.pem"),
        base="plant/breakers",
        gateway_id="hall-2",
        min_interval_s=5,
    )
    moved = settings_from_args(_args("--mqtt", "mqtt://other:1999"), settings)
    assert moved is not None
    assert (moved.host, moved.port, moved.tls, moved.username) == ("other", 1999, False, "gw")
    assert moved.gateway_id == "hall-2"
    path.write_text(path.read_text().replace("gateway_id: hall-2", "gateway_id: 'a/b'"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert any("mqtt.gateway_id" in line and ":8:" in line for line in caught.value.errors)


def test_tls_files_are_found_beside_the_gateway_file_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pki").mkdir()
    for name in ("ca.pem", "gw.pem", "gw.key"):
        (tmp_path / "pki" / name).write_text("")
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "modbus: {tcp: {port: 0}}\n"
        "mqtt:\n  url: mqtts://broker\n  ca: pki/ca.pem\n"
        "  client_cert: pki/gw.pem\n  client_key: pki/gw.key\n"
        f"devices:\n  - {{unit: 1, link: 'sim://', map: {ROOT / 'register_map.yaml'}}}\n"
    )
    monkeypatch.chdir(ROOT)  # not the file's folder
    settings = load_config(str(path)).mqtt
    assert settings is not None
    assert (settings.ca, settings.client_cert, settings.client_key) == tuple(
        str(tmp_path / "pki" / name) for name in ("ca.pem", "gw.pem", "gw.key")
    )
    path.write_text(path.read_text().replace("pki/ca.pem", "pki/nowhere.pem"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    (problem,) = caught.value.errors
    assert f"{path}:4: mqtt.ca: no such file:" in problem
    assert problem.endswith("nowhere.pem")
    from gateway.cli import main

    assert main(["run", "--config", str(path)]) == 2  # a configuration error, before anything


def test_command_topics_parse_back_and_nothing_else_does() -> None:
    assert TOPICS.parse_command("tuya-modbus-gateway/gw1/3/switch/set") == (3, "switch")
    assert TOPICS.parse_command("tuya-modbus-gateway/gw2/3/switch/set") is None
    assert TOPICS.parse_command("tuya-modbus-gateway/gw1/x/switch/set") is None
    assert TOPICS.parse_command("tuya-modbus-gateway/gw1/3/switch/result") is None


def test_payloads_show_values_and_commands_become_words() -> None:
    voltage, switch = MAP.point("voltage"), MAP.point("switch")
    assert format_value(voltage, Fraction(2326, 10)) == "232.6"
    assert format_value(MAP.point("power_factor_f32"), Fraction(2, 3)) == "0.666667"
    assert format_value(switch, Fraction(0)) == "OFF"
    assert format_value(MAP.point("breaker_id"), "B-17") == "B-17"
    assert command_words(switch, b"ON") == [1]
    assert command_words(MAP.point("overvoltage_threshold"), b"250") == [250]
    assert command_words(MAP.point("overcurrent_enabled"), b"OFF") == [0]


@pytest.mark.parametrize(
    ("point", "payload", "reason"),
    [
        ("switch", b"on", "expected ON or OFF"),
        ("switch", b"\xff", "UTF-8"),
        ("overvoltage_threshold", b"250.5", "finer than"),
        ("overvoltage_threshold", b"70000", "does not fit"),
        ("overvoltage_threshold", b"nan", "expected a number"),
        ("overvoltage_threshold", b"1e999999999", "expected a number"),
    ],
)
def test_bad_command_payloads_are_refused(point: str, payload: bytes, reason: str) -> None:
    with pytest.raises(CommandPayloadError, match=reason):
        command_words(MAP.point(point), payload)


def test_refusals_before_the_write_path() -> None:
    cache = DatapointCache()
    cache.set_link_state(LinkState.READY)
    fine = Command(1, "switch", b"OFF", expiry_s=10, waited_s=0.01)
    assert refusal(fine, MAP, cache) is None
    cases = {
        Command(
            1, "switch", b"OFF", retained=True
        ): "refused: retained commands are never executed",
        Command(1, "switch", b"OFF", expiry_s=1, waited_s=1.5): "refused: expired",
        Command(1, "voltage", b"230"): "refused: no writable point 'voltage'",
        Command(1, "nothing", b"1"): "refused: no writable point 'nothing'",
    }
    for command, expected in cases.items():
        assert refusal(command, MAP, cache) == expected
    cache.set_link_state(LinkState.DOWN)
    assert refusal(fine, MAP, cache) == "refused: link down"


async def test_the_outbox_keeps_the_newest_value_per_topic_and_refuses_when_full() -> None:
    outbox = Outbox(limit=2)
    assert outbox.put(Outgoing("a", "1"))
    assert outbox.put(Outgoing("b", "1"))
    assert outbox.put(Outgoing("a", "2"))  # replaces in place, even when full
    assert (len(outbox), outbox.replaced, outbox.dropped) == (2, 1, 0)
    assert not outbox.put(Outgoing("c", "1"))  # full: refused and counted, nothing evicted
    assert outbox.dropped == 1
    assert [(m.topic, m.payload) for m in (await outbox.get(), await outbox.get())] == [
        ("a", "2"),
        ("b", "1"),
    ]
    await outbox.room()  # empty: room at once


def test_a_value_the_full_outbox_refused_is_offered_again() -> None:
    regmap = parse_map(
        "device: {name: x}\n"
        "datapoints: {total_energy: {id: 1, type: value, scale: -2, unit: kWh}}\n"
        "input_registers:\n"
        "  - {name: energy_total, address: 0, source: total_energy, format: uint32,"
        " scale: 100, unit: kWh}\n"
    )
    cache = DatapointCache(types={1: DpType.VALUE})
    cache.set_link_state(LinkState.READY)
    state = UnitState(regmap, TOPICS, 1, min_interval_s=0.0)
    sent: list[Outgoing] = []

    def accept(message: Outgoing) -> bool:
        sent.append(message)
        return True

    def refuse(message: Outgoing) -> bool:
        return False

    def values_only(message: Outgoing) -> bool:
        return not message.topic.endswith("/attributes") and accept(message)

    value, attributes = TOPICS.state(1, "energy_total"), TOPICS.attributes(1, "energy_total")
    for step, (offer, expected) in enumerate(
        [
            (refuse, []),
            (accept, [value, attributes]),
            (values_only, [value]),
            (accept, [attributes]),
        ]
    ):
        cache.update(DpValue.of_value(1, 100 + step // 2))  # a new value on the third offer
        sent.clear()
        state.due(cache.snapshot(), float(step), offer, reported=[1])
        assert [m.topic for m in sent] == expected, step
        assert state.blocked == (offer is not accept), step


def test_a_lifetime_energy_point_is_the_total_increasing_one() -> None:
    found = {e.point.name: e.config for e in entities(MAP, TOPICS, 1)}
    assert found["energy_lifetime"]["state_class"] == "total_increasing"
    assert found["energy_total"]["state_class"] == "total"  # the MCU's own counter can drop
    plain = parse_map(
        "device: {name: x}\n"
        "datapoints: {total_energy: {id: 1, type: value, scale: -2, unit: kWh}}\n"
        "input_registers:\n"
        "  - {name: energy_total, address: 0, source: total_energy, format: uint32,"
        " scale: 100, unit: kWh}\n"
    )
    alone = {e.point.name: e.config for e in entities(plain, TOPICS, 1)}
    assert alone["energy_total"]["state_class"] == "total_increasing"


def test_sdm_maps_announce_their_lifetime_energy_by_its_source() -> None:
    for name in ("sdm120.yaml", "sdm630.yaml"):
        sdm = load_map(ROOT / "gateway" / "maps" / name)
        found = {e.point.name: e for e in entities(sdm, TOPICS, 1)}
        lifetime = [e for e in found.values() if e.point.source == StatusSource("lifetime_energy")]
        assert [e.point.name for e in lifetime] == ["import_energy"], name  # one, not copies
        assert lifetime[0].config["state_class"] == "total_increasing"
        counters = [
            e
            for e in found.values()
            if isinstance(e.point.source, DpSource) and e.config.get("device_class") == "energy"
        ]
        assert counters, name  # the MCU's own counter, which can drop
        assert all(e.config["state_class"] == "total" for e in counters), name
        published = {p.name for p in published_points(sdm)}
        assert {"import_energy", "total_energy"} <= published
        fill = [p.name for points in sdm.tables.values() for p in points if "fill_0x" in p.name]
        assert fill, name
        assert not published & set(fill)


def test_enum_settings_are_numbers_over_their_labels() -> None:
    qcb2 = load_map(ROOT / "gateway" / "maps" / "tongou_qcb2.yaml")
    found = {e.point.name: e for e in entities(qcb2, TOPICS, 1)}
    action = found["overcurrent_action"]
    assert action.component == "number"
    assert (action.config["min"], action.config["max"], action.config["step"]) == (0, 2, 1)
    enums = [
        e
        for e in found.values()
        if isinstance(e.point.source, DpSource)
        and qcb2.datapoints[e.point.source.datapoint].labels
        and e.point.writable
    ]
    assert len(enums) >= 6
    for entity in enums:
        labels = qcb2.datapoints[entity.point.source.datapoint].labels
        assert (entity.config["min"], entity.config["max"]) == (0, len(labels) - 1)


async def test_a_cancellation_wait_for_swallowed_is_raised_again() -> None:
    # aiomqtt waits with asyncio.wait_for: on 3.11 a cancel that meets the completing future is
    # dropped and the task carries on (the bridge's sender then hung stop() for good).
    async def worker(future: asyncio.Future[int], check: bool) -> str:
        await asyncio.wait_for(future, 5)
        if check:
            raise_if_cancelled()
        return "carried on"

    for check, expected in ((False, "carried on"), (True, "cancelled")):
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(worker(future, check))
        await asyncio.sleep(0)
        future.set_result(1)
        await asyncio.sleep(0)
        task.cancel()
        try:
            outcome = await task
        except asyncio.CancelledError:
            outcome = "cancelled"
        assert outcome == expected


def test_run_refuses_a_bad_broker_url_as_invalid_input(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["run", "--link", "sim://", "--tcp", "127.0.0.1:0", "--mqtt", "http://x"]) == 2
    assert "--mqtt: expected mqtt://HOST:PORT" in capsys.readouterr().err
