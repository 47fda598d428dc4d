"""The live status values of one unit: exactly the names of ``gateway.regmap.status``.

The table (name, kind, range) is in :mod:`gateway.regmap.status`, because the map checker
needs it and the regmap layer imports nothing from ``unit``; the values are made here, from
the cache snapshot, the unit's counters and the link.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from gateway.tuya.link import LinkState, McuLink
from gateway.unit.cache import CacheSnapshot
from gateway.unit.values import StatusValues

__all__ = ["link_status", "unit_status"]

_STATES = tuple(LinkState)  # handshake_state is the state's position in this order


def link_status(link: McuLink) -> Callable[[], StatusValues]:
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
            "product_key": info.product_key if info is not None else None,
        }

    return status


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
    assert dataclasses.is_dataclass(counters)
    values.update((f.name, getattr(counters, f.name)) for f in dataclasses.fields(counters))
    return values
