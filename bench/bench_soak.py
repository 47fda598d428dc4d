"""Fault-injection soak: the real service on a twin that misbehaves while clients poll and write.

Run as ``python bench/bench_soak.py [--seconds S] [--seed N]`` (long form, default 300 s);
tests/test_soak.py runs :func:`soak` for a few seconds in CI. Everything runs in this process
on one event loop, so the gateway's switch commands (tapped as they are written), the twin's
``dp_commands`` times and the clients' write times share the monotonic loop clock. The twin
sits on a TCP endpoint behind a ``socket://`` bridge. The chaos loop walks through garbage, bad
checksums, dropped and delayed replies, reboots, silences and bridge stalls, each followed by a
clean spell; pipelining clients send a threshold write, a read and a switch write in one
segment. Checked, never timed:

- no crash: the link never stops, nothing is logged at ERROR, the server answers at the end;
- every read of input registers 0-8 (stale policy ``exception``) answers 0x0B exactly while
  the data is stale (link not READY, or a source DP missing or older than its max age), and
  discrete input 17 (link_online) is 1 exactly while the link is READY; reads during which
  that truth changed are not judged;
- every switch command (0x06 dp16) the gateway wrote belongs to a Modbus write of that value
  that was in progress and still inside its confirmation window (late), and no write's window
  holds two of them (doubled: a motor command is never resent); the twin received no more
  switch commands than were written;
- after each silence or reboot, fresh data (a report newer than the fault's end, served over
  Modbus) comes back; the time it took is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import resource
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from soak_parts import (
    MAX_AGE_S,
    SOURCE_DPS,
    ErrorLog,
    Modbus,
    Rig,
    SoakReport,
    WriteRecord,
    doubled_commands,
    late_commands,
    soak_map,
    start_rig,
    summary,
)

from gateway.tuya.link import LinkState, McuLink
from gateway.twin import McuTwin

__all__ = [
    "Modbus",
    "SoakReport",
    "WriteRecord",
    "doubled_commands",
    "late_commands",
    "soak",
    "soak_map",
    "start_rig",
    "summary",
]

PHASES = (
    "garbage",
    "bad_checksum",
    "drop_replies",
    "delay",
    "reboot",
    "silent",
    "mixed",
    "stall",
)
SWITCH = {True: b"\x05\x00\x00\xff\x00", False: b"\x05\x00\x00\x00\x00"}


class Soak:
    """One soak run: service, pollers, writers, chaos, and the invariant checks."""

    def __init__(self, rig: Rig, rng: random.Random, report: SoakReport) -> None:
        self.rig = rig
        self.service = rig.service
        self.unit = rig.service.units[1]
        self.link: McuLink = rig.link
        self.rng = rng
        # The chaos loop draws from its own generator, so the sequence of faults depends on
        # the seed alone, never on how the clients' draws interleave with it.
        self.chaos_rng = random.Random(rng.random())
        self.report = report
        self.writes: list[WriteRecord] = []
        self.stop = asyncio.Event()

    # -- truth ----------------------------------------------------------------------------
    def stale_now(self) -> bool:
        if self.link.state is not LinkState.READY:
            return True
        snap = self.unit.cache.snapshot()
        return any(snap.is_stale(dpid, MAX_AGE_S) for dpid in SOURCE_DPS)

    def twin(self) -> McuTwin:
        return self.rig.twin

    # -- clients --------------------------------------------------------------------------
    async def poller(self) -> None:
        client = await Modbus.open(self.service.tcp_port)
        try:
            while not self.stop.is_set():
                await self._judge_read(client, b"\x04\x00\x00\x00\x09", self._check_registers)
                await self._judge_read(client, b"\x02\x00\x11\x00\x01", self._check_online)
                await asyncio.sleep(self.rng.random() * 0.01)
        finally:
            client.close()

    async def _judge_read(
        self, client: Modbus, pdu: bytes, check: Callable[[bytes, bool], str | None]
    ) -> None:
        before, ready_before = self.stale_now(), self.link.state is LinkState.READY
        answer = await client.call(pdu)
        after, ready_after = self.stale_now(), self.link.state is LinkState.READY
        self.report.reads += 1
        if before != after or ready_before != ready_after:
            self.report.reads_unjudged += 1
            return
        problem = check(answer, before if pdu[0] == 4 else ready_before)
        if problem is not None:
            self.report.stale_mismatches.append(f"{self.report.seconds:.1f}s: {problem}")

    def _check_registers(self, answer: bytes, stale: bool) -> str | None:
        self.report.reads_stale += stale
        if stale and answer != b"\x84\x0b":
            return f"stale data served: {answer.hex(' ')}"
        if not stale and (answer[0] != 4 or len(answer) != 2 + 18):
            return f"fresh data refused: {answer.hex(' ')}"
        return None

    def _check_online(self, answer: bytes, ready: bool) -> str | None:
        if answer != bytes((2, 1, int(ready))):
            return f"link_online answered {answer.hex(' ')} while READY={ready}"
        return None

    async def writer(self) -> None:
        client = await Modbus.open(self.service.tcp_port)
        loop = asyncio.get_running_loop()
        try:
            while not self.stop.is_set():
                value = self.rng.random() < 0.5
                pdu = SWITCH[value]
                start = loop.time()
                answer = await client.call(pdu)
                self.writes.append(WriteRecord(value, start, loop.time()))
                self.report.writes += 1
                self.report.writes_confirmed += answer == pdu
                await asyncio.sleep(0.05 + self.rng.random() * 0.25)
        finally:
            client.close()

    async def pipeliner(self) -> None:
        """A threshold write, a read and a switch write in one segment, again and again."""
        client = await Modbus.open(self.service.tcp_port)
        loop = asyncio.get_running_loop()
        try:
            while not self.stop.is_set():
                value = self.rng.random() < 0.5
                threshold = b"\x06\x00\x01\x00" + bytes((250 + self.rng.randrange(5),))
                start = loop.time()
                answers = await client.pipeline([threshold, b"\x04\x00\x00\x00\x01", SWITCH[value]])
                self.writes.append(WriteRecord(value, start, loop.time()))
                self.report.writes += 1
                self.report.writes_confirmed += answers[2] == SWITCH[value]
                self.report.pipelined_switch_busy += answers[2] == b"\x85\x06"
                await asyncio.sleep(0.1 + self.rng.random() * 0.3)
        finally:
            client.close()

    # -- chaos ----------------------------------------------------------------------------
    def phase_order(self) -> Iterator[str]:
        """Every fault once per round, in a shuffled order: a short run sees each of them."""
        while True:
            round_ = list(PHASES)
            self.chaos_rng.shuffle(round_)
            yield from round_

    async def chaos(self, spell_s: float) -> None:
        phases = self.phase_order()
        while not self.stop.is_set():
            phase = next(phases)
            self.report.phases += 1
            await self._inject(phase, spell_s)
            self.twin().faults.__init__()  # type: ignore[misc]  # all faults off
            if phase in ("reboot", "silent", "mixed", "stall"):
                await self._measure_recovery(phase)
            await asyncio.sleep(spell_s * self.chaos_rng.uniform(0.5, 1.5))

    def _spell(self, phase: str, spell_s: float) -> float:
        # A silence must outlast the link's silence detection, or nothing is ever stale.
        noticed = self.link.config.silence_noticed_s if phase == "silent" else 0.0
        return noticed + spell_s * self.chaos_rng.uniform(0.5, 1.5)

    async def _inject(self, phase: str, spell_s: float) -> None:
        faults = self.twin().faults
        if phase == "stall":
            self.report.stalls += 1
            self.rig.bridge.forwarding.clear()
            await asyncio.sleep(self._spell(phase, spell_s))
            self.rig.bridge.forwarding.set()
            return
        if phase == "reboot":
            self.twin().reboot()
            return
        if phase in ("garbage", "mixed"):
            faults.garbage = True
        if phase in ("bad_checksum", "mixed"):
            faults.bad_checksum = 0.3
        if phase in ("drop_replies", "mixed"):
            faults.drop_replies = 0.3
        if phase in ("delay", "mixed"):
            faults.delay_s = 0.15
        faults.silent = phase == "silent"
        await asyncio.sleep(self._spell(phase, spell_s))

    async def _measure_recovery(self, phase: str, timeout_s: float = 20.0) -> None:
        """Time from the fault's end until a newer report is served over Modbus."""
        loop = asyncio.get_running_loop()
        cleared = loop.time()
        client = await Modbus.open(self.service.tcp_port)
        try:
            while loop.time() - cleared < timeout_s:
                entry = self.unit.cache.snapshot().get(6)
                answer = await client.call(b"\x04\x00\x00\x00\x09")
                if entry is not None and entry.timestamp > cleared and answer[0] == 4:
                    self.report.recoveries_s.append(loop.time() - cleared)
                    return
                await asyncio.sleep(0.005)
        finally:
            client.close()
        self.report.unrecovered.append(f"no fresh data {timeout_s:g} s after {phase}")

    # -- checks ---------------------------------------------------------------------------
    def check_commands(self) -> None:
        received = [(when, dp) for when, dp in self.twin().dp_commands if dp.dpid == 16]
        sent = self.rig.sent
        self.report.switch_commands = len(received)
        self.report.late_commands = late_commands(sent, self.writes)
        self.report.doubled_commands = doubled_commands(sent, self.writes)
        if len(received) > len(sent):
            self.report.doubled_commands.append(
                f"the MCU received {len(received)} switch commands, {len(sent)} were written"
            )
        self.report.delivered_after_window = len(late_commands(received, self.writes))

    async def check_alive(self) -> None:
        if self.link.state is LinkState.STOPPED or self.link.fatal_error is not None:
            self.report.crashed.append(f"link stopped: {self.link.fatal_error}")
        client = await Modbus.open(self.service.tcp_port)
        try:
            answer = await client.call(b"\x04\x00\xc8\x00\x01")  # handshake_state
            if answer[0] != 4:
                self.report.crashed.append(f"server answered {answer.hex(' ')} at the end")
        finally:
            client.close()


