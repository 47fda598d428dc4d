"""Field safety of writes (issues 11 and 12): the real service, real sockets and ptys, and an MCU
double (tests/mcu_peer.ScriptedMcu over TCP, or the twin with the MCU SDK's receive path).

Each test here failed on the code before the one write gate: see /work/notes/h1.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bench_modules import load_bench
from mcu_peer import ScriptedMcu, TcpPeer, eventually
from serial_line import PtyMaster
from test_cli import background, free_port

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.errors import ConfigError
from gateway.modbus.rtu import crc16
from gateway.modbus.server import RtuListener, TcpListener
from gateway.regmap.load import load_map
from gateway.service import GatewayService
from gateway.tuya.link_config import LinkState
from gateway.tuya.protocol import Command, DpValue, Frame, FrameDecoder, decode_dps
from gateway.twin import McuTwin, TwinOptions, running_twin

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
LISTS = "0101003F030100FA040100AA"  # alarm_set_2: over-current 63 A, 250 V, 170 V
PEER_DPS = [
    DpValue.of_bool(16, False),
    DpValue.of_bool(11, False),
    DpValue.of_raw(18, bytes.fromhex(LISTS)),
    DpValue.of_raw(17, bytes.fromhex("0400001E")),
    DpValue.of_raw(6, bytes.fromhex("0916000099000023")),
]
SWITCH_ON = b"\x05\x00\x00\xff\x00"
READY_S = 15.0


def with_window(text: str, switch_s: float, tuya_s: float = 3.0) -> str:
    """The map with the switch's and the default confirmation windows replaced."""
    text = text.replace("confirm_timeout_s: 5.0 ", f"confirm_timeout_s: {switch_s} ", 1)
    return text.replace("  confirm_timeout_s: 3.0\n", f"  confirm_timeout_s: {tuya_s}\n", 1)


def commands(peer: ScriptedMcu, dpid: int | None = None) -> list[DpValue]:
    """The DPs the MCU received in 0x06 commands."""
    sent = [dp for f in peer.frames(Command.DP_COMMAND) for dp in decode_dps(f.data).values]
    return [dp for dp in sent if dpid is None or dp.dpid == dpid]


@pytest.fixture
async def peer() -> AsyncIterator[TcpPeer]:
    """The MCU double behind a real TCP socket; like the breaker, it merges alarm records."""
    mcu = ScriptedMcu(list(PEER_DPS))
    mcu.merge_records = True
    tcp = await TcpPeer(mcu).open()
    yield tcp
    await tcp.close()


@pytest.fixture
async def gateways() -> AsyncIterator[list[GatewayService]]:
    started: list[GatewayService] = []
    yield started
    for service in started:
        await service.stop()


async def start(
    started: list[GatewayService],
    tmp_path: Path,
    link: str,
    text: str = DEFAULT_TEXT,
    rtu: RtuListener | None = None,
    **policy: object,
) -> GatewayService:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    devices = (DeviceConfig(1, link, str(path)),)
    config = GatewayConfig(
        devices,
        TcpListener("127.0.0.1", 0),
        rtu,
        WritePolicy(**policy),  # type: ignore[arg-type]
    )
    service = GatewayService(config)
    await service.start()
    started.append(service)
    await service.units[1].link.wait_ready(READY_S)
    await eventually(lambda: service.units[1].cache.snapshot().get(18) is not None)
    return service


