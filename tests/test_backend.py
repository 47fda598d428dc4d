"""UnitBackend against a real DatapointCache; writes through the real link and write gate to
an MCU double (tests/mcu_peer.ScriptedMcu) over a real TCP socket."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import fast_config
from mcu_peer import ScriptedMcu, TcpPeer, eventually

from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.load import load_map
from gateway.regmap.specs import RegisterMap
from gateway.tuya.link import LinkConfig, LinkState, McuLink
from gateway.tuya.protocol import Command, DpType, DpValue, FrameDecoder, decode_dps
from gateway.tuya.writes import WriteGate
from gateway.unit.backend import StatusValues, UnitBackend
from gateway.unit.cache import DatapointCache
from gateway.unit.dp_codecs import AlarmRecord, decode_records

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAP = load_map(ROOT / "register_map.yaml")
DERIVED_MAP = load_map(Path(__file__).resolve().parent / "maps" / "derived.yaml")

# DP reports from shared/vectors/tuyamcu_frames.md
VECTORS = (
    "55AA03070014060000080916000099000023010200040000000310",  # dp6 phase_a, dp1 energy 3
    "55AA030700101200000C0101003F030100FA040100AA25",  # dp18 alarm_set_2
    "55AA03070008110000040400001E48",  # dp17 alarm_set_1
    "55AA0307000509050001001D",  # dp9 fault 0
)
IR = Table.INPUT_REGISTER
HR = Table.HOLDING_REGISTER
NO_RESPONSE = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _feed(cache: DatapointCache, *frames: str) -> None:
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex("".join(frames)))
    for frame in decoder:
        for dp in decode_dps(frame.data).values:
            cache.update(dp)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> DatapointCache:
    cache = DatapointCache(clock)
    cache.set_link_state(LinkState.READY)
    _feed(cache, *VECTORS)
    cache.update(DpValue.of_value(15, 12))
    cache.update(DpValue.of_bool(16, True))
    cache.update(DpValue.of_bool(11, False))
    cache.update(DpValue.of_string(19, "TWIN-A-000001"))
    return cache


STATUS: StatusValues = {
    "frames_received": 70000,
    "product_key": "lih4vjeoyao4jeku",
    "mcu_reboots": 2,
}


def idle_gate() -> WriteGate:
    """The write gate of a link that never started: every write is refused, nothing sent."""
    return McuLink(LinkConfig("socket://127.0.0.1:9")).writes


@pytest.fixture
def backend(cache: DatapointCache) -> UnitBackend:
    """A unit for reads: its link never starts."""
    return UnitBackend(DEFAULT_MAP, cache, idle_gate(), lambda: STATUS, unit_id=1)


def _float32(words: list[int] | ExceptionCode) -> float:
    assert isinstance(words, list)
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def test_reads_the_vectors_as_registers(backend: UnitBackend, clock: Clock) -> None:
    clock.now += 4
    # voltage 232.6 V ×10, 153 mA, 35 W (u32), 0.03 kWh ×100 (u32), 12 mA, fault 0 (u32), age 4 s
    assert backend.read(IR, 0, 10) == [2326, 153, 0, 35, 0, 3, 12, 0, 0, 4]
    assert _float32(backend.read(IR, 100, 2)) == pytest.approx(232.6)
    assert _float32(backend.read(IR, 102, 2)) == pytest.approx(0.153)
    assert _float32(backend.read(IR, 110, 2)) == pytest.approx(232.6 * 0.153)
    assert _float32(backend.read(IR, 112, 2)) == pytest.approx(35 / (232.6 * 0.153))


def test_string_and_status_registers(backend: UnitBackend) -> None:
    words = backend.read(IR, 10, 8)
    assert isinstance(words, list)
    assert struct.pack(">8H", *words) == b"TWIN-A-000001\x00\x00\x00"
    assert backend.read(IR, 200, 2) == [3, 2]  # READY, two reboots
    assert backend.read(IR, 202, 2) == [1, 70000 - 65536]
    assert backend.read(IR, 204, 2) == [0, 0]  # frames_sent unknown: stale policy zero
    key = backend.read(IR, 215, 8)
    assert isinstance(key, list)
    assert struct.pack(">8H", *key) == b"lih4vjeoyao4jeku"


def test_request_counters_are_live(backend: UnitBackend) -> None:
    backend.count_request(None)
    backend.count_request(ExceptionCode.ILLEGAL_DATA_ADDRESS)
    backend.count_request(None)
    assert backend.read(IR, 208, 4) == [0, 3, 0, 1]


def test_bits(backend: UnitBackend, cache: DatapointCache) -> None:
    assert backend.read(Table.COIL, 0, 2) == [1, 0]
    assert backend.read(Table.DISCRETE_INPUT, 0, 18) == [0] * 17 + [1]
    cache.update(DpValue.of_bitmap(9, (1 << 3) | (1 << 16), 4))
    bits = backend.read(Table.DISCRETE_INPUT, 0, 18)
    assert bits == [0, 0, 0, 1] + [0] * 12 + [1, 1]
    assert backend.read(IR, 7, 2) == [1, 8]


def test_unmapped_addresses_and_split_points(backend: UnitBackend) -> None:
    assert backend.read(IR, 50, 1) == ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert backend.read(IR, 16, 3) == ExceptionCode.ILLEGAL_DATA_ADDRESS  # runs into the gap
    assert backend.read(Table.COIL, 2, 1) == ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert backend.read(IR, 3, 2) == [35, 0]  # low word of power, high word of energy
    assert backend.read(IR, 5, 1) == [3]
    assert backend.read(IR, 0, 0) == ExceptionCode.ILLEGAL_DATA_VALUE


def test_link_down_makes_datapoints_stale(backend: UnitBackend, cache: DatapointCache) -> None:
    cache.set_link_state(LinkState.DOWN)
    assert backend.read(IR, 0, 1) == NO_RESPONSE
    assert backend.read(Table.COIL, 0, 1) == NO_RESPONSE
    assert backend.read(Table.DISCRETE_INPUT, 17, 1) == [0]  # link_online is never stale
    words = backend.read(IR, 10, 8)  # breaker_id: stale policy last
    assert isinstance(words, list)
    assert words[0] == 0x5457
    assert backend.read(IR, 9, 1) == [0]  # data age is status: served while the link is down


def test_max_age(backend: UnitBackend, clock: Clock) -> None:
    clock.now += 89
    assert backend.read(IR, 0, 1) == [2326]
    clock.now += 2
    assert backend.read(IR, 0, 1) == NO_RESPONSE
    assert backend.read(Table.COIL, 0, 1) == NO_RESPONSE  # the switch has a max_age too
    assert backend.read(IR, 9, 1) == [91]


@pytest.fixture
def derived(cache: DatapointCache) -> UnitBackend:
    return UnitBackend(DERIVED_MAP, cache, idle_gate())


def test_stale_policies(derived: UnitBackend, cache: DatapointCache) -> None:
    cache.update(DpValue.of_value(2, 100))
    assert derived.read(IR, 12, 2) == [0, 20]  # 35 - 10 - 5
    assert derived.read(IR, 14, 4) == [0x8700, 0, 0, 0]  # 135 as int64, DCBA
    kw = derived.read(IR, 8, 4)
    assert isinstance(kw, list)
    assert struct.unpack(">d", struct.pack(">4H", *kw))[0] == pytest.approx(0.035)
    cache.set_link_state(LinkState.DOWN)
    assert derived.read(IR, 0, 1) == NO_RESPONSE  # exception
    assert derived.read(IR, 12, 2) == [0, 0]  # zero
    nan = derived.read(IR, 8, 4)
    assert isinstance(nan, list)
    assert math.isnan(struct.unpack(">d", struct.pack(">4H", *nan))[0])  # nan
    assert derived.read(IR, 14, 4) == [0x8700, 0, 0, 0]  # last
    assert derived.read(IR, 5, 3) == [0x4248, 0, 4999]  # constants are never stale


def test_derived_values(derived: UnitBackend, cache: DatapointCache) -> None:
    pf = derived.read(IR, 3, 2)
    assert isinstance(pf, list)
    assert _float32([pf[1], pf[0]]) == pytest.approx(35 / (232.6 * 0.153))  # CDAB
    cache.update(DpValue.of_raw(6, bytes.fromhex("0916 000000 000000")))
    assert derived.read(IR, 3, 2) == [0, 0x3F80]  # S = 0: power factor 1
    cache.update(DpValue.of_raw(6, bytes.fromhex("0916 000001 7FFFFF")))
    assert derived.read(IR, 3, 2) == [0, 0x3F80]  # bounded to 1
    cache.update(DpValue.of_raw(6, bytes.fromhex("0916 000001 800000")))
    assert derived.read(IR, 3, 2) == [0, 0xBF80]  # signed power: bounded to -1
    cache.update(DpValue.of_value(2, 0))
    assert derived.read(IR, 18, 2) == NO_RESPONSE  # x / 0 with no on_zero: nothing to serve


def test_saturation_is_counted_never_wrapped(derived: UnitBackend, cache: DatapointCache) -> None:
    cache.update(DpValue.of_value(2, 70000))
    assert derived.stats.register_saturations == 0
    assert derived.read(IR, 25, 1) == [65535]
    assert derived.stats.register_saturations == 1
    cache.update(DpValue.of_value(2, -1))
    assert derived.read(IR, 21, 4) == [0, 0, 0, 0]  # uint64 cannot go negative
    assert derived.stats.register_saturations == 2
    assert derived.read(IR, 0, 1) == [2326]
    assert derived.stats.register_saturations == 2


def test_identification(backend: UnitBackend) -> None:
    assert backend.identification[0] == "tuya-modbus-gateway"
    assert backend.identification[1] == "AT-Q-SMR1-20"
    assert backend.identification[5] == "AT-Q-SMR1-20 / ZMB9-W-1P"


# -- writes: the real link and gate, an MCU double behind a real socket ------------------------
BUSY = ExceptionCode.SERVER_DEVICE_BUSY
FAILURE = ExceptionCode.SERVER_DEVICE_FAILURE
DEFAULT_TEXT = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
# The switch's own window shortened, so a test that waits it out stays short.
FAST_SWITCH_MAP_TEXT = DEFAULT_TEXT.replace(
    "    confirm_timeout_s: 5.0      # the motor", "    confirm_timeout_s: 0.4      # the motor"
)
SIX_RECORDS = bytes.fromhex("0101003F 030100FA 040100AA 05000010 06000020 07000030")


def map_from(tmp_path: Path, text: str) -> RegisterMap:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    return load_map(path)


@dataclasses.dataclass
class Mcu:
    """The MCU double and the started link to it."""

    peer: ScriptedMcu
    link: McuLink

    def commands(self) -> list[DpValue]:
        frames = self.peer.frames(Command.DP_COMMAND)
        return [dp for frame in frames for dp in decode_dps(frame.data).values]

    async def wait_commands(self, count: int) -> None:
        await eventually(lambda: len(self.commands()) >= count)


@pytest.fixture
async def mcu(
    cache: DatapointCache, make_link: Callable[[LinkConfig], McuLink]
) -> AsyncIterator[Mcu]:
    """An MCU double holding the vectors' record lists, behind a real TCP socket."""
    peer = ScriptedMcu()
    tcp = await TcpPeer(peer).open()
    link = make_link(fast_config(tcp.url))
    await link.start()
    await link.wait_ready(10.0)
    for dpid in (17, 18):
        entry = cache.snapshot().get(dpid)
        assert entry is not None
        peer.dps[dpid] = DpValue.of_raw(dpid, entry.raw)
    link.add_report_listener(cache.update)
    peer.merge_records = True  # like the breaker's MCU
    yield Mcu(peer, link)
    await link.stop()
    await tcp.close()


