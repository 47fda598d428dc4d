"""Whole-block read memo (issue 15): never older than a fresh read, at every edge it has."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.cli import build_parser
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.load import load_map
from gateway.tools import EventLoop
from gateway.tuya.link import LinkConfig, LinkState, McuLink
from gateway.tuya.protocol import DpValue
from gateway.unit.backend import BackendStats, UnitBackend
from gateway.unit.cache import DatapointCache
from gateway.unit.status import LiveStatus, link_status, unit_status

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAP = load_map(ROOT / "register_map.yaml")
IR = Table.INPUT_REGISTER
PHASE_A = DpValue.of_raw(6, bytes.fromhex("0916 000099 000023"))  # 232.6 V


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _unit(cache: DatapointCache, status: dict[str, object] | None = None) -> UnitBackend:
    gate = McuLink(LinkConfig("socket://127.0.0.1:9")).writes
    values = status if status is not None else {}
    return UnitBackend(DEFAULT_MAP, cache, gate, lambda: values)  # type: ignore[arg-type, return-value]


def test_a_kept_block_turns_stale_exactly_when_a_fresh_read_does() -> None:
    clock = Clock()
    cache = DatapointCache(clock)
    cache.set_link_state(LinkState.READY)
    cache.update(PHASE_A)
    kept = _unit(cache)
    for step in [89.0, 0.5, 0.4999995, 0.0000004, 0.0000002, 0.0000001, 0.5, 10.0]:
        clock.now += step
        held = kept.read(IR, 0, 2)
        assert held == _unit(cache).read(IR, 0, 2), clock.now - 1000.0
    assert held == ExceptionCode.GATEWAY_TARGET_NO_RESPONSE  # voltage max_age_s 90
    cache.update(PHASE_A)
    assert kept.read(IR, 0, 2) == [2326, 153]


def test_a_clock_that_steps_back_is_not_answered_from_the_memo() -> None:
    clock = Clock()
    cache = DatapointCache(clock)
    cache.set_link_state(LinkState.READY)
    cache.update(PHASE_A)
    kept = _unit(cache)
    clock.now += 100
    assert kept.read(IR, 0, 1) == ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
    clock.now -= 50
    assert kept.read(IR, 0, 1) == [2326]


def test_live_status_points_follow_every_change() -> None:
    cache = DatapointCache(Clock())
    cache.set_link_state(LinkState.READY)
    status: dict[str, object] = {"product_key": "aaaa", "mcu_reboots": 1}
    unit = _unit(cache, status)
    first = unit.read(IR, 215, 8)
    assert isinstance(first, list)
    assert first[:2] == [0x6161, 0x6161]
    assert unit.read(IR, 201, 1) == [1]
    status["product_key"], status["mcu_reboots"] = "bbbb", 2
    again = unit.read(IR, 215, 8)
    assert isinstance(again, list)
    assert again[:2] == [0x6262, 0x6262]
    assert unit.read(IR, 201, 1) == [2]
    status["mcu_reboots"] = 2.0  # equal but not the same kind of value: encoded again
    assert unit.read(IR, 201, 1) == [2]


def test_event_loop_option() -> None:
    parser = build_parser()
    default = parser.parse_args(["run"]).event_loop
    expected = EventLoop.UVLOOP if sys.platform == "linux" else EventLoop.ASYNCIO
    assert default is expected  # uvloop is a dependency (pyproject.toml)
    assert parser.parse_args(["run", "--event-loop", "asyncio"]).event_loop is EventLoop.ASYNCIO


def test_live_status_gives_each_value_of_the_whole_table() -> None:
    clock = Clock()
    cache = DatapointCache(clock)
    cache.set_link_state(LinkState.READY)
    cache.update(PHASE_A)
    clock.now += 2.5
    link = link_status(McuLink(LinkConfig("sim://")), more=lambda: {"refused_writes": 3})
    stats = BackendStats(modbus_requests=7)
    whole = unit_status(cache.snapshot(), stats, link)
    live = LiveStatus(cache.snapshot(), stats, link)
    assert {name: live[name] for name in whole} == whole
    assert live.get("no_such_value") is None
