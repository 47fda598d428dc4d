"""McuLink against a scripted MCU over a real pty pair and a real TCP socket (and the twin)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest
from conftest import PEER_DPS, READY_S, MakeLink, PeerEnd, fast_config, ready_link, reports_of
from mcu_peer import ScriptedMcu, TcpPeer, eventually

from gateway.errors import (
    ConfigError,
    LinkClosedError,
    LinkNotReadyError,
    LowPowerProtocolError,
    McuTimeoutError,
    WriteMismatchError,
)
from gateway.tuya.capture import read_capture
from gateway.tuya.link import LinkState, McuLink
from gateway.tuya.protocol import Command, DpValue, Frame, decode_local_time, encode_dps
from gateway.twin import running_twin

HANDSHAKE = [
    Command.HEARTBEAT,
    Command.PRODUCT_INFO,
    Command.WORKING_MODE,
    Command.WIFI_STATE,
    Command.DP_QUERY,
]


# -- handshake ---------------------------------------------------------------------------------
async def test_handshake_runs_the_steps_in_order(make_link: MakeLink, peer_end: PeerEnd) -> None:
    peer = peer_end.peer
    peer.heartbeats_ignored = 2  # the link must keep heartbeating until the MCU answers
    peer.notice = b"\x00"
    link = make_link(fast_config(peer_end.url))
    seen = reports_of(link)
    states: list[LinkState] = []
    link.add_state_listener(states.append)
    await link.start()
    await link.wait_ready(READY_S)

    commands = [c for c in peer.commands() if c != Command.MODULE_NOTICE]
    assert commands[:3] == [Command.HEARTBEAT] * 3
    assert commands[2:7] == HANDSHAKE
    assert peer.frames(Command.WIFI_STATE)[0].data == b"\x04"
    assert peer.frames(Command.MODULE_NOTICE)[0].data == b"\x00\x00"
    assert all(frame.version == 0 for frame in peer.frames())
    assert link.product_info is not None
    assert (link.product_info.product_key, link.product_info.version) == (
        "peer4testkey0001",
        "1.2.3",
    )
    assert sorted(seen, key=lambda dp: dp.dpid) == sorted(PEER_DPS, key=lambda dp: dp.dpid)
    assert states == [LinkState.CONNECTING, LinkState.HANDSHAKE, LinkState.READY]
    assert link.stats.handshakes == 1


async def test_mcu_with_own_network_led_gets_no_wifi_state(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer_end.peer.working_mode = b"\x0c\x0d"  # LED and reset pins: the MCU handles the network
    await ready_link(make_link, peer_end)
    assert Command.WIFI_STATE not in peer_end.peer.commands()
    assert peer_end.peer.commands()[-1] == Command.DP_QUERY


async def test_low_power_version_stops_with_a_clear_error(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer_end.peer.version = 0x00
    link = make_link(fast_config(peer_end.url))
    await link.start()
    with pytest.raises(LowPowerProtocolError, match="low-power"):
        await link.wait_ready(READY_S)
    assert link.state is LinkState.STOPPED
    assert isinstance(link.fatal_error, LowPowerProtocolError)
    assert Command.PRODUCT_INFO not in peer_end.peer.commands()


# -- running -----------------------------------------------------------------------------------
async def test_mcu_reboot_redoes_the_handshake(make_link: MakeLink, peer_end: PeerEnd) -> None:
    link = await ready_link(make_link, peer_end)
    peer_end.peer.reboot()
    await eventually(lambda: link.stats.handshakes == 2 and link.state is LinkState.READY)
    assert link.stats.mcu_reboots == 1
    assert len(peer_end.peer.frames(Command.PRODUCT_INFO)) == 2
    assert link.stats.heartbeat_rtt_ms is not None


async def test_silence_goes_down_then_recovers(make_link: MakeLink, peer_end: PeerEnd) -> None:
    link = await ready_link(make_link, peer_end)
    states: list[LinkState] = []
    link.add_state_listener(states.append)
    peer_end.peer.silent = True
    await eventually(lambda: link.state is LinkState.DOWN)
    with pytest.raises(LinkNotReadyError):
        await link.write_dp(DpValue.of_bool(16, True))
    peer_end.peer.silent = False
    await link.wait_ready(READY_S)
    assert states == [LinkState.DOWN, LinkState.HANDSHAKE, LinkState.READY]
    assert link.stats.handshakes == 2


async def test_periodic_query_all(make_link: MakeLink, peer_end: PeerEnd) -> None:
    await ready_link(make_link, peer_end, query_interval_s=0.05)
    await eventually(lambda: len(peer_end.peer.frames(Command.DP_QUERY)) >= 3)


async def test_reconnects_after_the_tcp_bridge_drops(make_link: MakeLink) -> None:
    tcp = await TcpPeer(ScriptedMcu(list(PEER_DPS))).open()
    try:
        link = await ready_link(make_link, PeerEnd(tcp.peer, tcp.url, tcp))
        tcp.drop()
        await eventually(lambda: link.stats.handshakes == 2 and link.state is LinkState.READY)
        assert tcp.connections == 2
    finally:
        await tcp.close()


# -- the MCU's own requests --------------------------------------------------------------------
async def answer(
    peer: ScriptedMcu, command: int, data: bytes = b"", reply: int | None = None
) -> Frame:
    """Send an MCU request and return the gateway's answer (``reply`` command, default the same)."""
    return await peer.ask(command, data, reply)


