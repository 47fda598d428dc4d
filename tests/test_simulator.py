"""The MCU twin, driven by frames from gateway.tuya.protocol over real transports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import serial_asyncio_fast
from waiting import eventually

from gateway.errors import ConfigError
from gateway.tuya.handshake import LinkTimings
from gateway.tuya.layouts import AlarmRecord, decode_records, encode_records
from gateway.tuya.link import LinkConfig, LinkState, McuLink
from gateway.tuya.protocol import (
    Command,
    DpType,
    DpValue,
    Frame,
    FrameDecoder,
    decode_dps,
    encode_dps,
)
from gateway.twin import McuTwin, TwinOptions, open_sim_link, parse_sim_url, running_twin
from gateway.twin.endpoints import PtyEndpoint, open_pty_endpoint, serve_tcp
from gateway.twin.families import FAMILY_A, FAMILY_B, Protection

TIMEOUT_S = 5.0
FAST = "report_interval=0&motor_time=0.05&noise=0"

VECTOR = {
    "heartbeat_first": "55AA030000010003",
    "heartbeat_later": "55AA030000010104",
    "product_info": "55AA0301002A7B2270223A226C696834766A656F79616F346A656B75222C2276223A"
    "22322E302E30222C226D223A307D41",
    "working_mode": "55AA0302000004",
    "wifi_ack": "55AA0303000005",
    "time_request": "55AA031C00001E",
    "dp1": "55AA03070008010200040000000119",
    "dp9": "55AA0307000509050001001D",
    "dp17": "55AA03070008110000040400001E48",
    "dp18": "55AA030700101200000C0101003F030100FA040100AA25",
    "phase_a_energy": "55AA03070014060000080916000099000023010200040000000310",
}


class Collector(asyncio.Protocol):
    """The gateway's end in these tests: decodes what the twin sends."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []
        self.chunks: list[bytes] = []
        self.arrivals: list[float] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.decoder.feed(data)
        for frame in self.decoder:
            self.frames.append(frame)
            self.arrivals.append(asyncio.get_running_loop().time())

    def send(self, frame: Frame) -> None:
        assert self.transport is not None
        self.transport.write(frame.encode())

    def of(self, command: int) -> list[Frame]:
        return [f for f in self.frames if f.command == command]

    def reports(self, dpid: int) -> list[DpValue]:
        found = []
        for frame in self.of(Command.DP_REPORT):
            found += [dp for dp in decode_dps(frame.data).values if dp.dpid == dpid]
        return found

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        await eventually(predicate, "frames from the twin", TIMEOUT_S)

    async def request(self, frame: Frame, command: int | None = None) -> Frame:
        """Send ``frame`` and wait for the next frame with ``command`` (default: the same)."""
        wanted = frame.command if command is None else command
        before = len(self.of(wanted))
        self.send(frame)
        await self.wait_for(lambda: len(self.of(wanted)) > before)
        return self.of(wanted)[before]

    async def sync(self) -> None:
        """Everything sent before this has been handled by the twin (it answers in order)."""
        await self.request(Frame(Command.HEARTBEAT))


Pair = tuple[Collector, McuTwin]


@contextlib.asynccontextmanager
async def sim_pair(query: str = FAST, variant: str = "family_a") -> AsyncIterator[Pair]:
    collector = Collector()
    transport, twin = await open_sim_link(f"sim://{variant}?{query}", collector)
    try:
        yield collector, twin
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def tcp_pair(query: str = FAST, variant: str = "family_a") -> AsyncIterator[Pair]:
    twins: list[McuTwin] = []
    options = parse_sim_url(f"sim://{variant}?{query}")

    def factory() -> McuTwin:
        twins.append(_twin(options))
        return twins[-1]

    server = await serve_tcp("127.0.0.1", 0, factory)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_connection(Collector, "127.0.0.1", port)
    try:
        await collector.wait_for(lambda: bool(twins))  # built when the server accepts
        yield collector, twins[0]
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def pty_pair(query: str = FAST, variant: str = "family_a") -> AsyncIterator[Pair]:
    twin = _twin(parse_sim_url(f"sim://{variant}?{query}"))
    endpoint = open_pty_endpoint(twin)
    loop = asyncio.get_running_loop()
    collector = Collector()
    transport, _ = await serial_asyncio_fast.create_serial_connection(
        loop, lambda: collector, endpoint.path, baudrate=9600
    )
    try:
        await collector.wait_for(lambda: collector.transport is not None)
        yield collector, twin
    finally:
        transport.close()
        await asyncio.sleep(0)
        endpoint.close()


