"""UnitBackend against a real DatapointCache and an MCU-like write_dp written here."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import LinkNotReadyError
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.load import load_map
from gateway.regmap.specs import RegisterMap
from gateway.tuya.link import LinkState
from gateway.tuya.protocol import DpType, DpValue, FrameDecoder, decode_dps
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


class BenchMcu:
    """Answers writes like the breaker's MCU: a 0x07 report ``delay`` s later, or not."""

    def __init__(self, cache: DatapointCache) -> None:
        self.cache = cache
        self.mode = "confirm"  # confirm | silent | differ | not_ready
        self.delay = 0.001
        self.sent: list[tuple[DpValue, float]] = []
        self.window_ends: list[float] = []  # loop time each command's window ends
        self.stored: dict[int, DpValue] = {}
        self.commanded = asyncio.Event()  # set on every command

    async def write_dp(self, dp: DpValue, timeout: float) -> DpValue:  # noqa: ASYNC109 - the link's signature
        if self.mode == "not_ready":
            raise LinkNotReadyError("link is DOWN: nothing sent")
        loop = asyncio.get_running_loop()
        self.sent.append((dp, timeout))
        self.window_ends.append(loop.time() + timeout)
        self.commanded.set()
        if self.mode != "silent":
            loop.call_later(self.delay, self._report, dp)
        return await self.cache.wait_for_report(dp.dpid, timeout)

    def _report(self, dp: DpValue) -> None:
        if dp.dp_type is DpType.RAW:
            dp = self._merge_records(dp)
        if self.mode == "differ":
            dp = _other_value(dp)
        self.stored[dp.dpid] = dp
        self.cache.update(dp)

    def _merge_records(self, dp: DpValue) -> DpValue:
        entry = self.cache.snapshot().get(dp.dpid)
        current = decode_records(entry.raw if entry else b"")[0]
        written = {r.rid: r for r in decode_records(dp.payload)[0]}
        merged = [written.pop(r.rid, r) for r in current] + list(written.values())
        return DpValue.of_raw(dp.dpid, b"".join(r.encode() for r in merged))


def _other_value(dp: DpValue) -> DpValue:
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


@pytest.fixture
def mcu(cache: DatapointCache) -> BenchMcu:
    return BenchMcu(cache)


@pytest.fixture
def backend(cache: DatapointCache, mcu: BenchMcu, clock: Clock) -> UnitBackend:
    status: StatusValues = {
        "frames_received": 70000,
        "product_key": "lih4vjeoyao4jeku",
        "mcu_reboots": 2,
    }
    return UnitBackend(
        DEFAULT_MAP,
        cache,
        mcu.write_dp,
        lambda: status,
        unit_id=1,
        clock=clock,
        confirm_timeout_s=0.2,
    )


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
    assert backend.read(Table.COIL, 0, 1) == [1]  # the switch has no max_age
    assert backend.read(IR, 9, 1) == [91]


@pytest.fixture
def derived(cache: DatapointCache, mcu: BenchMcu, clock: Clock) -> UnitBackend:
    return UnitBackend(DERIVED_MAP, cache, mcu.write_dp, clock=clock)


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


