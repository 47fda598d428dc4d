"""Fault-injection soak: the real service on a twin that misbehaves while clients poll and write.

Run as ``python bench/bench_soak.py [--seconds S] [--seed N]`` (long form, default 300 s);
tests/test_soak.py runs :func:`soak` for a few seconds in CI. Everything runs in this process
on one event loop, so the twin's ``dp_commands`` times and the clients' write times share the
monotonic loop clock. The chaos loop walks through garbage, bad checksums, dropped and delayed
replies, reboots and silences, each followed by a clean spell. Checked, never timed:

- no crash: the link never stops, nothing is logged at ERROR, the server answers at the end;
- every read of input registers 0-8 (stale policy ``exception``) answers 0x0B exactly while
  the data is stale (link not READY, or a source DP missing or older than its max age), and
  discrete input 17 (link_online) is 1 exactly while the link is READY; reads during which
  that truth changed are not judged;
- every switch command (0x06 dp16) the twin received belongs to a Modbus write of that value
  that was in progress and still inside its confirmation window;
- after each silence or reboot, fresh data (a report newer than the fault's end, served over
  Modbus) comes back; the time it took is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import random
import resource
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.handshake import LinkTimings
from gateway.link import LinkState, McuLink
from gateway.modbus_server import TcpListener
from gateway.service import GatewayService, Unit
from gateway.simulator import McuTwin

ROOT = Path(__file__).resolve().parent.parent
CONFIRM_S = 1.0
SWITCH_CONFIRM_S = 1.5
MAX_AGE_S = 90.0
SOURCE_DPS = (6, 1, 15, 9)  # behind input registers 0-8 of the default map
FAST_TUYA = f"""tuya:
  heartbeat: {{interval_s: 0.2, timeout_s: 0.3, missed_down: 2}}
  confirm_timeout_s: {CONFIRM_S}
"""
FAST_TIMINGS = LinkTimings(
    probe_interval_s=0.1,
    reply_timeout_s=0.5,
    notice_wait_s=0.05,
    query_quiet_s=0.1,
    query_max_s=1.0,
    line_idle_s=0.02,
    backoff_min_s=0.05,
    backoff_max_s=0.3,
)
PHASES = ("garbage", "bad_checksum", "drop_replies", "delay", "reboot", "silent", "mixed")


@dataclasses.dataclass
class SoakReport:
    """What a soak saw; every list of problems must come back empty."""

    seconds: float = 0.0
    phases: int = 0
    reads: int = 0
    reads_stale: int = 0
    reads_unjudged: int = 0
    writes: int = 0
    writes_confirmed: int = 0
    switch_commands: int = 0
    recoveries_s: list[float] = dataclasses.field(default_factory=list)
    stale_mismatches: list[str] = dataclasses.field(default_factory=list)
    late_commands: list[str] = dataclasses.field(default_factory=list)
    errors_logged: list[str] = dataclasses.field(default_factory=list)
    unrecovered: list[str] = dataclasses.field(default_factory=list)
    crashed: list[str] = dataclasses.field(default_factory=list)
    max_rss_kb: list[int] = dataclasses.field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [
            *self.stale_mismatches,
            *self.late_commands,
            *self.errors_logged,
            *self.unrecovered,
            *self.crashed,
        ]


@dataclasses.dataclass(frozen=True, slots=True)
class WriteRecord:
    value: bool
    start: float
    end: float


class _ErrorLog(logging.Handler):
    def __init__(self, report: SoakReport) -> None:
        super().__init__(logging.ERROR)
        self._report = report

    def emit(self, record: logging.LogRecord) -> None:
        self._report.errors_logged.append(f"{record.name}: {record.getMessage()}")


def soak_map(directory: Path) -> Path:
    """The default map with fast heartbeats and short confirmation windows."""
    text = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
    text = text.replace("tuya:\n", FAST_TUYA, 1)
    text = text.replace("  confirm_timeout_s: 3.0\n", "", 1)
    text = text.replace(
        "    confirm_timeout_s: 5.0", f"    confirm_timeout_s: {SWITCH_CONFIRM_S}", 1
    )
    path = directory / "soak_map.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Modbus:
    """A raw Modbus TCP client on one connection (the real wire format, no retries)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer, self._tid = reader, writer, 0

    @classmethod
    async def open(cls, port: int) -> Modbus:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def call(self, pdu: bytes) -> bytes:
        """Send ``pdu`` to unit 1 and return the answer's PDU."""
        self._tid = (self._tid + 1) & 0xFFFF
        self._writer.write(struct.pack(">HHHB", self._tid, 0, len(pdu) + 1, 1) + pdu)
        head = await asyncio.wait_for(self._reader.readexactly(7), 10.0)
        tid, _, length, _ = struct.unpack(">HHHB", head)
        if tid != self._tid:
            raise RuntimeError(f"answer tid {tid}, expected {self._tid}")
        return await self._reader.readexactly(length - 1)

    def close(self) -> None:
        self._writer.close()


