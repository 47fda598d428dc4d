"""UnitFeed: what one unit still owes the broker (availability, discovery, point values).

Everything a unit publishes is kept due here until the outbox takes it, so a full outbox
delays a message but never loses it. The unit's map is looked at on every pass: ``--map
auto`` replaces a placeholder once the MCU's product key chose the real map, and the feed
then starts over with that map (its discovery, every point's value).
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Collection

from gateway.mqtt.discovery import discovery_messages
from gateway.mqtt.outbox import Outgoing
from gateway.mqtt.state import Emit, UnitState
from gateway.mqtt.topics import OFFLINE, ONLINE, Topics
from gateway.unit.cache import CacheSnapshot
from gateway.unit.values import StatusValues
from gateway.unit.view import UnitView

__all__ = ["UnitFeed"]

_LOGGER = logging.getLogger(__name__)


class UnitFeed:
    """One unit's availability, discovery and state, each kept due until queued."""

    def __init__(self, unit: UnitView, unit_id: int, topics: Topics, min_interval_s: float) -> None:
        self._unit = unit
        self.unit_id = unit_id
        self._topics = topics
        self._min_interval_s = min_interval_s
        self.online: bool | None = None
        self._status_due = False
        self._discovery: collections.deque[Outgoing] = collections.deque()
        self._every_point = True  # look at every point on the next pass, not just reported ones
        self.state = self._new_state()

    def _new_state(self) -> UnitState:
        regmap = self._unit.register_map
        return UnitState(regmap, self._topics, self.unit_id, self._min_interval_s, self._status)

    def _status(self, snapshot: CacheSnapshot) -> StatusValues:
        return self._unit.backend.status_values(snapshot)  # the backend of the current map

    @property
    def blocked(self) -> bool:
        """Whether something did not fit in the outbox and waits for room."""
        return self._status_due or bool(self._discovery) or self.state.blocked

    def set_online(self, online: bool) -> None:
        """The unit's link came up or went down: its availability is due."""
        if self.online != online:
            self.online = online
            self._status_due = True

    def announce(self) -> None:
        """Discovery is due (again)."""
        self._discovery = collections.deque(
            Outgoing(topic, json.dumps(config), qos=1)
            for topic, config in discovery_messages(self.state.regmap, self._topics, self.unit_id)
        )

    def forget(self) -> None:
        """A new broker session: availability, discovery and every value are due."""
        self._status_due = self.online is not None
        self.announce()
        self.state.forget()
        self._every_point = True

    def fill(self, now: float, emit: Emit, reported: Collection[int] | None) -> float | None:
        """Offer what is due to ``emit``; the time a held value is due, if any."""
        if self._unit.register_map is not self.state.regmap:
            _LOGGER.info(
                "mqtt: unit %d now serves map %s: discovery and values again",
                self.unit_id,
                self._unit.register_map.path,
            )
            self.state = self._new_state()
            self.announce()
            self._every_point = True
        if self._status_due:
            status = Outgoing(
                self._topics.unit_status(self.unit_id), ONLINE if self.online else OFFLINE, qos=1
            )
            self._status_due = not emit(status)
        while self._discovery and emit(self._discovery[0]):
            self._discovery.popleft()
        if self._status_due or self._discovery:  # the outbox is full: values wait too
            return None
        if self._every_point:
            reported, self._every_point = None, False
        return self.state.due(self._unit.cache.snapshot(), now, emit, reported)