def _twin(options: TwinOptions) -> McuTwin:
    return McuTwin(options)


PAIRS = {"sim": sim_pair, "tcp": tcp_pair, "pty": pty_pair}


async def handshake(collector: Collector) -> None:
    await collector.request(Frame(Command.HEARTBEAT))
    await collector.request(Frame(Command.WIFI_STATE, b"\x04"))


def dp_command(dp: DpValue) -> Frame:
    return Frame(Command.DP_COMMAND, encode_dps([dp]))


# -- handshake ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(PAIRS))
async def test_handshake_replies_match_the_vectors(kind: str) -> None:
    async with PAIRS[kind](f"{FAST}&version=2.0.0") as (gw, twin):
        first = await gw.request(Frame(Command.HEARTBEAT))
        later = await gw.request(Frame(Command.HEARTBEAT))
        assert first.encode().hex().upper() == VECTOR["heartbeat_first"]
        assert later.encode().hex().upper() == VECTOR["heartbeat_later"]
        info = await gw.request(Frame(Command.PRODUCT_INFO))
        assert info.encode().hex().upper() == VECTOR["product_info"]
        mode = await gw.request(Frame(Command.WORKING_MODE))
        assert mode.encode().hex().upper() == VECTOR["working_mode"]
        ack = await gw.request(Frame(Command.WIFI_STATE, b"\x04"))
        assert ack.encode().hex().upper() == VECTOR["wifi_ack"]
        await gw.wait_for(lambda: bool(gw.of(Command.LOCAL_TIME)))
        asked = gw.of(Command.LOCAL_TIME)[0]
        assert asked.encode().hex().upper() == VECTOR["time_request"]
        assert twin.wifi_state == 4
        gw.send(Frame(Command.DP_QUERY))
        await gw.wait_for(lambda: len(gw.of(Command.DP_REPORT)) == len(FAMILY_A.dps))
        reports = gw.of(Command.DP_REPORT)
        assert [decode_dps(f.data).values[0].dpid for f in reports] == [
            dp.dpid for dp in FAMILY_A.dps
        ]
        assert all(len(decode_dps(f.data).values) == 1 for f in reports)
        hexes = {f.encode().hex().upper() for f in reports}
        assert {VECTOR[k] for k in ("dp1", "dp9", "dp17", "dp18")} <= hexes


async def test_answer_to_the_time_request_is_recorded() -> None:
    async with sim_pair() as (gw, twin):
        await handshake(gw)
        gw.send(Frame(Command.LOCAL_TIME, bytes.fromhex("01180B14090D1403")))
        await gw.sync()
        assert twin.heard.local_time is not None
        assert (twin.heard.local_time.year, twin.heard.local_time.minute) == (2024, 13)


async def test_query_all_family_b_reports_each_dp_once() -> None:
    async with sim_pair(variant="family_b") as (gw, _twin_b):
        await handshake(gw)
        gw.send(Frame(Command.DP_QUERY))
        await gw.wait_for(lambda: len(gw.of(Command.DP_REPORT)) == len(FAMILY_B.dps))
        dpids = [decode_dps(f.data).values[0].dpid for f in gw.of(Command.DP_REPORT)]
        assert dpids == [dp.dpid for dp in FAMILY_B.dps]
        info = await gw.request(Frame(Command.PRODUCT_INFO))
        assert FAMILY_B.product_key.encode() in info.data


