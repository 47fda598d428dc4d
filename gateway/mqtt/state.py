"""Which point values and attributes to publish, and when: on change, rate-limited. Pure code.

A point is published when its payload or its staleness changes, but at most once per
``min_interval_s``: a change inside the interval is held and sent, as its newest value, when
the interval ends (``next_due`` says when to look again).
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

__all__ = ["StatusOf", "UnitState"]

StatusOf = Callable[[CacheSnapshot], StatusValues]


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

    def forget(self) -> None:
        """Treat everything as unpublished (a new broker session republishes it all)."""
        self._sent = {p.name: _Sent() for p in self._points}

    def _candidates(self, reported: Collection[int] | None) -> list[PointSpec]:
        """Every point, or those reading a reported DP, held ones, and those reading none."""
        if reported is None:
            return list(self._points)
        found = {p.name: p for p in self._points if not self._dpids[p.name]}
        found.update(self._held)
        for dpid in reported:
            found.update((p.name, p) for p in self._readers.get(dpid, ()))
        return list(found.values())

    def due(
        self,
        snapshot: CacheSnapshot,
        now: float,
        emit: Callable[[Outgoing], None],
        reported: Collection[int] | None = None,
    ) -> float | None:
        """Emit what changed and may be sent now; the time a held change is due, if any.

        ``reported``: the DPs reported since the last call; None looks at every point.
        """
        next_due: float | None = None
        status = self._status(snapshot) if self._status is not None else {}
        for point in self._candidates(reported):
            held = self._check(point, snapshot, status, now, emit)
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
        emit: Callable[[Outgoing], None],
    ) -> float | None:
        reading = read_source(point.source, self.regmap.datapoints, snapshot, status)
        if reading.value is None:
            payload, stale = None, True
        else:
            payload, stale = format_value(point, reading.value), reading.stale
        sent = self._sent[point.name]
        if payload is None and sent.payload is None and sent.stale is not None:
            return None
        if (payload is None or payload == sent.payload) and stale == sent.stale:
            return None
        if sent.at is not None and now - sent.at < self._min_interval_s:
            return sent.at + self._min_interval_s
        if payload is not None and payload != sent.payload:
            emit(Outgoing(self._topics.state(self.unit, point.name), payload))
            sent.payload = payload
        emit(self._attributes(point, snapshot, stale))
        sent.stale, sent.at = stale, now
        return None

    def _attributes(self, point: PointSpec, snapshot: CacheSnapshot, stale: bool) -> Outgoing:
        ages = [snapshot.age(dpid) for dpid in self._dpids[point.name]]
        known = [age for age in ages if age is not None]
        age = round(max(known), 3) if known and len(known) == len(ages) else None
        body = {"age_s": age, "stale": stale, "unit_of_measurement": point.unit or None}
        return Outgoing(self._topics.attributes(self.unit, point.name), json.dumps(body))