async def soak(
    seconds: float, seed: int = 0, spell_s: float = 1.0, writers: int = 2, pipeliners: int = 2
) -> SoakReport:
    """Run the soak for ``seconds``; the report (``problems`` empty when all held).

    With ``writers`` > 1, switch writes overlap: see the README on queued writes.
    """
    report = SoakReport()
    handler = ErrorLog(report)
    logging.getLogger().addHandler(handler)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            clients = (writers, pipeliners)
            await _run(seconds, seed, spell_s, clients, soak_map(Path(tmp)), report)
    finally:
        logging.getLogger().removeHandler(handler)
    return report


async def _run(
    seconds: float,
    seed: int,
    spell_s: float,
    counts: tuple[int, int],
    map_path: Path,
    report: SoakReport,
) -> None:
    rig = await start_rig(map_path, seed)
    loop = asyncio.get_running_loop()
    try:
        run = Soak(rig, random.Random(seed), report)
        writers, pipeliners = counts
        clients = [run.poller(), run.poller(), *(run.writer() for _ in range(writers))]
        clients += [run.pipeliner() for _ in range(pipeliners)]
        tasks = [asyncio.create_task(c) for c in clients]
        tasks.append(asyncio.create_task(run.chaos(spell_s)))
        start = loop.time()
        while loop.time() - start < seconds and not any(t.done() for t in tasks):
            await asyncio.sleep(0.5)
            report.seconds = loop.time() - start
            report.max_rss_kb.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        run.stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, 30.0)
            except Exception as err:  # a client or the chaos loop died: that is a finding
                report.crashed.append(f"{type(err).__name__}: {err}")
        run.check_commands()
        await run.check_alive()
    finally:
        await rig.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--writers", type=int, default=2, help="concurrent switch writers")
    parser.add_argument("--pipeliners", type=int, default=2, help="pipelining clients")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    report = asyncio.run(
        soak(args.seconds, args.seed, writers=args.writers, pipeliners=args.pipeliners)
    )
    for name, value in summary(report):
        print(f"{name:32s} {value}")
    for problem in report.problems[:20]:
        print("PROBLEM:", problem)
    raise SystemExit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
