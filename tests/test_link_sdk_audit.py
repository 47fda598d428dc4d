"""Findings of a run against a strict MCU SDK v2.5.6-like peer: reports, 0x34, echoes, reboots.

The scripted MCU over a real pty pair and a real TCP socket (tests/mcu_peer.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from conftest import FAST_TIMINGS, READY_S, MakeLink, PeerEnd, fast_config, ready_link, reports_of
from mcu_peer import eventually

from gateway.errors import LowPowerProtocolError
from gateway.tuya.handshake import LinkTimings
from gateway.tuya.link import LinkState
from gateway.tuya.protocol import VERSION_MCU, Command, DpValue, Frame, Skipped, decode_dps
from gateway.tuya.scan import LineScanner

# each: one odd record whose length fits the frame, then dp15 (77, 78, 79)
ODD_THEN_DP15 = {
    "value of 2 bytes": "55aa0307000e0102000200070f0200040000004d85",
    "unknown type 7": "55aa0307000d32070001000f0200040000004eb3",
    "bitmap of 3 bytes": "55aa0307000f090500030000010f0200040000004f8e",
}
DP15S = [DpValue.of_value(15, value) for value in (77, 78, 79)]


# -- a 0x07 with one odd record ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("wire", "dp15"), zip(ODD_THEN_DP15.values(), DP15S, strict=True), ids=list(ODD_THEN_DP15)
)
def test_an_odd_record_that_fits_the_frame_is_skipped(wire: str, dp15: DpValue) -> None:
    parsed = decode_dps(bytes.fromhex(wire)[6:-1])
    assert parsed.values == (dp15,)
    assert len(parsed.errors) == 1


def test_a_record_running_past_the_frame_still_ends_the_parse() -> None:
    dp15 = DP15S[0]
    parsed = decode_dps(dp15.encode() + bytes.fromhex("010200100017") + dp15.encode())
    assert parsed.values == (dp15,)
    assert len(parsed.errors) == 1


async def test_records_after_an_odd_one_reach_the_listeners(
    make_link: MakeLink, peer_end: PeerEnd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.tuya.link")
    link = await ready_link(make_link, peer_end)
    seen = reports_of(link)
    for wire in ODD_THEN_DP15.values():
        peer_end.peer.send_bytes(bytes.fromhex(wire))
    await eventually(lambda: seen[-3:] == DP15S, "dp15 after each odd record")
    assert link.stats.dp_errors == len(ODD_THEN_DP15)
    rejected = [r.getMessage() for r in caplog.records if "rejected DP record" in r.getMessage()]
    assert len(rejected) == 3  # dp1, dp50 and dp9: one line per DP id
    assert link.state is LinkState.READY


# -- 0x34 extended services ---------------------------------------------------------------------
async def test_time_service_and_weather_are_answered_failure_and_logged_once(
    make_link: MakeLink, peer_end: PeerEnd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.tuya.answers")
    await ready_link(make_link, peer_end)
    peer = peer_end.peer
    service = Command.EXTENDED_SERVICE
    # sub 0x01 "open the time service" (00 GMT, 01 local): 01 01, no sub 0x02 notices follow
    assert (await peer.ask(service, b"\x01\x00")).encode().hex() == "55aa00340002010137"
    assert (await peer.ask(service, b"\x01\x01")).encode().hex() == "55aa00340002010137"
    assert (await peer.ask(service, b"\x03")).encode().hex() == "55aa00340002030139"  # weather
    peer.request(service, b"\x02")  # an ack of a time notice never sent: nothing to answer
    assert (await peer.ask(service, b"\x04")).data == b"\x04\x00"
    assert [f.data[:1] for f in peer.frames(service)] == [b"\x01", b"\x01", b"\x03", b"\x04"]
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("link: MCU")]
    assert len(logged) == 3
    assert "sub-command 01 answered failure" in logged[0]
    assert "sub-command 03 answered failure: weather" in logged[1]
    assert "sub-command 02 left unanswered" in logged[2]


# -- reboots and echoes --------------------------------------------------------------------------
async def test_a_reboot_answered_after_the_heartbeat_timeout_redoes_the_handshake(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    # the late 00 lands between the heartbeat's timeout (0.25 s) and the next heartbeat (1 s)
    link = await ready_link(make_link, peer_end, heartbeat_interval_s=1.0, heartbeat_timeout_s=0.25)
    peer = peer_end.peer
    peer.heartbeats_late, peer.heartbeat_late_s = 1, 0.6
    peer.reboot()
    await eventually(lambda: link.stats.handshakes == 2, "a second handshake")
    await link.wait_ready(READY_S)
    assert link.stats.mcu_reboots == 1
    assert [f.data for f in peer.frames(Command.WIFI_STATE)] == [b"\x04", b"\x04"]
    assert len(peer.frames(Command.DP_QUERY)) == 2


async def test_an_echoing_line_is_no_low_power_mcu_and_no_reboot(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer_end.peer.echo = True  # 55aa00000000ff comes back before 55aa030000010003
    link = await ready_link(make_link, peer_end)
    assert link.fatal_error is None
    assert link.stats.mcu_reboots == 0
    assert link.stats.handshakes == 1
    assert link.stats.echoes_ignored >= 5  # heartbeat, 0x01, 0x02, 0x03, 0x08
    assert link.product_info is not None


async def test_a_low_power_mcu_still_stops_on_an_echoing_line(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    peer_end.peer.echo = True
    peer_end.peer.version = 0x00  # answers 55aa0000000100: a real low-power answer
    link = make_link(fast_config(peer_end.url))
    await link.start()
    with pytest.raises(LowPowerProtocolError, match="low-power"):
        await link.wait_ready(READY_S)
    assert link.state is LinkState.STOPPED


# -- a frame in pieces ------------------------------------------------------------------------
async def test_a_frame_split_by_a_pause_is_still_decoded(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    # a TCP serial bridge may deliver one frame in segments well over 50 ms apart
    timings = dataclasses.replace(FAST_TIMINGS, line_idle_s=LinkTimings().line_idle_s)
    # no heartbeat answer may land inside the pieces: one MCU sends one frame at a time
    link = await ready_link(make_link, peer_end, timings=timings, heartbeat_interval_s=60.0)
    seen = reports_of(link)
    wire = Frame(Command.DP_REPORT, DP15S[0].encode(), VERSION_MCU).encode()
    for piece in (wire[:1], wire[1:9], wire[9:]):
        peer_end.peer.send_bytes(piece)
        await asyncio.sleep(0.15)
    await eventually(lambda: DP15S[0] in seen, "the report sent in three pieces")
    assert link.stats.bytes_skipped == 0


async def test_a_frame_behind_a_phantom_length_needs_no_quiet_line(
    make_link: MakeLink, peer_end: PeerEnd
) -> None:
    # a line that never idles long enough: only the frame itself may end the phantom's wait
    timings = dataclasses.replace(FAST_TIMINGS, line_idle_s=3600.0)
    link = await ready_link(make_link, peer_end, timings=timings)
    seen = reports_of(link)
    for phantom, dp in zip(("55aa030703ff", "55aa0307ffff"), DP15S, strict=False):
        wire = Frame(Command.DP_REPORT, dp.encode(), VERSION_MCU).encode()
        peer_end.peer.send_bytes(bytes.fromhex(phantom) + wire)  # lengths 1023 and 65535
        await eventually(lambda dp=dp: dp in seen, f"{dp.describe()} behind a phantom")
    assert link.stats.bytes_skipped == 12  # the two phantom headers, nothing after them
    assert link.state is LinkState.READY


def test_the_sniff_scanner_resyncs_at_a_frame_behind_a_phantom_length_too() -> None:
    scanner = LineScanner()
    wire = Frame(Command.DP_REPORT, DP15S[0].encode(), VERSION_MCU).encode()
    scanner.feed(bytes.fromhex("55aa030703ff") + wire)
    assert list(scanner.events()) == [
        Skipped(bytes.fromhex("55aa030703ff"), "phantom length"),
        Frame(Command.DP_REPORT, DP15S[0].encode(), VERSION_MCU),
    ]
