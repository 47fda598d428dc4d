"""The WiFi module's answers to the MCU SDK's requests (issue 12, item 6).

The scripted MCU over a real pty and a real TCP socket; the twin over ``sim://``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import READY_S, MakeLink, PeerEnd, fast_config, ready_link
from waiting import eventually

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.regmap.load import load_map
from gateway.service import link_config
from gateway.tuya.answers import UNANSWERED, RequestContext, answer_mcu_request
from gateway.tuya.payloads import decode_gmt_time, decode_module_mac, derived_mac, parse_mac
from gateway.tuya.protocol import Command, Frame
from gateway.twin import running_twin

DEFAULT_MAP = str(Path(__file__).resolve().parents[1] / "register_map.yaml")
# What an MCU built on Tuya's MCU SDK v2.5.6 may send the module unasked (its command list,
# less the module's own commands and the MCU's replies to them).
SDK_REQUESTS = (
    0x04, 0x05, 0x0C, 0x0E, 0x1C, 0x20, 0x22, 0x24, 0x25, 0x28, 0x2B, 0x2C, 0x2D, 0x2E,
    0x2F, 0x30, 0x34, 0x35, 0x37, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65,
)  # fmt: skip


def test_gmt_time_answer_matches_the_sdk_layout() -> None:
    now = datetime(2024, 11, 20, 9, 13, 20, tzinfo=UTC)
    outcome = answer_mcu_request(Frame(Command.GMT_TIME), RequestContext(4, -55, now))
    assert outcome is not None
    assert [f.encode().hex().upper() for f in outcome.replies] == ["55AA000C000701180B14090D1474"]


async def test_gmt_time_is_answered_in_utc(make_link: MakeLink, peer_end: PeerEnd) -> None:
    await ready_link(make_link, peer_end)
    answer = await peer_end.peer.ask(Command.GMT_TIME)
    assert answer.version == 0x00
    assert len(answer.data) == 7
    stamp = decode_gmt_time(answer.data)
    assert stamp is not None
    assert abs((stamp - datetime.now(UTC)).total_seconds()) < 300


async def test_configured_mac_is_answered(make_link: MakeLink, peer_end: PeerEnd) -> None:
    mac = parse_mac("02:11:22:33:44:55")
    await ready_link(make_link, peer_end, module_mac=mac)
    answer = await peer_end.peer.ask(Command.MODULE_MAC)
    assert answer.data == b"\x00" + mac


async def test_default_mac_is_stable_and_locally_administered(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    await ready_link(make_link, peer_end)
    mac = decode_module_mac((await peer_end.peer.ask(Command.MODULE_MAC)).data)
    assert mac == derived_mac(peer_end.url)
    assert mac[0] & 0x03 == 0x02  # locally administered, unicast
    assert derived_mac(peer_end.url) != derived_mac(peer_end.url + "x")


async def test_unanswered_requests_are_logged_once_each(
    make_link: MakeLink, peer_end: PeerEnd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.tuya.answers")
    await ready_link(make_link, peer_end)
    peer = peer_end.peer
    for command in (0x25, 0x60, 0x25, 0x60, 0x25):
        peer.request(command)
    await peer.ask(Command.NETWORK_STATUS)  # answered in order: the others were handled first
    unanswered = [r.getMessage() for r in caplog.records if "left unanswered" in r.getMessage()]
    assert len(unanswered) == 2
    assert "0x25" in unanswered[0]
    assert "heartbeats never stop" in unanswered[0]
    assert "0x60" in unanswered[1]
    assert "voice" in unanswered[1]
    assert not [f for f in peer.frames() if f.command in (0x25, 0x60)]


def test_every_sdk_request_is_answered_or_has_a_reason() -> None:
    ctx = RequestContext(4, -55, datetime.now(UTC), bytes(6))
    for command in SDK_REQUESTS:
        answered = answer_mcu_request(Frame(command, b"\x04"), ctx) is not None
        assert answered != (command in UNANSWERED), f"0x{command:02X}"


async def test_the_twin_hears_the_time_and_the_mac(make_link: MakeLink) -> None:
    link = make_link(fast_config("sim://family_a?report_interval=0"))
    await link.start()
    await link.wait_ready(READY_S)
    twin = running_twin(link.config.url)
    assert twin is not None
    twin.request(Command.GMT_TIME)
    twin.request(Command.MODULE_MAC)
    await eventually(lambda: twin.heard.module_mac is not None, "the twin's MAC answer")
    assert twin.heard.gmt_time is not None
    assert twin.heard.module_mac == link.config.mac


def test_gateway_yaml_sets_the_mac_per_device(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    devices = [
        f"  - {{unit: 1, link: 'sim://', map: {DEFAULT_MAP}, module_mac: '02:aa:bb:cc:dd:ee'}}",
        f"  - {{unit: 2, link: 'sim://family_b', map: {DEFAULT_MAP}}}",
    ]
    path.write_text("modbus: {tcp: {port: 0}}\ndevices:\n" + "\n".join(devices) + "\n")
    config = load_config(str(path))
    regmap = load_map(DEFAULT_MAP)
    first, second = (link_config(device, regmap) for device in config.devices)
    assert first.mac == bytes.fromhex("02aabbccddee")
    assert second.mac == derived_mac("sim://family_b")
    path.write_text(path.read_text().replace("02:aa:bb:cc:dd:ee", "02:aa:bb"))
    with pytest.raises(ConfigError, match="module_mac"):
        load_config(str(path))