async def test_frames_with_another_version_byte_are_dropped() -> None:
    async with sim_pair() as (gw, twin):
        gw.send(Frame(Command.PRODUCT_INFO, version=0x03))
        await gw.sync()
        assert not gw.of(Command.PRODUCT_INFO)
        assert twin.received[0].version == 0x03


# -- DP commands -------------------------------------------------------------------------------
async def test_dp_commands_are_ignored_until_wifi_state_4() -> None:
    async with sim_pair() as (gw, twin):
        gw.send(dp_command(DpValue.of_bool(16, False)))
        await gw.sync()
        assert twin.commands_ignored == 1
        assert twin.dp_commands[0][1] == DpValue.of_bool(16, False)
        assert not twin.motor_moving
        assert twin.switch_on
        assert not gw.of(Command.DP_REPORT)
        await gw.request(Frame(Command.WIFI_STATE, b"\x03"))
        gw.send(dp_command(DpValue.of_bool(11, True)))
        await gw.sync()
        assert twin.commands_ignored == 2
        await gw.request(Frame(Command.WIFI_STATE, b"\x04"))
        await gw.request(dp_command(DpValue.of_bool(11, True)), Command.DP_REPORT)
        assert gw.reports(11) == [DpValue.of_bool(11, True)]


async def test_wifi_state_check_can_be_switched_off() -> None:
    async with sim_pair(f"{FAST}&require_wifi_state=0") as (gw, twin):
        await gw.request(dp_command(DpValue.of_bool(11, True)), Command.DP_REPORT)
        assert gw.reports(11) == [DpValue.of_bool(11, True)]
        assert twin.wifi_state is None


@pytest.mark.parametrize("kind", ["sim", "tcp"])
async def test_switch_moves_only_after_the_motor(kind: str) -> None:
    motor_s = 0.2
    async with PAIRS[kind](f"report_interval=0&motor_time={motor_s}") as (gw, twin):
        await handshake(gw)
        sent_at = asyncio.get_running_loop().time()
        report = await gw.request(dp_command(DpValue.of_bool(16, False)), Command.DP_REPORT)
        arrived = gw.arrivals[gw.frames.index(report)]
        assert decode_dps(report.data).values == (DpValue.of_bool(16, False),)
        assert arrived - sent_at >= motor_s - 0.01  # a lower bound that call_later guarantees
        assert not twin.switch_on
        again = await gw.request(dp_command(DpValue.of_bool(16, False)), Command.DP_REPORT)
        assert decode_dps(again.data).values == (DpValue.of_bool(16, False),)


async def test_unknown_read_only_and_mistyped_writes_get_no_report() -> None:
    async with sim_pair() as (gw, twin):
        await handshake(gw)
        for dp in (DpValue.of_value(99, 1), DpValue.of_value(1, 0), DpValue.of_value(16, 1)):
            gw.send(dp_command(dp))
        await gw.sync()
        assert twin.commands_ignored == 3
        assert not gw.of(Command.DP_REPORT)


# -- protections and thresholds ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "bit"),
    [
        (lambda t: t.set_load(70.0), 8),
        (lambda t: t.set_voltage(260.0), 10),
        (lambda t: t.set_voltage(160.0), 11),
    ],
    ids=["over_current", "over_voltage", "under_voltage"],
)
async def test_family_a_trips(change: Callable[[McuTwin], None], bit: int) -> None:
    async with sim_pair() as (gw, twin):
        await handshake(gw)
        change(twin)
        await gw.wait_for(lambda: bool(gw.reports(9)))
        assert gw.reports(16) == [DpValue.of_bool(16, False)]
        assert gw.reports(9)[0].value == 1 << bit
        assert gw.reports(9)[0].dp_type is DpType.BITMAP
        assert not twin.switch_on
        assert twin.fault_bits == 1 << bit