class RawClient:
    """A Modbus TCP client that pipelines: requests go out at once, replies are read as sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, *requests: tuple[int, int, bytes]) -> None:
        """(transaction id, unit, PDU) requests, in one segment."""
        self.writer.write(
            b"".join(struct.pack(">HHHB", t, 0, len(p) + 1, u) + p for t, u, p in requests)
        )

    async def reply(self) -> tuple[int, bytes]:
        """(transaction id, PDU) of the next reply; a hang detector, not a timing assert."""
        async with asyncio.timeout(READY_S):
            header = await self.reader.readexactly(7)
            tid, _, length, _ = struct.unpack(">HHHB", header)
            return tid, await self.reader.readexactly(length - 1)

    async def closed(self) -> bool:
        async with asyncio.timeout(READY_S):
            return await self.reader.read(100) == b""

    def close(self) -> None:
        self.writer.close()


def write_register(address: int, value: int) -> bytes:
    return struct.pack(">BHH", 6, address, value)


# -- issue 11: one gate, one predicate ---------------------------------------------------------
async def test_records_reported_in_another_order_confirm_without_resend(
    tmp_path: Path, peer: TcpPeer, gateways: list[GatewayService]
) -> None:
    peer.peer.reverse_records = True
    service = await start(gateways, tmp_path, peer.url, with_window(DEFAULT_TEXT, 5.0, 20.0))
    client = await RawClient.open(service.tcp_port)
    client.send((1, 1, write_register(1, 260)))
    async with asyncio.timeout(8.0):  # waiting out the 20 s window would trip this
        assert await client.reply() == (1, write_register(1, 260))
    assert len(commands(peer.peer)) == 1  # no halfway resend
    client.close()


# -- issue 12.1: no switch command waits behind other requests ---------------------------------
async def test_pipelined_switch_write_is_busy_at_once_and_never_sent(
    tmp_path: Path, peer: TcpPeer, gateways: list[GatewayService], caplog: pytest.LogCaptureFixture
) -> None:
    peer.peer.report_delay_s = 0.8  # slow threshold writes: 0.8 s each, 3 s windows
    service = await start(gateways, tmp_path, peer.url)
    client = await RawClient.open(service.tcp_port)
    client.send(
        (1, 1, write_register(0, 40)),
        (2, 1, write_register(1, 260)),
        (3, 1, write_register(2, 180)),
        (4, 1, SWITCH_ON),
    )
    replies = [await client.reply() for _ in range(4)]
    assert replies[0] == (4, b"\x85\x06")  # answered at once, ahead of the writes it would wait for
    assert dict(replies[1:]) == {
        1: write_register(0, 40),
        2: write_register(1, 260),
        3: b"\x86\x0b",  # its 3 s window began at arrival: 1.6 s of it went waiting, not sent
    }
    assert commands(peer.peer, 16) == []
    sent = [dp.payload for dp in commands(peer.peer, 18)]
    assert sent
    assert not any(bytes.fromhex("040100B4") in payload for payload in sent)  # the 3rd: never
    assert re.search(  # the uniform refusal line, with the point's name
        r"write refused: switch = 1 by \S+: busy: would wait behind 3 request\(s\) on this"
        r" connection; never queued \(0x06\)",
        caplog.text,
    )
    client.close()


# -- issue 12.2: no doubled command after a stalled link ---------------------------------------
async def test_stalled_bridge_never_doubles_a_switch_command(
    tmp_path: Path, peer: TcpPeer, gateways: list[GatewayService], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = int(peer.url.rsplit(":", 1)[1])
    bridge = await load_bench("soak_parts").StallingBridge(port).open()
    text = with_window(DEFAULT_TEXT, 1.0).replace(
        "    id: 18\n", "    id: 18\n    confirm_timeout_s: 8.0\n", 1
    )
    service = await start(gateways, tmp_path, bridge.url, text)
    link = service.units[1].link
    try:
        bridge.forwarding.clear()
        switch, threshold = (
            await RawClient.open(service.tcp_port),
            await RawClient.open(service.tcp_port),
        )
        switch.send((1, 1, SWITCH_ON))
        await asyncio.sleep(0.2)  # the threshold write arrives while the switch is in flight
        threshold.send((2, 1, write_register(1, 260)))
        assert await switch.reply() == (1, b"\x85\x0b")  # sent, outcome unknown
        assert await threshold.reply() == (2, b"\x86\x0b")  # dropped, never sent
        queries = len(peer.peer.frames(Command.DP_QUERY))
        bridge.forwarding.set()  # what the bridge held arrives now, in one go
        await eventually(lambda: bool(commands(peer.peer)))
        await asyncio.sleep(0.3)  # settle: anything else it held would have arrived with it
        assert commands(peer.peer) == [DpValue.of_bool(16, True)]  # once: never resent
        await eventually(lambda: len(peer.peer.frames(Command.DP_QUERY)) > queries)  # re-read
        await eventually(lambda: link.stats.late_confirmations == 1)
        assert "sent, outcome unknown" in caplog.text
        assert "late confirmation: the MCU reported dp16 bool=True" in caplog.text
        switch.close()
        threshold.close()
    finally:
        bridge.forwarding.set()
        await bridge.close()


@contextlib.asynccontextmanager
async def stalled_switch_rig(tmp_path: Path, pdu: bytes) -> AsyncIterator[Any]:
    """A 4 s motor twin behind a bridge that stalls as ``pdu`` (a switch write) is sent: the
    heartbeat loss takes the link DOWN inside the 5 s window; then the bridge forwards again."""
    soak = load_bench("soak_parts")
    path = soak.soak_map(tmp_path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("confirm_timeout_s: 1.5", "confirm_timeout_s: 5.0", 1))
    rig = await soak.start_rig(path, motor_time_s=4.0)
    try:
        assert rig.twin.switch_on
        client = await RawClient.open(rig.service.tcp_port)
        rig.bridge.forwarding.clear()
        client.send((1, 1, pdu))
        assert await client.reply() == (1, b"\x85\x0b")
        assert rig.link.state is not LinkState.READY  # the link went down, not the window
        rig.bridge.forwarding.set()  # the held command reaches the MCU now
        client.close()
        yield rig
    finally:
        await rig.stop()


async def test_a_switch_the_link_drops_in_its_window_is_sent_outcome_unknown_and_late_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with stalled_switch_rig(tmp_path, b"\x05\x00\x00\x00\x00") as rig:  # open it
        await eventually(lambda: rig.link.stats.late_confirmations == 1)
        assert not rig.twin.switch_on
        assert [dp for _, dp in rig.sent] == [DpValue.of_bool(16, False)]  # once
        assert "dp16 bool=False: sent, outcome unknown" in caplog.text
        assert re.search(  # the uniform line: it failed, it was not refused for a link down
            r"write failed: switch = 0 by \S+: sent, outcome unknown \(0x0B\)", caplog.text
        )
        assert "late confirmation: the MCU reported dp16 bool=False" in caplog.text


async def test_a_report_of_the_state_the_breaker_already_had_is_no_late_confirmation(
    tmp_path: Path,
) -> None:
    async with stalled_switch_rig(tmp_path, SWITCH_ON) as rig:  # it is on already
        await eventually(
            lambda: DpValue.of_bool(16, True) in [dp for _, dp in rig.twin.dp_commands]
        )
        await rig.link.wait_ready(READY_S)
        reports: list[DpValue] = []
        rig.link.add_report_listener(reports.append)
        await rig.link.query_all()  # the MCU answers after the command it got through the stall
        await eventually(lambda: DpValue.of_bool(16, True) in reports)
        assert rig.link.stats.late_confirmations == 0


# -- issue 12.3: never wedge the MCU with one frame --------------------------------------------
SIX_RECORD_MAP = DEFAULT_TEXT.replace(
    "      under_voltage: {id: 4, unit: V, min: 100, max: 220}\n",
    "      under_voltage: {id: 4, unit: V, min: 100, max: 220}\n"
    "      extra_5: {id: 5}\n      extra_6: {id: 6}\n      extra_7: {id: 7}\n",
) + "".join(
    f"  - {{name: extra_{rid}, address: {15 + rid}, source: alarm_set_2.extra_{rid}}}\n"
    for rid in (5, 6, 7)
)
SDK_TWIN = "sim://family_a?report_interval=0&motor_time=0.05&small_rx_buffer=1"


async def test_a_write_needing_an_oversized_frame_is_refused_and_the_mcu_stays_alive(
    tmp_path: Path, gateways: list[GatewayService], caplog: pytest.LogCaptureFixture
) -> None:
    service = await start(gateways, tmp_path, SDK_TWIN, SIX_RECORD_MAP)
    twin = running_twin(service.units[1].link.config.url)
    assert twin is not None
    client = await RawClient.open(service.tcp_port)
    client.send((1, 1, write_register(20, 1)))  # a 4th record: 4 + 16 data bytes
    assert await client.reply() == (1, write_register(20, 1))
    client.send((2, 1, write_register(21, 1)))  # a 5th: 24 data bytes, the SDK's limit
    assert await client.reply() == (2, write_register(21, 1))
    client.send((3, 1, write_register(22, 1)))  # a 6th would need 28: refused, never sent
    assert await client.reply() == (3, b"\x86\x04")
    assert "needs 28 data bytes in one frame, the MCU receives at most 24" in caplog.text
    assert re.search(  # the uniform line: refused, nothing sent (not "another value")
        r"write refused: extra_7 = 1 by \S+: frame too long for the MCU: not sent \(0x04\)",
        caplog.text,
    )
    client.send((4, 1, SWITCH_ON))
    assert await client.reply() == (4, SWITCH_ON)  # the MCU still hears
    assert not twin.wedged
    client.close()


async def test_changed_records_only_fit_the_mcu_buffer(
    tmp_path: Path, gateways: list[GatewayService]
) -> None:
    text = SIX_RECORD_MAP.replace(
        "    id: 18\n", "    id: 18\n    write_only_changed_records: true\n"
    )
    service = await start(gateways, tmp_path, SDK_TWIN, text)
    client = await RawClient.open(service.tcp_port)
    for tid, address in enumerate((20, 21, 22), 1):
        client.send((tid, 1, write_register(address, 7)))
        assert await client.reply() == (tid, write_register(address, 7))
    records = service.units[1].cache.snapshot().get(18)
    assert records is not None
    assert len(records.raw) == 24  # six records merged by the MCU
    client.close()


# -- issue 12.5: only addressed writes move the motor ------------------------------------------
async def test_tcp_unit_0_and_255_do_not_switch(
    tmp_path: Path, peer: TcpPeer, gateways: list[GatewayService], caplog: pytest.LogCaptureFixture
) -> None:
    service = await start(gateways, tmp_path, peer.url, switch_interval_s=0.0)
    client = await RawClient.open(service.tcp_port)
    for tid, unit in ((1, 0), (2, 255)):
        client.send((tid, unit, SWITCH_ON))
        assert await client.reply() == (tid, b"\x85\x01")
        client.send((tid + 10, unit, b"\x01\x00\x00\x00\x01"))  # reads through the alias stay
        assert await client.reply() == (tid + 10, b"\x01\x01\x00")
    client.send((3, 0, write_register(1, 260)))  # a write that moves no motor stays too
    assert await client.reply() == (3, write_register(1, 260))
    assert commands(peer.peer, 16) == []
    client.send((4, 1, SWITCH_ON))
    assert await client.reply() == (4, SWITCH_ON)
    assert commands(peer.peer, 16) == [DpValue.of_bool(16, True)]
    assert service.units[1].backend.stats.broadcast_writes_refused == 2
    for unit in (0, 255):
        assert re.search(
            rf"write refused: switch = 1 by \S+: broadcast \(unit {unit}\): motor writes need an"
            r" address; or set allow_broadcast_switch \(0x01\)",
            caplog.text,
        )
    client.close()


async def test_tcp_unit_0_and_255_write_nothing_when_they_reach_several_units(
    gateways: list[GatewayService], caplog: pytest.LogCaptureFixture
) -> None:
    """No single unit behind 0/255: every write is refused 0x01 (not 0x0B), reads are unknown."""
    devices = tuple(
        DeviceConfig(u, f"sim://family_a?seed={u}", "register_map.yaml") for u in (1, 2)
    )
    config = GatewayConfig(devices, TcpListener("127.0.0.1", 0), None, WritePolicy())
    service = GatewayService(config)
    await service.start()
    gateways.append(service)
    for unit in (1, 2):
        await service.units[unit].link.wait_ready(READY_S)
    client = await RawClient.open(service.tcp_port)
    client.send((1, 0, b"\x05\x00\x00\x00\x00"))  # switch off: it would move two motors
    assert await client.reply() == (1, b"\x85\x01")
    client.send((2, 255, write_register(0, 40)))  # moves no motor, but which unit's?
    assert await client.reply() == (2, b"\x86\x01")
    client.send((3, 0, b"\x01\x00\x00\x00\x01"))  # a read: no unit 0 here
    assert await client.reply() == (3, b"\x81\x0b")
    for unit in (1, 2):
        twin = running_twin(service.units[unit].link.config.url)
        assert twin is not None
        assert twin.switch_on  # never sent
        assert service.units[unit].backend.stats.broadcast_writes_refused == 1
    refused = [r.getMessage() for r in caplog.records if r.name == "gateway.logs"]
    assert len(refused) == 4  # each request once per unit, each line naming the unit's point
    assert [m.split(" by ")[0] for m in refused] == [
        "write refused: switch = 0",
        "write refused: switch = 0",
        "write refused: overcurrent_threshold = 40",
        "write refused: overcurrent_threshold = 40",
    ]
    assert refused[0].endswith(": unit 0 reaches 2 units here: writes need an address (0x01)")
    client.close()


async def test_tcp_unit_0_switches_when_allowed(
    tmp_path: Path, peer: TcpPeer, gateways: list[GatewayService]
) -> None:
    service = await start(gateways, tmp_path, peer.url, allow_broadcast_switch=True)
    client = await RawClient.open(service.tcp_port)
    client.send((1, 0, SWITCH_ON))
    assert await client.reply() == (1, SWITCH_ON)
    assert commands(peer.peer, 16) == [DpValue.of_bool(16, True)]
    client.close()


def rtu(unit: int, pdu: bytes) -> bytes:
    frame = bytes((unit,)) + pdu
    return frame + crc16(frame).to_bytes(2, "little")


async def test_rtu_broadcast_switch_is_ignored_and_counted(
    tmp_path: Path, peer: TcpPeer, gateways: list[GatewayService], caplog: pytest.LogCaptureFixture
) -> None:
    bus = PtyMaster()
    try:
        service = await start(gateways, tmp_path, peer.url, rtu=RtuListener(bus.path))
        read = rtu(1, b"\x01\x00\x00\x00\x01")
        await bus.first_answer(read, 6)
        bus.write(rtu(0, SWITCH_ON))
        assert await bus.first_answer(read, 6) == rtu(1, b"\x01\x01\x00")  # after the broadcast
        assert bus.pending() == b""  # a broadcast is never answered
        assert commands(peer.peer, 16) == []
        assert service.units[1].backend.stats.broadcast_writes_refused == 1
        assert "broadcast write 05 00 00 ff 00 ignored: it would switch 1 breaker(s)" in caplog.text
    finally:
        bus.close()


# -- issue 12.7: shutdown answers what it started ----------------------------------------------
@pytest.mark.parametrize("confirmed", [True, False])
async def test_stop_answers_a_write_in_flight_before_closing(
    tmp_path: Path, peer: TcpPeer, gateways: list[GatewayService], confirmed: bool
) -> None:
    if confirmed:
        peer.peer.report_delay_s = 0.5
    else:
        peer.peer.confirm_writes = False
    service = await start(gateways, tmp_path, peer.url, with_window(DEFAULT_TEXT, 1.5))
    client = await RawClient.open(service.tcp_port)
    client.send((1, 1, SWITCH_ON))
    await eventually(lambda: bool(commands(peer.peer, 16)))
    stopping = asyncio.ensure_future(service.stop())
    assert await client.reply() == (1, SWITCH_ON if confirmed else b"\x85\x0b")
    assert await client.closed()
    await stopping
    client.close()


# -- issue 12.3: the twin's receive path is the MCU SDK's --------------------------------------
class TwinLine:
    """A twin with the SDK's receive path, fed bytes directly; its answers are decoded."""

    def __init__(self) -> None:
        options = TwinOptions(
            report_interval_s=0, require_wifi_state=False, motor_time_s=0.01, small_rx_buffer=True
        )
        self.twin = McuTwin(options)
        self.decoder = FrameDecoder()
        self.replies: list[Frame] = []
        self.twin.connection_made(self._received)

    def _received(self, data: bytes) -> None:
        self.decoder.feed(data)
        self.replies.extend(self.decoder)

    def heard(self) -> list[DpValue]:
        return [dp for _, dp in self.twin.dp_commands]

    async def heartbeat_answered(self) -> bool:
        before = len(self.replies)
        self.twin.data_received(Frame(Command.HEARTBEAT).encode())
        try:
            await eventually(lambda: len(self.replies) > before, 1.0)
        except AssertionError:
            return False
        return True