async def timed_write(
    backend: UnitBackend, table: Table, address: int, values: list[int]
) -> tuple[float, ExceptionCode | None, float]:
    """Loop time before the request, its answer, and loop time after it."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    code = await backend.write(table, address, values, "c")
    return start, code, loop.time()


def assert_window(mcu: BenchMcu, index: int, window_s: float, start: float, end: float) -> None:
    """Command ``index`` was given the window of a request that came between start and end."""
    assert start + window_s - 1e-9 <= mcu.window_ends[index] <= end + window_s + 1e-9
    assert mcu.sent[index][1] <= window_s


async def test_switch_write_confirmed_and_logged(
    backend: UnitBackend, mcu: BenchMcu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.unit.backend")
    start = asyncio.get_running_loop().time()
    assert await backend.write(Table.COIL, 0, [0], "10.0.0.7:5123") is None
    assert [dp for dp, _ in mcu.sent] == [DpValue.of_bool(16, False)]
    assert_window(mcu, 0, 5.0, start, asyncio.get_running_loop().time())  # the DP's own window
    assert backend.read(Table.COIL, 0, 1) == [0]
    assert "write by 10.0.0.7:5123, unit 1, point switch: 1 -> 0" in caplog.text
    assert backend.stats.writes_confirmed == 1


async def test_switch_interval(backend: UnitBackend, mcu: BenchMcu, clock: Clock) -> None:
    assert await backend.write(Table.COIL, 0, [0], "c") is None
    clock.now += 1.9
    assert await backend.write(Table.COIL, 0, [1], "c") == ExceptionCode.SERVER_DEVICE_BUSY
    assert len(mcu.sent) == 1
    assert await backend.write(Table.COIL, 1, [1], "c") is None  # prepayment is no motor
    clock.now += 0.2
    assert await backend.write(Table.COIL, 0, [1], "c") is None
    assert [dp for dp, _ in mcu.sent] == [
        DpValue.of_bool(16, False),
        DpValue.of_bool(11, True),
        DpValue.of_bool(16, True),
    ]


async def test_concurrent_switch_writes(backend: UnitBackend, mcu: BenchMcu) -> None:
    results = await asyncio.gather(
        backend.write(Table.COIL, 0, [0], "a"), backend.write(Table.COIL, 0, [1], "b")
    )
    assert sorted(results, key=str) == sorted([None, ExceptionCode.SERVER_DEVICE_BUSY], key=str)
    assert len(mcu.sent) == 1


async def test_link_not_ready(backend: UnitBackend, mcu: BenchMcu, clock: Clock) -> None:
    mcu.mode = "not_ready"
    assert await backend.write(Table.COIL, 0, [0], "c") == NO_RESPONSE
    assert mcu.sent == []
    mcu.mode = "confirm"
    # nothing moved, so the next switch operation is not held back as busy
    assert await backend.write(Table.COIL, 0, [0], "c") is None


async def test_no_confirmation(backend: UnitBackend, mcu: BenchMcu) -> None:
    mcu.mode = "silent"
    start, code, end = await timed_write(backend, HR, 0, [40])
    assert code == NO_RESPONSE
    assert len(mcu.sent) == 1
    assert_window(mcu, 0, 0.2, start, end)
    assert backend.stats.writes_failed == 1


async def test_mcu_reports_another_value(backend: UnitBackend, mcu: BenchMcu) -> None:
    mcu.mode = "differ"
    assert await backend.write(Table.COIL, 1, [1], "c") == ExceptionCode.SERVER_DEVICE_FAILURE
    assert await backend.write(HR, 0, [40], "c") == ExceptionCode.SERVER_DEVICE_FAILURE


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
    backend: UnitBackend,
    mcu: BenchMcu,
    table: Table,
    address: int,
    values: list[int],
    code: ExceptionCode,
) -> None:
    assert await backend.write(table, address, values, "c") == code
    assert mcu.sent == []


async def test_read_only_gateway(cache: DatapointCache, mcu: BenchMcu) -> None:
    backend = UnitBackend(DEFAULT_MAP, cache, mcu.write_dp, read_only=True)
    assert await backend.write(Table.COIL, 0, [0], "c") == ExceptionCode.ILLEGAL_FUNCTION
    assert mcu.sent == []
    assert backend.read(Table.COIL, 0, 1) == [1]


async def test_threshold_read_modify_write_keeps_other_records(
    backend: UnitBackend, mcu: BenchMcu, cache: DatapointCache
) -> None:
    cache.update(DpValue.of_raw(18, bytes.fromhex("0101003F 030100FA 040100AA 09000123")))
    assert backend.read(HR, 0, 8) == [63, 250, 170, 30, 1, 1, 1, 0]
    assert await backend.write(HR, 1, [260], "c") is None
    ((sent, _),) = mcu.sent
    assert sent == DpValue.of_raw(18, bytes.fromhex("0101003F 03010104 040100AA 09000123"))
    assert backend.read(HR, 0, 3) == [63, 260, 170]
    assert await backend.write(HR, 7, [1], "c") is None  # leakage alarm on
    assert mcu.sent[-1][0] == DpValue.of_raw(17, bytes.fromhex("0401001E"))
    assert backend.read(HR, 7, 1) == [1]


async def test_block_write_over_two_datapoints(backend: UnitBackend, mcu: BenchMcu) -> None:
    assert await backend.write(HR, 0, [50, 260, 180, 40], "c") is None
    assert [dp.dpid for dp, _ in mcu.sent] == [18, 17]  # one command per DP
    assert mcu.sent[0][0].payload == bytes.fromhex("01010032 03010104 040100B4")
    assert mcu.sent[1][0].payload == bytes.fromhex("04000028")
    assert backend.read(HR, 0, 8) == [50, 260, 180, 40, 1, 1, 1, 0]
    assert await backend.write(HR, 4, [0, 1], "c") is None  # value and flag of one list
    assert mcu.sent[-1][0].payload == bytes.fromhex("01000032 03010104 040100B4")


async def test_record_write_needs_a_cached_list(mcu: BenchMcu, clock: Clock) -> None:
    cache = DatapointCache(clock)
    cache.set_link_state(LinkState.READY)
    backend = UnitBackend(DEFAULT_MAP, cache, BenchMcu(cache).write_dp, clock=clock)
    assert await backend.write(HR, 0, [40], "c") == NO_RESPONSE


async def test_value_enum_and_float_writes(derived: UnitBackend, mcu: BenchMcu) -> None:
    start, code, end = await timed_write(derived, HR, 0, [63])
    assert code is None
    assert_window(mcu, 0, 0.5, start, end)  # the map's tuya.confirm_timeout_s
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
    assert [dp for dp, _ in mcu.sent] == [
        DpValue.of_value(114, 63),
        DpValue.of_value(118, -5),
        DpValue.of_value(118, 25),
        DpValue.of_enum(3, 2),
        DpValue.of_value(114, 12),
    ]


def test_identification(backend: UnitBackend) -> None:
    assert backend.identification[0] == "tuya-modbus-gateway"
    assert backend.identification[1] == "AT-Q-SMR1-20"
    assert backend.identification[5] == "AT-Q-SMR1-20 / ZMB9-W-1P"


async def _commands(mcu: BenchMcu, count: int) -> None:
    """Wait until the MCU has been sent ``count`` commands."""
    async with asyncio.timeout(5.0):
        while len(mcu.sent) < count:
            mcu.commanded.clear()
            await mcu.commanded.wait()


BUSY = ExceptionCode.SERVER_DEVICE_BUSY


async def test_writes_queued_behind_a_silent_one_are_never_sent_late(
    cache: DatapointCache, mcu: BenchMcu, clock: Clock
) -> None:
    backend = UnitBackend(DEFAULT_MAP, cache, mcu.write_dp, clock=clock, confirm_timeout_s=0.6)
    mcu.mode = "silent"
    first = asyncio.create_task(timed_write(backend, HR, 0, [40]))  # dp18
    await _commands(mcu, 1)
    # both queue behind the first, which holds the writer for its whole window
    queued = await asyncio.gather(
        timed_write(backend, HR, 3, [40]), timed_write(backend, HR, 1, [260])
    )
    start, code, end = await first
    assert [code, *(c for _, c, _ in queued)] == [NO_RESPONSE] * 3
    assert [dp.dpid for dp, _ in mcu.sent] == [18]  # only the first reached the MCU
    assert_window(mcu, 0, 0.6, start, end)
    assert backend.stats.writes_failed == 3
    assert backend._in_flight == {}


async def test_a_queued_write_gets_only_what_is_left_of_its_window(
    cache: DatapointCache, mcu: BenchMcu, clock: Clock
) -> None:
    backend = UnitBackend(DEFAULT_MAP, cache, mcu.write_dp, clock=clock, confirm_timeout_s=0.6)
    mcu.delay = 0.1  # a slow MCU: each report comes 0.1 s after its command
    first = asyncio.create_task(timed_write(backend, HR, 0, [40]))
    await _commands(mcu, 1)
    start, code, end = await timed_write(backend, HR, 3, [40])  # dp17, queued behind dp18
    assert (await first)[1] is None
    assert code is None
    assert [dp.dpid for dp, _ in mcu.sent] == [18, 17]
    assert_window(mcu, 1, 0.6, start, end)  # its window ends 0.6 s after its request...
    assert mcu.sent[1][1] < 0.6  # ...so the time spent queued is not given back


async def test_block_write_stops_when_too_little_window_is_left(
    cache: DatapointCache, mcu: BenchMcu, clock: Clock
) -> None:
    backend = UnitBackend(DEFAULT_MAP, cache, mcu.write_dp, clock=clock, confirm_timeout_s=0.6)
    mcu.delay = 0.4  # dp18 confirmed 0.4 s in: dp17 would have under half its window
    assert await backend.write(HR, 0, [50, 260, 180, 40], "c") == NO_RESPONSE
    assert [dp.dpid for dp, _ in mcu.sent] == [18]
    assert (backend.stats.writes_confirmed, backend.stats.writes_failed) == (1, 1)


async def test_switch_write_while_one_is_in_flight_is_busy_at_once(
    backend: UnitBackend, mcu: BenchMcu, cache: DatapointCache, clock: Clock
) -> None:
    mcu.mode = "silent"
    first = asyncio.create_task(backend.write(Table.COIL, 0, [0], "a"))
    await _commands(mcu, 1)
    clock.now += 3.0  # past the switch interval: only the write in flight holds this back
    assert await backend.write(Table.COIL, 0, [1], "b") == BUSY
    assert not first.done()  # answered at once, not queued behind the first
    cache.update(DpValue.of_bool(16, False))  # the MCU confirms the first
    assert await first is None
    assert [dp for dp, _ in mcu.sent] == [DpValue.of_bool(16, False)]
    assert backend._in_flight == {}


async def test_switch_write_queued_behind_a_threshold_write(
    backend: UnitBackend, mcu: BenchMcu
) -> None:
    mcu.delay = 0.05
    first = asyncio.create_task(timed_write(backend, HR, 0, [40]))
    await _commands(mcu, 1)
    start, code, end = await timed_write(backend, Table.COIL, 0, [0])
    assert (await first)[1] is None
    assert code is None
    assert [dp.dpid for dp, _ in mcu.sent] == [18, 16]
    assert_window(mcu, 1, 5.0, start, end)
    assert mcu.sent[1][1] < 5.0


def _every_read(backend: UnitBackend) -> list[object]:
    reads: list[object] = []
    for table in Table:
        points = backend.regmap.points(table)
        for point in points:
            reads.append(backend.read(table, point.address, point.count))
        if points:
            reads.append(backend.read(table, points[0].address, points[-1].end))
    return reads


PROFILE_MAPS = sorted((ROOT / "maps").glob("*.yaml"))


@pytest.mark.parametrize(
    "regmap",
    [DEFAULT_MAP, DERIVED_MAP, *(load_map(path) for path in PROFILE_MAPS)],
    ids=["default", "derived", *(path.stem for path in PROFILE_MAPS)],
)
def test_memoised_reads_equal_fresh_ones(
    regmap: RegisterMap, cache: DatapointCache, mcu: BenchMcu, clock: Clock
) -> None:
    backend = UnitBackend(regmap, cache, mcu.write_dp, clock=clock)
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
        fresh = UnitBackend(regmap, cache, mcu.write_dp, clock=clock)
        fresh.stats = dataclasses.replace(backend.stats)
        assert _every_read(backend) == _every_read(fresh)
        assert backend.stats == fresh.stats  # saturations counted on every read, memo or not
