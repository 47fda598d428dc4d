"""Soak plumbing: fast map and timings, the report, a raw Modbus client, the checks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
from pathlib import Path

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.service import GatewayService
from gateway.tuya.handshake import LinkTimings
from gateway.tuya.protocol import DpValue
from gateway.twin import McuTwin

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


class ErrorLog(logging.Handler):
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
                late.append(f"switch {dp.value!r} at {when:.3f} {_lateness(when, dp, writes)}")
    return late


def _lateness(when: float, dp: DpValue, writes: list[WriteRecord]) -> str:
    """How far past the window of the latest earlier write of that value ``when`` is."""
    earlier = [w for w in writes if w.value == dp.value and w.start <= when]
    if not earlier:
        return "with no write of that value before it"
    write = max(earlier, key=lambda w: w.start)
    return (
        f"{(when - write.start) * 1000:.1f} ms after the write was sent"
        f" (window {SWITCH_CONFIRM_S * 1000:.0f} ms, answered after"
        f" {(write.end - write.start) * 1000:.1f} ms)"
    )


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