def dp_command(dp: DpValue, version: int = 0x00) -> bytes:
    return Frame(Command.DP_COMMAND, dp.encode(), version).encode()


@pytest.mark.parametrize("size", [20, 21])  # 24 data bytes: taken; 25: wedged for good
async def test_sdk_receive_buffer_takes_24_data_bytes_and_wedges_on_25(size: int) -> None:
    line = TwinLine()
    line.twin.data_received(dp_command(DpValue.of_raw(18, bytes(size))))
    assert line.twin.wedged is (size == 21)
    assert await line.heartbeat_answered() is (size == 20)


async def test_sdk_receive_buffer_skips_32_data_bytes_and_hears_the_next_frame() -> None:
    line = TwinLine()
    line.twin.data_received(dp_command(DpValue.of_raw(18, bytes(28))))  # 32 data bytes
    assert not line.twin.wedged
    assert line.heard() == []  # skipped, as the SDK does
    assert await line.heartbeat_answered()
    line.twin.data_received(dp_command(DpValue.of_bool(16, True)))
    assert line.heard() == [DpValue.of_bool(16, True)]


async def test_sdk_receive_buffer_skips_another_version_before_judging_the_length() -> None:
    line = TwinLine()
    line.twin.data_received(dp_command(DpValue.of_raw(18, bytes(21)), version=0x03))
    assert not line.twin.wedged  # a 25-byte frame, but the version byte is checked first
    assert line.heard() == []
    line.twin.data_received(dp_command(DpValue.of_bool(16, True))[:5])  # and split frames
    line.twin.data_received(dp_command(DpValue.of_bool(16, True))[5:])
    assert line.heard() == [DpValue.of_bool(16, True)]


