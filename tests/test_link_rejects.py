"""A hostile MCU's malformed DP records: every one counted, logged once a minute per DP id."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from conftest import PEER_DPS, fast_config
from mcu_peer import ScriptedMcu, TcpPeer, eventually

from gateway.tuya.link import LinkConfig, McuLink
from gateway.tuya.protocol import VERSION_MCU, Command, DpValue, Frame
from gateway.tuya.rejects import record_key

MakeLink = Callable[[LinkConfig], McuLink]
REPEATS = 50
# dp5 says it is a 4-byte value but carries 2 bytes; a lone 2-byte record has no header
BAD_DP5 = Frame(Command.DP_REPORT, bytes.fromhex("0502000400 01"), VERSION_MCU).encode()
NO_HEADER = Frame(Command.DP_REPORT, bytes.fromhex("0502"), VERSION_MCU).encode()


def test_each_error_is_keyed_by_its_dp_id() -> None:
    assert record_key("dp5: record says 4 bytes, 2 present") == "dp5"
    assert record_key("truncated record header at byte 0") == "header"
    assert record_key("dpx: odd") == "header"


async def test_a_repeated_bad_record_is_logged_once_per_dp_with_every_one_counted(
    make_link: MakeLink, caplog: pytest.LogCaptureFixture
) -> None:
    peer = ScriptedMcu(list(PEER_DPS))
    tcp = await TcpPeer(peer).open()
    try:
        link = make_link(fast_config(tcp.url))
        seen: list[DpValue] = []
        link.add_report_listener(seen.append)
        await link.start()
        await link.wait_ready(10.0)
        caplog.set_level(logging.WARNING, logger="gateway.tuya.link")
        for _ in range(REPEATS):
            peer.send_bytes(BAD_DP5 + NO_HEADER)
        last = DpValue.of_value(104, 7)
        peer.send_bytes(Frame(Command.DP_REPORT, last.encode(), VERSION_MCU).encode())
        await eventually(lambda: last in seen)
    finally:
        await tcp.close()
    rejected = [r.getMessage() for r in caplog.records if "rejected DP record" in r.getMessage()]
    assert link.stats.dp_errors == 2 * REPEATS
    assert len(rejected) == 2, rejected  # one for dp5, one for the header
    assert any("dp5: " in line for line in rejected)
    assert all(line.startswith(f"link {tcp.url}: ") for line in rejected)
