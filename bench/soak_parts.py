"""Soak plumbing: fast map and timings, the twin behind a stalling bridge, the report, a raw
Modbus client that can pipeline, and the checks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
from collections.abc import Callable
from pathlib import Path

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.service import GatewayService
from gateway.tuya.handshake import LinkTimings
from gateway.tuya.link import McuLink
from gateway.tuya.protocol import Command, DpValue, Frame, decode_dps
from gateway.twin import McuTwin, parse_sim_url
from gateway.twin.endpoints import serve_tcp

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
    pipelined_switch_busy: int = 0  # switch writes behind others on a connection: 0x06 at once
    stalls: int = 0
    delivered_after_window: int = 0  # switch commands a stalled bridge held past their window
    recoveries_s: list[float] = dataclasses.field(default_factory=list)
    stale_mismatches: list[str] = dataclasses.field(default_factory=list)
    late_commands: list[str] = dataclasses.field(default_factory=list)
    doubled_commands: list[str] = dataclasses.field(default_factory=list)
    errors_logged: list[str] = dataclasses.field(default_factory=list)
    unrecovered: list[str] = dataclasses.field(default_factory=list)
    crashed: list[str] = dataclasses.field(default_factory=list)
    max_rss_kb: list[int] = dataclasses.field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [
            *self.stale_mismatches,
            *self.late_commands,
            *self.doubled_commands,
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
        return (await self.pipeline([pdu]))[0]

    async def pipeline(self, pdus: list[bytes]) -> list[bytes]:
        """Send every PDU to unit 1 in one segment; their answers, in request order."""
        tids = []
        out = bytearray()
        for pdu in pdus:
            self._tid = (self._tid + 1) & 0xFFFF
            tids.append(self._tid)
            out += struct.pack(">HHHB", self._tid, 0, len(pdu) + 1, 1) + pdu
        self._writer.write(out)
        answers: dict[int, bytes] = {}
        while len(answers) < len(pdus):
            head = await asyncio.wait_for(self._reader.readexactly(7), 10.0)
            tid, _, length, _ = struct.unpack(">HHHB", head)
            if tid not in tids:
                raise RuntimeError(f"answer tid {tid}, expected one of {tids}")
            answers[tid] = await self._reader.readexactly(length - 1)
        return [answers[tid] for tid in tids]

    def close(self) -> None:
        self._writer.close()


class StallingBridge:
    """A ``socket://`` serial bridge (a TCP forwarder) that can stop forwarding and resume."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.forwarding = asyncio.Event()
        self.forwarding.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def open(self) -> StallingBridge:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"socket://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        for pump in (self._pump(reader, up_writer), self._pump(up_reader, writer)):
            task = asyncio.ensure_future(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            await self.forwarding.wait()  # stalled: the bytes wait here, in order
            writer.write(data)
        writer.close()

    async def close(self) -> None:
        self.forwarding.set()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclasses.dataclass
class Rig:
    """The service, its twin on a TCP endpoint, and the bridge between them."""

    service: GatewayService
    twin: McuTwin
    bridge: StallingBridge
    endpoint: asyncio.Server
    sent: list[tuple[float, DpValue]]  # switch commands the gateway wrote, loop time

    @property
    def link(self) -> McuLink:
        return self.service.units[1].link

    async def stop(self) -> None:
        await self.service.stop()
        await self.bridge.close()
        self.endpoint.close()
        await self.endpoint.wait_closed()


async def start_rig(map_path: Path, seed: int = 0, motor_time_s: float = 0.1) -> Rig:
    """The real service, unit 1 on a fast twin behind a bridge, TCP on a free port, READY."""
    twin = McuTwin(
        parse_sim_url(f"sim://family_a?report_interval=0.2&motor_time={motor_time_s}&seed={seed}")
    )
    endpoint = await serve_tcp("127.0.0.1", 0, lambda: twin)  # one MCU across reconnects
    bridge = await StallingBridge(endpoint.sockets[0].getsockname()[1]).open()
    config = GatewayConfig(
        (DeviceConfig(1, bridge.url, str(map_path)),),
        TcpListener("127.0.0.1", 0),
        None,
        WritePolicy(switch_interval_s=0.3),
    )
    rig = Rig(GatewayService(config), twin, bridge, endpoint, [])
    rig.link.config = dataclasses.replace(rig.link.config, timings=FAST_TIMINGS)
    rig.link.add_traffic_listener(_switch_tap(rig.sent))
    await rig.service.start()
    try:
        await rig.link.wait_ready(20.0)
    except BaseException:
        await rig.stop()
        raise
    return rig


def _switch_tap(sent: list[tuple[float, DpValue]]) -> Callable[[str, Frame], None]:
    def tap(direction: str, frame: Frame) -> None:
        if direction == "tx" and frame.command == Command.DP_COMMAND:
            now = asyncio.get_running_loop().time()
            sent.extend((now, dp) for dp in decode_dps(frame.data).values if dp.dpid == 16)

    return tap


Commands = list[tuple[float, DpValue]]  # (loop time, switch DP)


def _window_of(when: float, dp: DpValue, writes: list[WriteRecord]) -> list[WriteRecord]:
    return [
        w
        for w in writes
        if w.value == dp.value and w.start <= when <= min(w.end, w.start + SWITCH_CONFIRM_S)
    ]


def late_commands(commands: Commands, writes: list[WriteRecord]) -> list[str]:
    """Switch commands outside the window of every write of the same value."""
    return [
        f"switch {dp.value!r} at {when:.3f} {_lateness(when, dp, writes)}"
        for when, dp in commands
        if dp.dpid == 16 and not _window_of(when, dp, writes)
    ]


def doubled_commands(commands: Commands, writes: list[WriteRecord]) -> list[str]:
    """Writes whose window holds more than one switch command: a motor command resent."""
    counts: dict[WriteRecord, int] = {}
    for when, dp in commands:
        for write in _window_of(when, dp, writes) if dp.dpid == 16 else ():
            counts[write] = counts.get(write, 0) + 1
    return [
        f"switch {w.value!r} written at {w.start:.3f}: {n} commands"
        for w, n in counts.items()
        if n > 1
    ]


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
        ("doubled switch commands", len(report.doubled_commands)),
        ("pipelined switch writes busy (0x06)", report.pipelined_switch_busy),
        (
            "bridge stalls / commands held past window",
            f"{report.stalls} / {report.delivered_after_window}",
        ),
        ("ERROR log records", len(report.errors_logged)),
        ("crashes / unrecovered", len(report.crashed) + len(report.unrecovered)),
        ("recoveries", len(rec)),
        ("recovery to fresh data p50 s", rec[len(rec) // 2] if rec else "-"),
        ("recovery to fresh data max s", rec[-1] if rec else "-"),
        ("peak RSS first / last MB", f"{rss[0] / 1024:.1f} / {rss[-1] / 1024:.1f}" if rss else "-"),
    ]
