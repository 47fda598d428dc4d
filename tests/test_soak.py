"""Fault-injection soak, short form (bench/bench_soak.py is the long one), and the write-queue
case the long soak found."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench_modules import load_bench

from gateway.twin import running_twin

SOAK_S = 12.0


bench = load_bench("bench_soak")


async def test_short_soak_keeps_every_invariant() -> None:
    # Two switch writers, so switch writes also overlap and queue behind each other.
    report = await bench.soak(SOAK_S, seed=3, spell_s=0.6, writers=2)
    assert report.problems == []
    assert report.phases >= 4  # faults were injected
    assert report.reads_stale > 0  # stale spells happened and were judged
    assert report.reads - report.reads_stale - report.reads_unjudged > 0  # fresh ones too
    assert report.switch_commands > 0  # writes reached the UART and were checked
    assert report.recoveries_s  # the link came back after silences or reboots


async def test_late_commands_check_catches_a_late_switch(tmp_path: Path) -> None:
    """The soak's invariant check itself: a command after the window is reported."""
    service = await bench.start_service(bench.soak_map(tmp_path))
    try:
        twin = running_twin(service.units[1].link.config.url)
        loop = asyncio.get_running_loop()
        start = loop.time()
        client = await bench.Modbus.open(service.tcp_port)
        await client.call(b"\x05\x00\x00\xff\x00")
        client.close()
        writes = [bench.WriteRecord(True, start, loop.time())]
        assert bench.late_commands([twin], writes) == []
        early = [bench.WriteRecord(True, start - 10.0, start - 9.0)]
        assert len(bench.late_commands([twin], early)) >= 1
    finally:
        await service.stop()


async def test_switch_write_queued_behind_another_is_never_sent_late(tmp_path: Path) -> None:
    service = await bench.start_service(bench.soak_map(tmp_path))
    try:
        twin = running_twin(service.units[1].link.config.url)
        twin.wifi_state = 1  # the MCU keeps heartbeating but ignores DP commands
        loop = asyncio.get_running_loop()
        writes: list[object] = []

        async def write(value: bool, after_s: float) -> None:
            await asyncio.sleep(after_s)
            client = await bench.Modbus.open(service.tcp_port)
            start = loop.time()
            await client.call(b"\x05\x00\x00" + (b"\xff\x00" if value else b"\x00\x00"))
            writes.append(bench.WriteRecord(value, start, loop.time()))
            client.close()

        await asyncio.gather(write(True, 0.0), write(False, 0.05))
        assert [dp.dpid for _, dp in twin.dp_commands] != []
        assert bench.late_commands([twin], writes) == []
    finally:
        await service.stop()
