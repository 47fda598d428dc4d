"""The datapoint cache: entries, snapshots and staleness."""

from __future__ import annotations

import pytest

from gateway.tuya.link import LinkState
from gateway.tuya.protocol import DpValue
from gateway.unit.cache import DatapointCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_update_keeps_value_time_and_count() -> None:
    clock = Clock()
    cache = DatapointCache(clock)
    cache.update(DpValue.of_value(1, 5))
    clock.now = 101.0
    cache.update(DpValue.of_value(1, 6))
    entry = cache.snapshot().get(1)
    assert entry is not None
    assert entry.dp == DpValue.of_value(1, 6)
    assert entry.raw == bytes.fromhex("00000006")
    assert entry.timestamp == 101.0
    assert entry.updates == 2
    assert cache.snapshot().get(2) is None


def test_snapshot_is_not_changed_by_later_updates() -> None:
    cache = DatapointCache(Clock())
    cache.update(DpValue.of_value(1, 5))
    before = cache.snapshot()
    cache.update(DpValue.of_value(1, 7))
    cache.update(DpValue.of_bool(16, True))
    assert before.get(1) is not None
    assert before.get(1).dp.value == 5  # type: ignore[union-attr]
    assert before.get(16) is None
    with pytest.raises(TypeError):
        before.entries[1] = before.entries[1]  # type: ignore[index]


def test_staleness_from_link_state_and_max_age() -> None:
    clock = Clock()
    cache = DatapointCache(clock)
    cache.update(DpValue.of_value(1, 5))
    assert cache.snapshot().is_stale(1)  # link not READY yet
    cache.set_link_state(LinkState.READY)
    assert cache.link_state is LinkState.READY
    assert not cache.snapshot().is_stale(1)
    assert not cache.snapshot().is_stale(1, max_age_s=10)
    assert cache.snapshot().is_stale(2)  # never reported
    clock.now += 10.5
    snap = cache.snapshot()
    assert snap.age(1) == pytest.approx(10.5)
    assert snap.is_stale(1, max_age_s=10)
    assert not snap.is_stale(1, max_age_s=11)
    assert not snap.is_stale(1)
    cache.set_link_state(LinkState.DOWN)
    assert cache.snapshot().is_stale(1)
    assert not cache.snapshot().link_ready


def test_data_age_is_the_newest_report() -> None:
    clock = Clock()
    cache = DatapointCache(clock)
    assert cache.snapshot().data_age() is None
    cache.update(DpValue.of_value(1, 5))
    clock.now += 3
    cache.update(DpValue.of_value(15, 2))
    clock.now += 2
    assert cache.snapshot().data_age() == pytest.approx(2)
    assert cache.snapshot().age(1) == pytest.approx(5)