async def test_sigterm_answers_a_switch_write_in_flight(tmp_path: Path) -> None:
    """The real process: SIGTERM while the motor runs; the client still gets its answer."""
    port = free_port()
    twin = "sim://family_a?report_interval=0&motor_time=2.5"  # reports once the motor is done
    with background("run", "--link", twin, "--tcp", f"127.0.0.1:{port}") as run:
        client, closed = await connect_when_served(port)
        toggle = SWITCH_ON if closed == 0 else b"\x05\x00\x00\x00\x00"
        client.send((1, 1, toggle))
        await asyncio.sleep(0.5)  # the motor is running: the write is in flight
        run.proc.send_signal(signal.SIGTERM)
        assert await client.reply() == (1, toggle)  # confirmed inside its 5 s window
        assert await client.closed()
        _, err = run.proc.communicate(timeout=READY_S)  # no second signal: it is stopping
    assert run.proc.returncode == 0, err
    assert b"waiting up to" in err
    client.close()


async def connect_when_served(port: int) -> tuple[RawClient, int]:
    """A client once the gateway answers reads (its link READY), and the switch coil."""
    for _ in range(200):
        try:
            client = await RawClient.open(port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        client.send((9, 1, b"\x01\x00\x00\x00\x01"))
        answer = (await client.reply())[1]
        if answer[0] == 1:
            return client, answer[2]
        client.close()
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway never served")


def test_the_map_checks_keepalives_against_max_frame_data(tmp_path: Path) -> None:
    keepalive = "  keepalive:\n    - {datapoint: total_energy, value: 1, interval_s: 60}\n"
    tuya = "tuya:\n  max_frame_data: 6\n" + keepalive
    path = tmp_path / "map.yaml"
    path.write_text(DEFAULT_TEXT.replace("tuya:\n", tuya, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tuya.keepalive\[0\].value: needs 8 data bytes, over 6"):
        load_map(path)