async def test_family_a_leakage_trips_once_enabled_through_alarm_set_1() -> None:
    async with sim_pair() as (gw, twin):
        await handshake(gw)
        twin.set_leakage(40.0)
        await gw.sync()
        assert twin.switch_on  # the vectors' dp17 has leakage protection off
        twin.set_leakage(0.0)
        records = encode_records([AlarmRecord(4, True, 30), AlarmRecord(7, True, 5)])
        await gw.request(dp_command(DpValue.of_raw(17, records)), Command.DP_REPORT)
        assert gw.reports(17)[0].payload == records  # the unknown id 7 is kept
        assert twin.thresholds[Protection.LEAKAGE].enabled
        twin.set_leakage(31.0)
        await gw.wait_for(lambda: bool(gw.reports(9)))
        assert gw.reports(9)[0].value == 1 << 3
        assert not twin.switch_on


async def test_alarm_set_2_write_merges_records_and_moves_the_limit() -> None:
    async with sim_pair() as (gw, twin):
        await handshake(gw)
        written = encode_records([AlarmRecord(1, True, 20), AlarmRecord(9, False, 77)])
        await gw.request(dp_command(DpValue.of_raw(18, written)), Command.DP_REPORT)
        stored, _ = decode_records(gw.reports(18)[0].payload)
        assert stored == (
            AlarmRecord(1, True, 20),
            AlarmRecord(3, True, 250),
            AlarmRecord(4, True, 170),
            AlarmRecord(9, False, 77),
        )
        assert twin.thresholds[Protection.OVER_CURRENT].limit == 20
        twin.set_load(21.0)
        await gw.wait_for(lambda: bool(gw.reports(9)))
        assert twin.fault_bits == 1 << 8
        gw.send(dp_command(DpValue.of_raw(18, b"\x01\x01\x00")))  # not a multiple of 4
        await gw.sync()
        assert twin.commands_ignored == 1


async def test_closing_clears_faults_and_retrips_onto_an_overload() -> None:
    async with sim_pair() as (gw, twin):
        await handshake(gw)
        twin.trip(0)
        await gw.wait_for(lambda: bool(gw.reports(9)))
        assert gw.reports(9)[0].value == 1
        twin.flip_lever(True)
        await gw.wait_for(lambda: len(gw.reports(9)) == 2)
        assert gw.reports(9)[1].value == 0
        assert twin.switch_on
        twin.flip_lever(False)
        twin.set_load(100.0)  # open: nothing flows, nothing trips
        assert twin.fault_bits == 0
        twin.flip_lever(True)
        await gw.wait_for(lambda: len(gw.reports(9)) == 3)
        assert gw.reports(9)[2].value == 1 << 8
        assert [dp.value for dp in gw.reports(16)][-2:] == [True, False]
        assert not twin.switch_on


async def test_family_b_trip_alarm_and_threshold_dps() -> None:
    async with sim_pair(variant="family_b") as (gw, twin):
        await handshake(gw)
        await gw.request(dp_command(DpValue.of_value(114, 20)), Command.DP_REPORT)
        assert gw.reports(114) == [DpValue.of_value(114, 20)]
        assert twin.thresholds[Protection.OVER_CURRENT].limit == 20
        gw.send(dp_command(DpValue.of_value(114, 100)))  # outside 1..63
        await gw.sync()
        assert twin.commands_ignored == 1
        twin.set_temperature(90.0)  # temperature action is "alarm": report, stay closed
        await gw.wait_for(lambda: bool(gw.reports(110)))
        assert gw.reports(110)[0].value == FAMILY_B.spec(110).labels.index(  # type: ignore[union-attr]
            "alarm_over_temperature"
        )
        assert twin.switch_on
        twin.set_load(25.0)
        await gw.wait_for(lambda: bool(gw.reports(16)))
        assert gw.reports(16) == [DpValue.of_bool(16, False)]
        assert gw.reports(110)[-1].value == 1  # trip_over_current
        assert twin.fault_bits & (1 << 8)