class Soak:
    """One soak run: service, pollers, writers, chaos, and the invariant checks."""

    def __init__(self, service: GatewayService, rng: random.Random, report: SoakReport) -> None:
        self.service = service
        self.unit: Unit = service.units[1]
        self.link: McuLink = self.unit.link
        self.rng = rng
        self.report = report
        self.writes: list[WriteRecord] = []
        self.twins: list[McuTwin] = []
        self.stop = asyncio.Event()

    # -- truth ----------------------------------------------------------------------------
    def stale_now(self) -> bool:
        if self.link.state is not LinkState.READY:
            return True
        snap = self.unit.cache.snapshot()
        return any(snap.is_stale(dpid, MAX_AGE_S) for dpid in SOURCE_DPS)

    def twin(self) -> McuTwin:
        twin = self.link.twin
        assert twin is not None
        if not self.twins or self.twins[-1] is not twin:
            self.twins.append(twin)
        return twin

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
                pdu = b"\x05\x00\x00" + (b"\xff\x00" if value else b"\x00\x00")
                start = loop.time()
                answer = await client.call(pdu)
                self.writes.append(WriteRecord(value, start, loop.time()))
                self.report.writes += 1
                self.report.writes_confirmed += answer == pdu
                await asyncio.sleep(0.05 + self.rng.random() * 0.25)
        finally:
            client.close()

    # -- chaos ----------------------------------------------------------------------------
    async def chaos(self, spell_s: float) -> None:
        while not self.stop.is_set():
            phase = self.rng.choice(PHASES)
            self.report.phases += 1
            await self._inject(phase, spell_s)
            self.twin().faults.__init__()  # type: ignore[misc]  # all faults off
            if phase in ("reboot", "silent", "mixed"):
                await self._measure_recovery(phase)
            await asyncio.sleep(spell_s * self.rng.uniform(0.5, 1.5))

    async def _inject(self, phase: str, spell_s: float) -> None:
        faults = self.twin().faults
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
        await asyncio.sleep(spell_s * self.rng.uniform(0.5, 1.5))

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
        self.report.switch_commands = sum(
            dp.dpid == 16 for twin in self.twins for _, dp in twin.dp_commands
        )
        self.report.late_commands = late_commands(self.twins, self.writes)

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


async def soak(seconds: float, seed: int = 0, spell_s: float = 1.0, writers: int = 2) -> SoakReport:
    """Run the soak for ``seconds``; the report (``problems`` empty when all held).

    With ``writers`` > 1, switch writes overlap: see the README on queued writes.
    """
    report = SoakReport()
    handler = _ErrorLog(report)
    logging.getLogger().addHandler(handler)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await _run(seconds, seed, spell_s, writers, soak_map(Path(tmp)), report)
    finally:
        logging.getLogger().removeHandler(handler)
    return report


async def _run(
    seconds: float, seed: int, spell_s: float, writers: int, map_path: Path, report: SoakReport
) -> None:
    service = await start_service(map_path, seed)
    loop = asyncio.get_running_loop()
    try:
        run = Soak(service, random.Random(seed), report)
        run.twin()
        clients = [run.poller(), run.poller(), *(run.writer() for _ in range(writers))]
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
        run.twin()
        run.check_commands()
        await run.check_alive()
    finally:
        await service.stop()


async def start_service(map_path: Path, seed: int = 0) -> GatewayService:
    """The real service on one fast twin (unit 1, TCP on a free port), its link READY."""
    twin_url = f"sim://family_a?report_interval=0.2&motor_time=0.1&seed={seed}"
    config = GatewayConfig(
        (DeviceConfig(1, twin_url, str(map_path)),),
        TcpListener("127.0.0.1", 0),
        None,
        WritePolicy(switch_interval_s=0.3),
    )
    service = GatewayService(config)
    link = service.units[1].link
    link.config = dataclasses.replace(link.config, timings=FAST_TIMINGS)
    await service.start()
    try:
        await link.wait_ready(20.0)
    except BaseException:
        await service.stop()
        raise
    return service


def late_commands(twins: list[McuTwin], writes: list[WriteRecord]) -> list[str]:
    """Switch commands outside the window of every write of the same value."""
    late = []
    for twin in twins:
        for when, dp in twin.dp_commands:
            if dp.dpid == 16 and not any(
                w.value == dp.value and w.start <= when <= min(w.end, w.start + SWITCH_CONFIRM_S)
                for w in writes
            ):
                late.append(f"switch {dp.value!r} at {when:.3f} outside every write's window")
    return late


def summary(report: SoakReport) -> list[tuple[str, object]]:
    rec = sorted(report.recoveries_s)
    rss = report.max_rss_kb
    return [
        ("seconds", round(report.seconds, 1)),
        ("fault phases", report.phases),
        (
            "reads (stale / unjudged)",
            f"{report.reads} ({report.reads_stale} / {report.reads_unjudged})",
        ),
        ("writes (confirmed)", f"{report.writes} ({report.writes_confirmed})"),
        ("switch commands on the UART", report.switch_commands),
        ("stale-policy mismatches", len(report.stale_mismatches)),
        ("late switch commands", len(report.late_commands)),
        ("ERROR log records", len(report.errors_logged)),
        ("crashes / unrecovered", len(report.crashed) + len(report.unrecovered)),
        ("recoveries", len(rec)),
        ("recovery to fresh data p50 s", rec[len(rec) // 2] if rec else "-"),
        ("recovery to fresh data max s", rec[-1] if rec else "-"),
        ("peak RSS first / last MB", f"{rss[0] / 1024:.1f} / {rss[-1] / 1024:.1f}" if rss else "-"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--writers", type=int, default=2, help="concurrent switch writers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    report = asyncio.run(soak(args.seconds, args.seed, writers=args.writers))
    for name, value in summary(report):
        print(f"{name:32s} {value}")
    for problem in report.problems[:20]:
        print("PROBLEM:", problem)
    raise SystemExit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
