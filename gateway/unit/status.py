"""The live status values of one unit: exactly the names of ``gateway.regmap.status``.

The table (name, kind, range) is in :mod:`gateway.regmap.status`, because the map checker
needs it and the regmap layer imports nothing from ``unit``; the values are made here, from
the cache snapshot, the unit's counters and the link.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping

from gateway.regmap.specs import RegisterMap
from gateway.tuya.link import LinkState, McuLink
from gateway.unit.cache import CacheSnapshot
from gateway.unit.energy import LifetimeEnergy
from gateway.unit.values import StatusValues

__all__ = ["LiveStatus", "link_status", "product_key_check", "unit_status"]

_LOGGER = logging.getLogger(__name__)
_STATES = tuple(LinkState)  # handshake_state is the state's position in this order


def link_status(
    link: McuLink,
    lifetime: LifetimeEnergy | None = None,
    more: Callable[[], StatusValues] = dict,
) -> Callable[[], StatusValues]:
    """The live link values a map's status points show."""

    def status() -> StatusValues:
        stats = link.stats
        info = link.product_info
        return {
            "mcu_reboots": stats.mcu_reboots,
            "frames_received": stats.frames_received,
            "frames_sent": stats.frames_sent,
            "checksum_errors": stats.checksum_errors,
            "heartbeat_rtt_ms": stats.heartbeat_rtt_ms,
            "late_confirmations": stats.late_confirmations,
            "product_key": info.product_key if info is not None else None,
            "lifetime_energy": _kwh(lifetime),
            "refused_connections": 0,  # the security policy's counts come in ``more``
            "refused_writes": 0,
            **more(),
        }

    return status


def _kwh(lifetime: LifetimeEnergy | None) -> float | None:
    value = lifetime.value() if lifetime is not None else None
    return None if value is None else float(value)


def product_key_check(
    unit_id: int, link: McuLink, register_map: Callable[[], RegisterMap]
) -> Callable[[LinkState], None]:
    """A state listener that reports the MCU's product key and shouts on a mismatch."""

    def on_state(state: LinkState) -> None:
        if state is not LinkState.READY:
            return
        info = link.product_info
        found = info.product_key if info is not None else None
        device = register_map().device
        if device.product_key is not None and found not in device.product_keys:
            _LOGGER.warning(
                "unit %d: PRODUCT KEY MISMATCH: the MCU on %s reports %r but map %s expects %r;"
                " the map may not fit this breaker, check every value before trusting it",
                unit_id,
                link.config.url,
                found,
                register_map().path,
                device.product_key,
            )
        else:
            version = info.version if info is not None else "?"
            _LOGGER.info(
                "unit %d: link READY, product key %r, MCU version %s", unit_id, found, version
            )

    return on_state


def unit_status(
    snapshot: CacheSnapshot, counters: object, link: Callable[[], StatusValues] | None
) -> dict[str, bool | int | float | str | None]:
    """Every status value, live: the link's, the snapshot's and the unit's counters."""
    values: dict[str, bool | int | float | str | None] = {
        "link_online": snapshot.link_ready,
        "handshake_state": _STATES.index(snapshot.link_state),
        "data_age_s": snapshot.data_age(),
    }
    if link is not None:
        values.update(link())
    values.update((name, getattr(counters, name)) for name in _counter_names(type(counters)))
    return values


def _counter_names(counters: type) -> tuple[str, ...]:
    names = _COUNTER_NAMES.get(counters)
    if names is None:
        assert dataclasses.is_dataclass(counters)
        names = _COUNTER_NAMES[counters] = tuple(f.name for f in dataclasses.fields(counters))
    return names


_COUNTER_NAMES: dict[type, tuple[str, ...]] = {}


class LiveStatus(Mapping[str, bool | int | float | str | None]):
    """The values of :func:`unit_status`, each made when a point asks for it (reads)."""

    __slots__ = ("_counters", "_link", "_link_values", "_snapshot")

    def __init__(
        self, snapshot: CacheSnapshot, counters: object, link: Callable[[], StatusValues] | None
    ) -> None:
        self._snapshot = snapshot
        self._counters = counters
        self._link = link
        self._link_values: StatusValues | None = None

    def __getitem__(self, name: str) -> bool | int | float | str | None:
        snapshot = self._snapshot
        if name == "data_age_s":
            return snapshot.data_age()
        if name == "link_online":
            return snapshot.link_ready
        if name == "handshake_state":
            return _STATES.index(snapshot.link_state)
        if name in _counter_names(type(self._counters)):
            value: int = getattr(self._counters, name)
            return value
        if self._link_values is None:
            self._link_values = {} if self._link is None else self._link()
        return self._link_values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(unit_status(self._snapshot, self._counters, self._link))

    def __len__(self) -> int:
        return len(unit_status(self._snapshot, self._counters, self._link))