def unit(
    mcu: Mcu, cache: DatapointCache, regmap: RegisterMap = DEFAULT_MAP, **options: Any
) -> UnitBackend:
    options.setdefault("confirm_timeout_s", 0.5)  # halfway 0.25 s: a busy CI stall is no resend
    return UnitBackend(regmap, cache, mcu.link.writes, lambda: STATUS, unit_id=1, **options)


@pytest.fixture
def writer(mcu: Mcu, cache: DatapointCache) -> UnitBackend:
    return unit(mcu, cache)


def other_value(dp: DpValue) -> DpValue:
    if dp.dp_type is DpType.BOOL:
        return DpValue.of_bool(dp.dpid, not dp.value)
    if dp.dp_type is DpType.RAW:
        records = decode_records(dp.payload)[0]
        bumped = [AlarmRecord(r.rid, r.enabled, r.value + 1) for r in records]
        return DpValue.of_raw(dp.dpid, b"".join(r.encode() for r in bumped))
    return DpValue(
        dp.dpid,
        dp.dp_type,
        (int.from_bytes(dp.payload, "big") + 1).to_bytes(len(dp.payload), "big"),
    )


async def test_switch_write_confirmed_and_logged(
    writer: UnitBackend, mcu: Mcu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.unit.writer")
    assert await writer.write(Table.COIL, 0, [0], "10.0.0.7:5123") is None
    assert mcu.commands() == [DpValue.of_bool(16, False)]
    assert writer.read(Table.COIL, 0, 1) == [0]
    assert "write by 10.0.0.7:5123, unit 1, point switch: 1 -> 0" in caplog.text
    assert writer.stats.writes_confirmed == 1


async def test_switch_interval(mcu: Mcu, cache: DatapointCache) -> None:
    backend = unit(mcu, cache, switch_interval_s=60.0)
    assert await backend.write(Table.COIL, 0, [0], "c") is None
    assert await backend.write(Table.COIL, 0, [1], "c") == BUSY
    assert await backend.write(Table.COIL, 1, [1], "c") is None  # prepayment is no motor
    # the interval is the gateway's policy; the gate knows when the motor last moved
    assert await unit(mcu, cache, switch_interval_s=0.0).write(Table.COIL, 0, [1], "c") is None
    assert mcu.commands() == [
        DpValue.of_bool(16, False),
        DpValue.of_bool(11, True),
        DpValue.of_bool(16, True),
    ]


async def test_concurrent_switch_writes(writer: UnitBackend, mcu: Mcu) -> None:
    results = await asyncio.gather(
        writer.write(Table.COIL, 0, [0], "a"), writer.write(Table.COIL, 0, [1], "b")
    )
    assert sorted(results, key=str) == sorted([None, BUSY], key=str)
    assert len(mcu.commands()) == 1


async def test_link_not_ready(writer: UnitBackend, mcu: Mcu) -> None:
    await mcu.link.stop()
    assert await writer.write(Table.COIL, 0, [0], "c") == NO_RESPONSE
    assert mcu.commands() == []
    await mcu.link.start()
    await mcu.link.wait_ready(10.0)
    # nothing moved, so the next switch operation is not held back as busy
    assert await writer.write(Table.COIL, 0, [0], "c") is None


async def test_no_confirmation(writer: UnitBackend, mcu: Mcu) -> None:
    mcu.peer.confirm_writes = False
    assert await writer.write(HR, 0, [40], "c") == NO_RESPONSE
    assert [dp.dpid for dp in mcu.commands()] == [18, 18]  # sent, and once more halfway
    assert writer.stats.writes_failed == 1


async def test_an_unconfirmed_motor_write_is_never_resent(
    mcu: Mcu, cache: DatapointCache, tmp_path: Path
) -> None:
    backend = unit(mcu, cache, map_from(tmp_path, FAST_SWITCH_MAP_TEXT))
    mcu.peer.confirm_writes = False
    queries = len(mcu.peer.frames(Command.DP_QUERY))
    assert await backend.write(Table.COIL, 0, [0], "c") == NO_RESPONSE
    assert mcu.commands() == [DpValue.of_bool(16, False)]
    await eventually(lambda: len(mcu.peer.frames(Command.DP_QUERY)) == queries + 1)  # re-read
    mcu.peer.report(DpValue.of_bool(16, False))  # the motor moved after all
    await eventually(lambda: mcu.link.stats.late_confirmations == 1)


async def test_a_motor_write_answered_with_the_old_state_is_of_unknown_outcome(
    mcu: Mcu, cache: DatapointCache, tmp_path: Path
) -> None:
    backend = unit(mcu, cache, map_from(tmp_path, FAST_SWITCH_MAP_TEXT))
    mcu.peer.on_write = other_value  # the MCU reports the old state: the motor may be moving
    queries = len(mcu.peer.frames(Command.DP_QUERY))
    assert await backend.write(Table.COIL, 0, [0], "c") == NO_RESPONSE  # not 0x04
    assert mcu.commands() == [DpValue.of_bool(16, False)]
    await eventually(lambda: len(mcu.peer.frames(Command.DP_QUERY)) == queries + 1)


async def test_mcu_reports_another_value(writer: UnitBackend, mcu: Mcu) -> None:
    mcu.peer.on_write = other_value
    assert await writer.write(Table.COIL, 1, [1], "c") == FAILURE
    assert await writer.write(HR, 0, [40], "c") == FAILURE


@pytest.mark.parametrize(
    ("table", "address", "values", "code"),
    [
        (Table.COIL, 5, [1], ExceptionCode.ILLEGAL_DATA_ADDRESS),
        (HR, 8, [1], ExceptionCode.ILLEGAL_DATA_ADDRESS),
        (HR, 7, [1, 1], ExceptionCode.ILLEGAL_DATA_ADDRESS),  # runs past the last point
        (IR, 0, [1], ExceptionCode.ILLEGAL_FUNCTION),
        (HR, 0, [64], ExceptionCode.ILLEGAL_DATA_VALUE),  # over-current max 63 A
        (HR, 0, [0], ExceptionCode.ILLEGAL_DATA_VALUE),
        (HR, 1, [301], ExceptionCode.ILLEGAL_DATA_VALUE),
        (HR, 4, [2], ExceptionCode.ILLEGAL_DATA_VALUE),  # an enable flag is 0 or 1
        (HR, 0, [40, 301], ExceptionCode.ILLEGAL_DATA_VALUE),  # one bad point: nothing sent
        (HR, 0, [], ExceptionCode.ILLEGAL_DATA_VALUE),
    ],
)
async def test_write_refusals_send_nothing(
    writer: UnitBackend,
    mcu: Mcu,
    table: Table,
    address: int,
    values: list[int],
    code: ExceptionCode,
) -> None:
    assert await writer.write(table, address, values, "c") == code
    assert mcu.commands() == []


async def test_read_only_gateway(mcu: Mcu, cache: DatapointCache) -> None:
    backend = unit(mcu, cache, read_only=True)
    assert await backend.write(Table.COIL, 0, [0], "c") == ExceptionCode.ILLEGAL_FUNCTION
    assert mcu.commands() == []
    assert backend.read(Table.COIL, 0, 1) == [1]


async def test_threshold_read_modify_write_keeps_other_records(
    writer: UnitBackend, mcu: Mcu, cache: DatapointCache
) -> None:
    records = DpValue.of_raw(18, bytes.fromhex("0101003F 030100FA 040100AA 09000123"))
    cache.update(records)
    mcu.peer.dps[18] = records
    assert writer.read(HR, 0, 8) == [63, 250, 170, 30, 1, 1, 1, 0]
    assert await writer.write(HR, 1, [260], "c") is None
    assert mcu.commands() == [
        DpValue.of_raw(18, bytes.fromhex("0101003F 03010104 040100AA 09000123"))
    ]
    assert writer.read(HR, 0, 3) == [63, 260, 170]
    assert await writer.write(HR, 7, [1], "c") is None  # leakage alarm on
    assert mcu.commands()[-1] == DpValue.of_raw(17, bytes.fromhex("0401001E"))
    assert writer.read(HR, 7, 1) == [1]


async def test_records_reported_in_another_order_confirm_at_once(
    mcu: Mcu, cache: DatapointCache
) -> None:
    """Issue 11: same records, other order: confirmed without a resend or waiting it out."""
    backend = unit(mcu, cache, confirm_timeout_s=60.0)
    mcu.peer.reverse_records = True
    async with asyncio.timeout(10.0):  # a hang detector: waiting out the window takes 60 s
        assert await backend.write(HR, 1, [260], "c") is None
    assert len(mcu.commands()) == 1
    assert backend.read(HR, 0, 3) == [63, 260, 170]


async def test_block_write_over_two_datapoints(writer: UnitBackend, mcu: Mcu) -> None:
    assert await writer.write(HR, 0, [50, 260, 180, 40], "c") is None
    sent = mcu.commands()
    assert [dp.dpid for dp in sent] == [18, 17]  # one command per DP
    assert sent[0].payload == bytes.fromhex("01010032 03010104 040100B4")
    assert sent[1].payload == bytes.fromhex("04000028")
    assert writer.read(HR, 0, 8) == [50, 260, 180, 40, 1, 1, 1, 0]
    assert await writer.write(HR, 4, [0, 1], "c") is None  # value and flag of one list
    assert mcu.commands()[-1].payload == bytes.fromhex("01000032 03010104 040100B4")


async def test_record_write_needs_a_cached_list(mcu: Mcu, clock: Clock) -> None:
    cache = DatapointCache(clock)
    cache.set_link_state(LinkState.READY)
    assert await unit(mcu, cache).write(HR, 0, [40], "c") == NO_RESPONSE
    assert mcu.commands() == []


async def test_value_enum_and_float_writes(mcu: Mcu, cache: DatapointCache) -> None:
    derived = unit(mcu, cache, DERIVED_MAP, confirm_timeout_s=None)
    assert await derived.write(HR, 0, [63], "c") is None
    assert await derived.write(HR, 1, [0xFFFB], "c") is None  # int16 -5 ×10: -0.5 °C
    assert await derived.write(HR, 1, [3], "c") == ExceptionCode.ILLEGAL_DATA_VALUE  # off step
    assert await derived.write(HR, 1, [1001], "c") == ExceptionCode.ILLEGAL_DATA_VALUE
    words = list(struct.unpack(">2H", struct.pack(">f", 2.5)))
    assert await derived.write(HR, 2, words, "c") is None
    assert await derived.write(HR, 2, words[:1], "c") == ExceptionCode.ILLEGAL_DATA_VALUE
    assert await derived.write(HR, 4, [2], "c") is None
    assert await derived.write(HR, 4, [3], "c") == ExceptionCode.ILLEGAL_DATA_VALUE
    assert await derived.write(HR, 5, [10], "c") == ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert await derived.write(HR, 6, [12, 0], "c") is None  # CDAB: low word first
    assert await derived.write(HR, 6, [0, 12], "c") == ExceptionCode.ILLEGAL_DATA_VALUE
    assert await derived.write(HR, 7, [0], "c") == ExceptionCode.ILLEGAL_DATA_VALUE  # half
    assert mcu.commands() == [
        DpValue.of_value(114, 63),
        DpValue.of_value(118, -5),
        DpValue.of_value(118, 25),
        DpValue.of_enum(3, 2),
        DpValue.of_value(114, 12),
    ]


async def test_writes_queued_behind_a_silent_one_are_never_sent_late(
    mcu: Mcu, cache: DatapointCache
) -> None:
    backend = unit(mcu, cache, confirm_timeout_s=0.6)
    mcu.peer.confirm_writes = False
    first = asyncio.create_task(backend.write(HR, 0, [40], "c"))  # dp18
    await mcu.wait_commands(1)
    # both queue behind the first, which holds the gate for its whole window
    queued = await asyncio.gather(backend.write(HR, 3, [40], "c"), backend.write(HR, 1, [260], "c"))
    assert [await first, *queued] == [NO_RESPONSE] * 3
    assert [dp.dpid for dp in mcu.commands()] == [18, 18]  # the first and its resend only
    assert backend.stats.writes_failed == 3


async def test_a_write_window_starts_when_its_request_arrived(
    mcu: Mcu, cache: DatapointCache
) -> None:
    backend = unit(mcu, cache, confirm_timeout_s=0.6)
    now = asyncio.get_running_loop().time()
    # arrived 0.4 s ago: less than half of its 0.6 s window is left, so it is never sent
    assert await backend.write(HR, 3, [40], "c", arrived=now - 0.4) == NO_RESPONSE
    assert mcu.commands() == []
    assert await backend.write(HR, 3, [40], "c", arrived=now) is None
    assert [dp.dpid for dp in mcu.commands()] == [17]


async def test_block_write_stops_when_too_little_window_is_left(
    mcu: Mcu, cache: DatapointCache
) -> None:
    backend = unit(mcu, cache, confirm_timeout_s=0.6)
    mcu.peer.report_delay_s = 0.4  # dp18 confirmed 0.4 s in: dp17 would have under half
    assert await backend.write(HR, 0, [50, 260, 180, 40], "c") == NO_RESPONSE
    assert {dp.dpid for dp in mcu.commands()} == {18}  # (and its halfway resend): no dp17
    assert (backend.stats.writes_confirmed, backend.stats.writes_failed) == (1, 1)


async def test_switch_write_while_one_is_in_flight_is_busy_at_once(
    mcu: Mcu, cache: DatapointCache
) -> None:
    backend = unit(mcu, cache, switch_interval_s=0.0)
    mcu.peer.confirm_writes = False
    first = asyncio.create_task(backend.write(Table.COIL, 0, [0], "a"))
    await mcu.wait_commands(1)
    assert await backend.write(Table.COIL, 0, [1], "b") == BUSY
    assert not first.done()  # answered at once, not queued behind the first
    mcu.peer.report(DpValue.of_bool(16, False))  # the MCU confirms the first
    assert await first is None
    assert mcu.commands() == [DpValue.of_bool(16, False)]


async def test_switch_write_never_waits_behind_a_threshold_write(
    mcu: Mcu, cache: DatapointCache
) -> None:
    # A window far longer than the report's delay: no halfway resend races the report (with
    # 0.2 s, the resend at 0.1 s met the report at 0.1 s on a busy CI machine).
    writer = unit(mcu, cache, confirm_timeout_s=3.0)
    mcu.peer.report_delay_s = 0.1
    first = asyncio.create_task(writer.write(HR, 0, [40], "a"))
    await mcu.wait_commands(1)
    assert await writer.write(Table.COIL, 0, [0], "b") == BUSY  # issue 12.1: never queued
    assert await first is None
    assert [dp.dpid for dp in mcu.commands()] == [18]


async def test_a_frame_over_the_mcu_limit_is_refused_at_once(
    writer: UnitBackend, mcu: Mcu, cache: DatapointCache, caplog: pytest.LogCaptureFixture
) -> None:
    cache.update(DpValue.of_raw(18, SIX_RECORDS))  # 4 + 24 = 28 data bytes: wedges the SDK
    assert await writer.write(HR, 1, [260], "c") == FAILURE
    assert mcu.commands() == []
    assert "needs 28 data bytes in one frame, the MCU receives at most 24" in caplog.text


async def test_changed_records_only(mcu: Mcu, cache: DatapointCache, tmp_path: Path) -> None:
    text = DEFAULT_TEXT.replace(
        "  alarm_set_2:\n    id: 18\n",
        "  alarm_set_2:\n    id: 18\n    write_only_changed_records: true\n",
    )
    backend = unit(mcu, cache, map_from(tmp_path, text))
    six = DpValue.of_raw(18, SIX_RECORDS)
    cache.update(six)
    mcu.peer.dps[18] = six
    assert await backend.write(HR, 1, [260], "c") is None
    assert mcu.commands() == [DpValue.of_raw(18, bytes.fromhex("03010104"))]
    assert backend.read(HR, 0, 3) == [63, 260, 170]
    assert await backend.write(HR, 0, [50, 261], "c") is None
    assert mcu.commands()[-1] == DpValue.of_raw(18, bytes.fromhex("01010032 03010105"))


def _every_read(backend: UnitBackend) -> list[object]:
    reads: list[object] = []
    for table in Table:
        points = backend.regmap.points(table)
        for point in points:
            reads.append(backend.read(table, point.address, point.count))
        if points:
            reads.append(backend.read(table, points[0].address, points[-1].end))
    return reads


PROFILE_MAPS = sorted((ROOT / "gateway" / "maps").glob("*.yaml"))


@pytest.mark.parametrize(
    "regmap",
    [DEFAULT_MAP, DERIVED_MAP, *(load_map(path) for path in PROFILE_MAPS)],
    ids=["default", "derived", *(path.stem for path in PROFILE_MAPS)],
)
def test_memoised_reads_equal_fresh_ones(
    regmap: RegisterMap, cache: DatapointCache, clock: Clock
) -> None:
    backend = UnitBackend(regmap, cache, idle_gate())
    steps: list[Callable[[], object]] = [
        lambda: None,
        lambda: cache.update(DpValue.of_raw(6, bytes.fromhex("0917 000100 000200"))),
        lambda: cache.set_link_state(LinkState.DOWN),
        lambda: cache.set_link_state(LinkState.READY),
        lambda: setattr(clock, "now", clock.now + 100),  # past every max_age
        lambda: cache.update(DpValue.of_bitmap(9, 1 << 3, 4)),
        lambda: cache.update(DpValue.of_value(2, 70000)),  # saturates
        lambda: cache.update(DpValue.of_raw(6, bytes.fromhex("0916 000001 7FFFFF"))),
    ]
    for step in steps:
        step()
        _every_read(backend)  # fills the memo
        fresh = UnitBackend(regmap, cache, idle_gate())
        fresh.stats = dataclasses.replace(backend.stats)
        assert _every_read(backend) == _every_read(fresh)
        assert backend.stats == fresh.stats  # saturations counted on every read, memo or not
