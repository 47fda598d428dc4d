"""The datapoint cache: what the MCU last reported, when, and whether it can still be trusted.

The cache is the gateway's only truth. Every report replaces one entry in a new dict, so a
snapshot is just the current dict: readers get all DPs as of one instant and a multi-register
value is never torn between two reports.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from gateway.tuya.link import LinkState
from gateway.tuya.protocol import DpType, DpValue

__all__ = ["CacheSnapshot", "DatapointCache", "DpEntry"]

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class DpEntry:
    """The last report of one DP: its value, monotonic time, and how many reports so far."""

    dp: DpValue
    timestamp: float
    updates: int

    @property
    def raw(self) -> bytes:
        return self.dp.payload


@dataclasses.dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """All DPs and the link state as of one instant."""

    entries: Mapping[int, DpEntry]
    link_state: LinkState
    taken_at: float
    last_update: float | None = None

    @property
    def link_ready(self) -> bool:
        return self.link_state is LinkState.READY

    def get(self, dpid: int) -> DpEntry | None:
        return self.entries.get(dpid)

    def age(self, dpid: int) -> float | None:
        """Seconds since the DP's last report; None if it never reported."""
        entry = self.entries.get(dpid)
        return None if entry is None else max(0.0, self.taken_at - entry.timestamp)

    def data_age(self) -> float | None:
        """Seconds since the newest report of any DP."""
        if self.last_update is None:
            return None
        return max(0.0, self.taken_at - self.last_update)

    def is_stale(self, dpid: int, max_age_s: float | None = None) -> bool:
        """Never reported, link not READY, or older than ``max_age_s``."""
        age = self.age(dpid)
        if age is None or not self.link_ready:
            return True
        return max_age_s is not None and age > max_age_s


class DatapointCache:
    """Last value per DP and the link state."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        types: Mapping[int, DpType] | None = None,
    ) -> None:
        self._clock = clock
        self._types: Mapping[int, DpType] = types or {}  # the map's type of each known DP
        self.wrong_type_reports = 0
        self._wrong_types_logged: set[int] = set()
        self._entries: Mapping[int, DpEntry] = MappingProxyType({})
        self._link_state = LinkState.STOPPED
        self._last_update: float | None = None

    def set_types(self, types: Mapping[int, DpType]) -> None:
        """The map's type of each DP, once the map is known (``--map auto`` chooses it late)."""
        self._types = types

    @property
    def link_state(self) -> LinkState:
        return self._link_state

    def update(self, dp: DpValue) -> None:
        """Store a report (the link's report listener).

        A report whose type is not the map's is refused: it refreshes nothing, not even the
        data age, so a misbehaving MCU cannot keep old values looking fresh.
        """
        if not self._type_matches(dp):
            return
        now = self._clock()
        previous = self._entries.get(dp.dpid)
        count = 1 if previous is None else previous.updates + 1
        entries = dict(self._entries)
        entries[dp.dpid] = DpEntry(dp, now, count)
        self._entries = MappingProxyType(entries)
        self._last_update = now

    def _type_matches(self, dp: DpValue) -> bool:
        expected = self._types.get(dp.dpid)
        if expected is None or expected is dp.dp_type:
            return True
        self.wrong_type_reports += 1
        if dp.dpid not in self._wrong_types_logged:
            self._wrong_types_logged.add(dp.dpid)
            _LOGGER.warning(
                "dp%d reported as %s, the map says %s: report ignored (logged once per DP)",
                dp.dpid,
                dp.dp_type.name.lower(),
                expected.name.lower(),
            )
        return False

    def set_link_state(self, state: LinkState) -> None:
        """The link's state listener."""
        if state is not self._link_state:
            _LOGGER.debug("link state %s -> %s", self._link_state.name, state.name)
        self._link_state = state

    def snapshot(self) -> CacheSnapshot:
        return CacheSnapshot(self._entries, self._link_state, self._clock(), self._last_update)