async def test_answers_time_rssi_and_network_status(make_link: MakeLink, peer_end: PeerEnd) -> None:
    peer = peer_end.peer
    await ready_link(make_link, peer_end, rssi_dbm=-61)
    time_answer = await answer(peer, Command.LOCAL_TIME)
    stamp = decode_local_time(time_answer.data)
    assert stamp is not None
    assert abs((stamp - datetime.now()).total_seconds()) < 300
    assert time_answer.data[7] == stamp.isoweekday()
    assert (await answer(peer, Command.RSSI)).data == (-61).to_bytes(1, "big", signed=True)
    assert (await answer(peer, Command.NETWORK_STATUS)).data == b"\x04"
    assert (await answer(peer, Command.WIFI_TEST)).data == bytes((1, 78))


async def test_sync_and_record_reports_reach_the_listeners(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer = peer_end.peer
    link = await ready_link(make_link, peer_end)
    seen = reports_of(link)
    synced = [DpValue.of_value(2, 90), DpValue.of_bool(16, True)]
    ack = await answer(peer, Command.DP_SYNC_REPORT, encode_dps(synced), Command.DP_SYNC_ACK)
    assert ack.data == b"\x01"
    stamp = bytes((1, 24, 11, 20, 9, 13, 20, 3))
    recorded = [DpValue.of_value(104, 1)]
    data = b"\x0b" + stamp + encode_dps(recorded)
    assert (await answer(peer, Command.EXTENDED_SERVICE, data)).data == b"\x0b\x00"
    assert (await answer(peer, Command.EXTENDED_SERVICE, b"\x04")).data == b"\x04\x00"
    assert seen == synced + recorded


async def test_sync_report_ack_is_0x23(make_link: MakeLink, peer_end: PeerEnd) -> None:
    peer = peer_end.peer
    await ready_link(make_link, peer_end)
    peer.request(Command.DP_SYNC_REPORT, DpValue.of_value(2, 90).encode())
    await eventually(lambda: bool(peer.frames(Command.DP_SYNC_ACK)))
    assert peer.frames(Command.DP_SYNC_ACK)[0].encode() == bytes.fromhex("55AA002300010124")


async def test_wifi_reset_is_acked_then_states_walk_back(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer = peer_end.peer
    await ready_link(make_link, peer_end)
    before = len(peer.frames(Command.WIFI_STATE))
    assert (await answer(peer, Command.WIFI_RESET)).data == b""
    await eventually(lambda: len(peer.frames(Command.WIFI_STATE)) >= before + 3)
    states = [f.data for f in peer.frames(Command.WIFI_STATE)[before:]]
    assert states == [b"\x02", b"\x03", b"\x04"]
    assert (await answer(peer, Command.NETWORK_STATUS)).data == b"\x04"


async def test_bad_records_are_counted_and_the_link_keeps_running(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    link = await ready_link(make_link, peer_end)
    seen = reports_of(link)
    peer_end.peer.send_bytes(bytes.fromhex("55AA030700060102000400172D"))  # truncated record
    # a phantom header with a plausible length hides the next frame until that one is whole
    peer_end.peer.send_bytes(
        bytes.fromhex("55AA03070100") + bytes.fromhex("55AA03070008680200040000000180")
    )
    await eventually(lambda: DpValue.of_value(104, 1) in seen)
    assert link.stats.dp_errors == 1
    assert link.stats.bytes_skipped >= 6
    assert link.state is LinkState.READY


# -- writes ------------------------------------------------------------------------------------
async def test_write_is_confirmed_by_the_report(make_link: MakeLink, peer_end: PeerEnd) -> None:
    link = await ready_link(make_link, peer_end)
    dp = DpValue.of_bool(16, True)
    assert await link.write_dp(dp) == dp
    commands = peer_end.peer.frames(Command.DP_COMMAND)
    assert [f.encode() for f in commands] == [bytes.fromhex("55AA0006000510010001011D")]


async def test_write_is_resent_once_inside_the_window(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer_end.peer.ignore_writes = 1
    link = await ready_link(make_link, peer_end)
    dp = DpValue.of_enum(109, 16)
    assert await link.write_dp(dp, timeout=1.0) == dp
    assert [f.data for f in peer_end.peer.frames(Command.DP_COMMAND)] == [dp.encode()] * 2


async def test_write_timeout_is_never_resent(make_link: MakeLink, peer_end: PeerEnd) -> None:
    peer = peer_end.peer
    peer.confirm_writes = False
    link = await ready_link(make_link, peer_end)
    loop = asyncio.get_running_loop()
    with pytest.raises(McuTimeoutError, match="will not be sent again"):
        await link.write_dp(DpValue.of_bool(16, True), timeout=0.4)
    failed_at = loop.time()
    heartbeats = len(peer.frames(Command.HEARTBEAT))
    await eventually(lambda: len(peer.frames(Command.HEARTBEAT)) >= heartbeats + 4)
    writes = [(t, f) for t, f in peer.received if f.command == Command.DP_COMMAND]
    assert len(writes) == 2  # the first send and one retry inside the window
    assert all(t <= failed_at for t, _ in writes)


async def test_write_with_another_value_reported_is_a_mismatch(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer_end.peer.report_override = DpValue.of_bool(16, False)
    link = await ready_link(make_link, peer_end)
    with pytest.raises(WriteMismatchError, match="reported dp16 bool=False") as caught:
        await link.write_dp(DpValue.of_bool(16, True), timeout=0.4)
    assert caught.value.reported == DpValue.of_bool(16, False)


async def test_write_refused_when_not_ready(make_link: MakeLink, peer_end: PeerEnd) -> None:
    peer_end.peer.silent = True
    link = make_link(fast_config(peer_end.url))
    with pytest.raises(LinkNotReadyError):
        await link.write_dp(DpValue.of_bool(16, True))
    await link.start()
    await eventually(lambda: len(peer_end.peer.frames(Command.HEARTBEAT)) >= 2)
    with pytest.raises(LinkNotReadyError, match="CONNECTING"):
        await link.write_dp(DpValue.of_bool(16, True))
    with pytest.raises(LinkNotReadyError):
        await link.query_all()
    assert Command.DP_COMMAND not in peer_end.peer.commands()


@pytest.mark.parametrize("event", ["reboot", "stop"])
async def test_waiting_write_fails_at_once_when_the_link_leaves_ready(
    make_link: MakeLink, peer_end: PeerEnd, event: str
) -> None:
    peer_end.peer.confirm_writes = False
    link = await ready_link(make_link, peer_end)
    write = asyncio.ensure_future(link.write_dp(DpValue.of_bool(16, True), timeout=20.0))
    await eventually(lambda: bool(peer_end.peer.frames(Command.DP_COMMAND)))
    if event == "reboot":
        peer_end.peer.reboot()
    else:
        await link.stop()
    with pytest.raises(LinkClosedError, match="will not be sent again"):
        await write  # a 20 s window: only the link leaving READY can end it this soon
    assert len(peer_end.peer.frames(Command.DP_COMMAND)) == 1


async def test_keepalive_writes_while_ready(make_link: MakeLink, peer_end: PeerEnd) -> None:
    link = await ready_link(make_link, peer_end)
    link.add_keepalive(DpValue.of_enum(105, 1), 0.05)
    await eventually(lambda: len(peer_end.peer.frames(Command.DP_COMMAND)) >= 3)
    assert {f.data for f in peer_end.peer.frames(Command.DP_COMMAND)} == {
        DpValue.of_enum(105, 1).encode()
    }


async def test_keepalive_is_sent_once_right_after_ready(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    link = await ready_link(make_link, peer_end)
    link.add_keepalive(DpValue.of_enum(109, 1), 3600.0)
    await eventually(lambda: len(peer_end.peer.frames(Command.DP_COMMAND)) == 1)
    assert peer_end.peer.frames(Command.DP_COMMAND)[0].data == DpValue.of_enum(109, 1).encode()


# -- opening -----------------------------------------------------------------------------------
async def test_missing_port_keeps_retrying_until_stopped(
    make_link: MakeLink, tmp_path: Path
) -> None:
    link = make_link(fast_config(str(tmp_path / "no-such-tty")))
    await link.start()
    with pytest.raises(McuTimeoutError, match="CONNECTING"):
        await link.wait_ready(0.3)
    await link.stop()
    assert link.state is LinkState.STOPPED
    with pytest.raises(LinkClosedError):
        await link.wait_ready(0.1)


async def test_unknown_url_scheme_is_a_config_error(make_link: MakeLink) -> None:
    link = make_link(fast_config("nosuch://x"))
    await link.start()
    with pytest.raises(ConfigError):
        await link.wait_ready(READY_S)


# -- capture -----------------------------------------------------------------------------------
async def test_capture_records_both_directions(
    make_link: MakeLink, peer_end: PeerEnd, tmp_path: Path
) -> None:
    path = tmp_path / "capture.jsonl"
    link = await ready_link(make_link, peer_end, capture_path=str(path))
    await link.stop()
    records = list(read_capture(str(path)))
    assert records[0].direction == "tx"
    assert records[0].frame == Frame(Command.HEARTBEAT)
    rx = [r for r in records if r.direction == "rx"]
    assert rx[0].frame.command == Command.HEARTBEAT
    assert rx[0].frame.version == 3
    sent = [r.frame.command for r in records if r.direction == "tx"]
    start = sent.index(Command.PRODUCT_INFO) - 1
    assert sent[start : start + 5] == HANDSHAKE
    assert all(r.summary == r.frame.describe() for r in records)
    assert [r.mono for r in records] == sorted(r.mono for r in records)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"mono", "wall", "dir", "hex", "summary"}
    assert first["hex"] == "55aa00000000ff"
    assert datetime.fromisoformat(first["wall"]).tzinfo is not None


async def test_traffic_listener_sees_what_the_capture_records(
    make_link: MakeLink, peer_end: PeerEnd, tmp_path: Path
) -> None:
    path = tmp_path / "capture.jsonl"
    link = make_link(fast_config(peer_end.url, capture_path=str(path)))
    seen: list[tuple[str, Frame]] = []
    link.add_traffic_listener(lambda direction, frame: seen.append((direction, frame)))
    await link.start()
    await link.wait_ready(READY_S)
    await link.stop()
    assert seen == [(r.direction, r.frame) for r in read_capture(str(path))]
    assert {direction for direction, _ in seen} == {"rx", "tx"}


def test_capture_reader_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"mono": 1.0, "wall": "", "dir": "rx", "hex": "55aa030000010104", "summary": ""}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "hex": "55aa03"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2"):
        list(read_capture(str(path)))


# -- the twin ----------------------------------------------------------------------------------
async def test_handshake_and_switch_against_the_sim_twin(make_link: MakeLink) -> None:
    link = make_link(fast_config("sim://family_a?motor_time=0.05&report_interval=0"))
    seen = reports_of(link)
    await link.start()
    await link.wait_ready(READY_S)
    twin = running_twin(link.config.url)
    assert twin is not None
    assert twin.wifi_state == 4
    assert twin.heard.local_time is not None  # the twin asks for the time once WiFi state 4 is set
    assert {dp.dpid for dp in seen} >= {1, 16}
    target = not twin.switch_on
    assert (await link.write_dp(DpValue.of_bool(16, target))).value is target
    assert twin.switch_on is target


async def test_stop_never_hangs_when_a_reply_meets_the_cancellation() -> None:
    # Python 3.11's asyncio.wait_for swallows a cancellation that lands as its future
    # completes; with heartbeats every 0.5 ms some stop() lands exactly there. This caught
    # the link hanging in stop() ~6% of the time before it moved to asyncio.timeout.
    link = McuLink(fast_config("sim://family_a?report_interval=0", heartbeat_interval_s=0.0005))
    for cycle in range(100):
        await link.start()
        await asyncio.sleep(0.003 * (cycle % 17))
        await asyncio.wait_for(link.stop(), 5.0)  # a hang detector, not a timing assert
        assert link.state is LinkState.STOPPED