async def test_family_b_auto_reclose_after_a_voltage_trip() -> None:
    async with sim_pair(variant="family_b") as (gw, twin):
        await handshake(gw)
        await gw.request(dp_command(DpValue.of_bool(112, True)), Command.DP_REPORT)
        twin.set_voltage(300.0)
        await gw.wait_for(lambda: bool(gw.reports(16)))
        assert not twin.switch_on
        twin.set_voltage(230.0)
        await gw.wait_for(lambda: len(gw.reports(16)) == 2)
        assert gw.reports(16)[1] == DpValue.of_bool(16, True)


async def test_family_b_online_state_turns_on_fast_reporting() -> None:
    async with sim_pair(variant="family_b") as (gw, twin):
        await handshake(gw)
        assert not twin.fast_reporting
        await gw.request(dp_command(DpValue.of_enum(109, 1)), Command.DP_REPORT)
        assert gw.reports(109) == [DpValue.of_enum(109, 1)]
        assert twin.fast_reporting
        await gw.wait_for(lambda: bool(gw.reports(6)))  # report_interval=0 is off otherwise
        assert gw.reports(131)
        await gw.request(dp_command(DpValue.of_enum(109, 0)), Command.DP_REPORT)
        assert not twin.fast_reporting
        gw.send(dp_command(DpValue.of_enum(109, 2)))  # not one of the two labels
        await gw.sync()
        assert twin.commands_ignored == 1


# -- reporting and physics ---------------------------------------------------------------------
async def test_periodic_report_reproduces_the_vector_frame() -> None:
    query = "report_interval=0.05&noise=0&voltage=232.6&current=0.153"
    async with sim_pair(query) as (gw, twin):
        twin.set_energy(0.03)
        await handshake(gw)
        await gw.wait_for(lambda: bool(gw.reports(6)))
        frame = next(f for f in gw.of(Command.DP_REPORT) if decode_dps(f.data).values[0].dpid == 6)
        assert frame.encode().hex().upper() == VECTOR["phase_a_energy"]
        await gw.wait_for(lambda: bool(gw.reports(15)))


async def test_no_periodic_reports_before_wifi_state_4() -> None:
    async with sim_pair("report_interval=0.02") as (gw, twin):
        await gw.wait_for(lambda: twin.report_ticks >= 3)
        await gw.sync()
        assert not gw.of(Command.DP_REPORT)
        await gw.request(Frame(Command.WIFI_STATE, b"\x04"))
        await gw.wait_for(lambda: bool(gw.reports(6)))


async def test_energy_integrates_only_while_closed() -> None:
    async with sim_pair() as (gw, twin):
        twin.set_load(60.0)
        start = twin.energy_kwh
        await gw.wait_for(lambda: twin.energy_kwh > start)
        twin.flip_lever(False)
        opened = twin.energy_kwh
        await gw.sync()
        assert twin.energy_kwh == opened
        phase = twin.dp_value(6)
        assert phase is not None
        assert phase.payload[2:5] == b"\x00\x00\x00"  # no current through an open breaker


async def test_measurement_noise_is_seeded() -> None:
    def readings(seed: int) -> list[bytes]:
        twin = McuTwin(TwinOptions(seed=seed))
        return [twin.dp_value(6).payload for _ in range(5)]  # type: ignore[union-attr]

    assert readings(3) == readings(3)
    assert readings(3) != readings(4)


# -- fault injection ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sim", "tcp"])
async def test_garbage_between_frames(kind: str) -> None:
    async with PAIRS[kind]() as (gw, twin):
        twin.faults.garbage = True
        await gw.sync()
        await gw.sync()
        assert gw.decoder.bytes_skipped == twin.output.garbage_bytes_sent > 0


@pytest.mark.parametrize("kind", ["sim", "tcp"])
async def test_bad_checksums_are_counted_by_the_decoder(kind: str) -> None:
    async with PAIRS[kind]() as (gw, twin):
        twin.faults.bad_checksum = 1.0
        gw.send(Frame(Command.HEARTBEAT))
        gw.send(Frame(Command.PRODUCT_INFO))
        await gw.wait_for(lambda: gw.decoder.checksum_errors == 2)
        twin.faults.bad_checksum = 0.0
        await gw.sync()
        assert twin.output.checksums_corrupted == 2


