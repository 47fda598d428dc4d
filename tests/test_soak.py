"""Fault-injection soak, short form (bench/bench_soak.py is the long one), and the write-queue
case the long soak found."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench_modules import load_bench

SOAK_S = 12.0


bench = load_bench("bench_soak")


async def test_short_soak_keeps_every_invariant() -> None:
    # Two switch writers and two pipelining clients, so switch writes overlap, and a bridge
    # that stalls among the faults.
    report = await bench.soak(SOAK_S, seed=3, spell_s=0.6, writers=2, pipeliners=2)
    assert report.problems == []
    assert report.phases >= 4  # faults were injected
    assert report.reads_stale > 0  # stale spells happened and were judged
    assert report.reads - report.reads_stale - report.reads_unjudged > 0  # fresh ones too
    assert report.switch_commands > 0  # writes reached the UART and were checked
    assert report.recoveries_s  # the link came back after silences or reboots


async def test_command_checks_catch_late_and_doubled_switches(tmp_path: Path) -> None:
    """The soak's invariant checks themselves: a command after the window, or two in one."""
    rig = await bench.start_rig(bench.soak_map(tmp_path))
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        client = await bench.Modbus.open(rig.service.tcp_port)
        await client.call(b"\x05\x00\x00\xff\x00")
        client.close()
        writes = [bench.WriteRecord(True, start, loop.time())]
        assert len(rig.sent) == 1
        assert bench.late_commands(rig.sent, writes) == []
        assert bench.doubled_commands(rig.sent, writes) == []
        early = [bench.WriteRecord(True, start - 10.0, start - 9.0)]
        assert len(bench.late_commands(rig.sent, early)) >= 1
        assert len(bench.doubled_commands(rig.sent * 2, writes)) == 1
    finally:
        await rig.stop()


async def test_switch_write_behind_another_is_never_sent_late(tmp_path: Path) -> None:
    rig = await bench.start_rig(bench.soak_map(tmp_path))
    try:
        rig.twin.wifi_state = 1  # the MCU keeps heartbeating but ignores DP commands
        loop = asyncio.get_running_loop()
        writes: list[object] = []

        async def write(value: bool, after_s: float) -> bytes:
            await asyncio.sleep(after_s)
            client = await bench.Modbus.open(rig.service.tcp_port)
            start = loop.time()
            answer: bytes = await client.call(
                b"\x05\x00\x00" + (b"\xff\x00" if value else b"\x00\x00")
            )
            writes.append(bench.WriteRecord(value, start, loop.time()))
            client.close()
            return answer

        answers = await asyncio.gather(write(True, 0.0), write(False, 0.05))
        assert answers == [b"\x85\x0b", b"\x85\x06"]  # outcome unknown; never queued
        assert [dp.value for _, dp in rig.sent] == [True]
        assert bench.late_commands(rig.sent, writes) == []
    finally:
        await rig.stop()
