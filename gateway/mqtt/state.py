"""Which point values and attributes to publish, and when: on change, rate-limited. Pure code.

A point is published when its payload or its staleness changes, but at most once per
``min_interval_s``: a change inside the interval is held and sent, as its newest value, when
the interval ends (``next_due`` says when to look again). A message the full outbox refuses
leaves its point unsent: the point is looked at again on the next call (``blocked`` says so).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection

from gateway.mqtt.discovery import published_points
from gateway.mqtt.outbox import Outgoing
from gateway.mqtt.payloads import format_value, source_dpids
from gateway.mqtt.topics import Topics
from gateway.regmap.specs import PointSpec, RegisterMap
from gateway.unit.cache import CacheSnapshot
from gateway.unit.values import StatusValues, read_source

__all__ = ["Emit", "StatusOf", "UnitState"]

StatusOf = Callable[[CacheSnapshot], StatusValues]
Emit = Callable[[Outgoing], bool]  # False: not queued (the outbox was full)


@dataclasses.dataclass(slots=True)
class _Sent:
    payload: str | None = None
    stale: bool | None = None
    at: float | None = None


class UnitState:
    """The published state of one unit's points."""

    def __init__(
        self,
        regmap: RegisterMap,
        topics: Topics,
        unit: int,
        min_interval_s: float,
        status: StatusOf | None = None,
    ) -> None:
        self.regmap = regmap
        self._status = status
        self.unit = unit
        self._topics = topics
        self._min_interval_s = min_interval_s
        self._points = published_points(regmap)
        self._dpids = {p.name: source_dpids(p.source, regmap.datapoints) for p in self._points}
        self._sent = {p.name: _Sent() for p in self._points}
        self._readers: dict[int, list[PointSpec]] = {}  # dpid -> the points that read it
        for point in self._points:
            for dpid in set(self._dpids[point.name]):
                self._readers.setdefault(dpid, []).append(point)
        self._held: dict[str, PointSpec] = {}  # changed inside min_interval_s, to look at again
        self._unsent: dict[str, PointSpec] = {}  # refused by the full outbox, to offer again

    @property
    def blocked(self) -> bool:
        """Whether some point's message did not fit in the outbox."""
        return bool(self._unsent)

    def forget(self) -> None:
        """Treat everything as unpublished (a new broker session republishes it all)."""
        self._sent = {p.name: _Sent() for p in self._points}

    def _candidates(self, reported: Collection[int] | None) -> list[PointSpec]:
        """Every point, or those reading a reported DP, held ones, and those reading none."""
        if reported is None:
            return list(self._points)
        found = {p.name: p for p in self._points if not self._dpids[p.name]}
        found.update(self._held)
        found.update(self._unsent)
        for dpid in reported:
            found.update((p.name, p) for p in self._readers.get(dpid, ()))
        return list(found.values())

    def due(
        self,
        snapshot: CacheSnapshot,
        now: float,
        emit: Emit,
        reported: Collection[int] | None = None,
    ) -> float | None:
        """Emit what changed and may be sent now; the time a held change is due, if any.

        ``reported``: the DPs reported since the last call; None looks at every point.
        """
        next_due: float | None = None
        status = self._status(snapshot) if self._status is not None else {}
        full = False
        for point in self._candidates(reported):
            if not full:
                fitted, held = self._check(point, snapshot, status, now, emit)
                full = not fitted
            if full:  # this point and the rest wait for room, unread
                self._unsent[point.name] = point
                continue
            self._unsent.pop(point.name, None)
            if held is None:
                self._held.pop(point.name, None)
                continue
            self._held[point.name] = point
            if next_due is None or held < next_due:
                next_due = held
        return next_due

    def _check(
        self,
        point: PointSpec,
        snapshot: CacheSnapshot,
        status: StatusValues,
        now: float,
        emit: Emit,
    ) -> tuple[bool, float | None]:
        """(whether the outbox took what was due, the time a held change is due)."""
        reading = read_source(point.source, self.regmap.datapoints, snapshot, status)
        if reading.value is None:
            payload, stale = None, True
        else:
            payload, stale = format_value(point, reading.value), reading.stale
        sent = self._sent[point.name]
        if payload is None and sent.payload is None and sent.stale is not None:
            return True, None
        if (payload is None or payload == sent.payload) and stale == sent.stale:
            return True, None
        if sent.at is not None and now - sent.at < self._min_interval_s:
            return True, sent.at + self._min_interval_s
        if payload is not None and payload != sent.payload:
            if not emit(Outgoing(self._topics.state(self.unit, point.name), payload)):
                return False, None
            sent.payload = payload
        if not emit(self._attributes(point, snapshot, stale)):
            sent.stale = None  # the attributes are still owed
            return False, None
        sent.stale, sent.at = stale, now
        return True, None

    def _attributes(self, point: PointSpec, snapshot: CacheSnapshot, stale: bool) -> Outgoing:
        ages = [snapshot.age(dpid) for dpid in self._dpids[point.name]]
        known = [age for age in ages if age is not None]
        age = round(max(known), 3) if known and len(known) == len(ages) else None
        body = {"age_s": age, "stale": stale, "unit_of_measurement": point.unit or None}
        return Outgoing(self._topics.attributes(self.unit, point.name), json.dumps(body))