async def test_dropped_replies_never_arrive() -> None:
    async with sim_pair() as (gw, twin):
        twin.faults.drop_replies = 1.0
        gw.send(Frame(Command.PRODUCT_INFO))
        await gw.wait_for(lambda: twin.output.frames_dropped == 1)
        twin.faults.drop_replies = 0.0
        await gw.sync()
        assert not gw.of(Command.PRODUCT_INFO)
        assert len(twin.received) == 2


async def test_delayed_replies() -> None:
    async with sim_pair() as (gw, twin):
        twin.faults.delay_s = 0.2
        sent_at = asyncio.get_running_loop().time()
        reply = await gw.request(Frame(Command.HEARTBEAT))
        assert gw.arrivals[gw.frames.index(reply)] - sent_at >= 0.19


@pytest.mark.parametrize("kind", ["sim", "pty"])
async def test_reboot_restarts_the_handshake(kind: str) -> None:
    async with PAIRS[kind]() as (gw, twin):
        await handshake(gw)
        twin.reboot()
        assert twin.wifi_state is None
        again = await gw.request(Frame(Command.HEARTBEAT))
        assert again.data == b"\x00"
        gw.send(dp_command(DpValue.of_bool(11, True)))
        await gw.sync()
        assert twin.commands_ignored == 1
        await gw.request(Frame(Command.WIFI_STATE, b"\x04"))
        await gw.wait_for(lambda: len(gw.of(Command.LOCAL_TIME)) == 2)  # asked again


async def test_silence() -> None:
    async with sim_pair() as (gw, twin):
        await handshake(gw)
        twin.faults.silent = True
        gw.send(Frame(Command.HEARTBEAT))
        gw.send(dp_command(DpValue.of_bool(11, True)))
        await gw.wait_for(lambda: len(twin.received) == 4)
        twin.faults.silent = False
        reply = await gw.request(Frame(Command.HEARTBEAT))
        assert reply.data == b"\x01"  # silence is not a reboot
        assert len(gw.of(Command.HEARTBEAT)) == 2
        assert not gw.reports(11)


async def test_split_bytes() -> None:
    async with sim_pair() as (gw, twin):
        twin.faults.split_bytes = True
        gw.send(Frame(Command.HEARTBEAT))
        info = await gw.request(Frame(Command.PRODUCT_INFO))
        assert gw.of(Command.HEARTBEAT)[0].data == b"\x00"
        assert info.data.startswith(b'{"p":"lih4vjeoyao4jeku"')
        assert len(gw.chunks) == len(VECTOR["heartbeat_first"]) // 2 + len(info.encode())
        assert {len(chunk) for chunk in gw.chunks} == {1}


async def test_small_receive_buffer_wedges_on_25_to_31_data_bytes() -> None:
    async with sim_pair() as (gw, twin):
        twin.faults.small_rx_buffer = True
        await handshake(gw)
        gw.send(dp_command(DpValue.of_raw(18, bytes(20))))  # 24 data bytes: fine
        await gw.sync()
        assert not twin.wedged
        gw.send(dp_command(DpValue.of_raw(18, bytes(24))))  # 28 data bytes
        gw.send(Frame(Command.HEARTBEAT))
        await gw.wait_for(lambda: len(twin.received) == 6)
        assert twin.wedged
        assert len(gw.of(Command.HEARTBEAT)) == 2
        twin.reboot()
        assert (await gw.request(Frame(Command.HEARTBEAT))).data == b"\x00"


async def test_mcu_requests_match_the_vectors_and_answers_are_recorded() -> None:
    async with sim_pair() as (gw, twin):
        twin.request(Command.RSSI)
        twin.request(Command.NETWORK_STATUS)
        twin.request(Command.EXTENDED_SERVICE, b"\x04")
        await gw.wait_for(lambda: len(gw.frames) == 3)
        assert [f.encode().hex().upper() for f in gw.frames] == [
            "55AA0324000026",
            "55AA032B00002D",
            "55AA03340001043B",
        ]
        gw.send(Frame(Command.RSSI, b"\xc9"))
        gw.send(Frame(Command.NETWORK_STATUS, b"\x04"))
        await gw.sync()
        assert (twin.heard.rssi_dbm, twin.heard.network_status) == (-55, 4)


# -- URLs --------------------------------------------------------------------------------------
def test_sim_url_options() -> None:
    opts = parse_sim_url("sim://family_b?report_interval=1&seed=3&voltage=240&garbage=yes")
    assert opts == TwinOptions(
        variant="family_b", report_interval_s=1.0, seed=3, voltage_v=240.0, garbage=True
    )
    assert parse_sim_url("sim://") == TwinOptions()


def test_sim_url_errors_are_listed_together() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sim_url("sim://family_z?bogus=1&seed=x")
    assert len(caught.value.errors) == 3


async def test_one_twin_shared_by_tcp_connections_survives_a_closed_one() -> None:
    lost: list[object] = []

    class Twin(McuTwin):
        def connection_lost(self, send: Callable[[bytes], None] | None = None) -> None:
            lost.append(send)
            super().connection_lost(send)

    twin = Twin(TwinOptions(report_interval_s=0))
    server = await serve_tcp("127.0.0.1", 0, lambda: twin)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        old, old_gw = await loop.create_connection(Collector, "127.0.0.1", port)
        await old_gw.sync()
        new, new_gw = await loop.create_connection(Collector, "127.0.0.1", port)
        await new_gw.sync()
        old.close()
        await new_gw.wait_for(lambda: bool(lost))  # the server saw the old one go
        assert twin.output.connected
        await new_gw.sync()
        assert [f.data for f in new_gw.of(Command.HEARTBEAT)] == [b"\x01", b"\x01"]
        new.close()
    finally:
        server.close()
        await server.wait_closed()


# -- a real McuLink against the twin ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["sim", "tcp", "pty"])
async def test_mcu_link_handshake_against_the_twin(kind: str) -> None:
    twin = McuTwin(TwinOptions(report_interval_s=0, motor_time_s=0.05, noise=0))
    server: asyncio.Server | None = None
    endpoint: PtyEndpoint | None = None
    if kind == "sim":
        url = "sim://family_a?report_interval=0&motor_time=0.05"
    elif kind == "tcp":
        server = await serve_tcp("127.0.0.1", 0, lambda: twin)
        url = f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    else:
        endpoint = open_pty_endpoint(twin)
        url = endpoint.path
    timings = LinkTimings(probe_interval_s=0.2, notice_wait_s=0.05, query_quiet_s=0.1)
    config = LinkConfig(url=url, heartbeat_interval_s=0.5, heartbeat_timeout_s=1.0, timings=timings)
    link = McuLink(config)
    await link.start()
    try:
        await link.wait_ready(TIMEOUT_S)
        twin = running_twin(url) or twin
        assert kind != "sim" or running_twin(url) is not None
        assert link.product_info is not None
        assert link.product_info.product_key == FAMILY_A.product_key
        assert twin.wifi_state == 4
        assert any(f.command == Command.DP_QUERY for f in twin.received)
        confirmed = await link.write_dp(DpValue.of_bool(16, False))
        assert confirmed == DpValue.of_bool(16, False)
        assert not twin.switch_on
        assert twin.heard.local_time is not None  # the link answered the twin's 0x1C
        ready_again = asyncio.Event()

        def on_state(state: LinkState) -> None:
            if state is LinkState.READY:
                ready_again.set()

        link.add_state_listener(on_state)
        twin.reboot()  # the next heartbeat answers 0x00: the link must redo the handshake
        await asyncio.wait_for(ready_again.wait(), TIMEOUT_S)
        assert link.stats.mcu_reboots == 1
        assert twin.wifi_state == 4
    finally:
        await link.stop()
        if server is not None:
            server.close()
            await server.wait_closed()
        if endpoint is not None:
            endpoint.close()
