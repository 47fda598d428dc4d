"""The bounded outgoing queue: one slot per topic, the newest message wins, overflow refused.

Producers never wait. ``put`` replaces a topic's pending message in place (a point that changes
faster than the broker takes it sends only its latest value). A message for a new topic that
finds every slot taken is refused and counted, never queued by evicting another: nothing
already queued is lost, and the producer keeps the refused message due and offers it (or its
newer value) again once :meth:`Outbox.room` says there is room. So a slow or absent broker
costs the Modbus side nothing but a dict assignment, and every topic's latest message arrives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

__all__ = ["Outbox", "Outgoing"]

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: str
    retain: bool = True
    qos: int = 0


class Outbox:
    """Pending messages by topic, oldest first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0  # messages refused because the queue was full (sent again later)
        self.replaced = 0
        self._pending: dict[str, Outgoing] = {}
        self._ready = asyncio.Event()
        self._room = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.limit

    def put(self, message: Outgoing) -> bool:
        """Queue ``message``; False (and counted) when it needs a slot and none is free."""
        if message.topic in self._pending:
            self.replaced += 1
        elif self.full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _LOGGER.warning(
                    "mqtt: outgoing queue full (%d slots): %d messages held back so far,"
                    " each sent later with its newest value",
                    self.limit,
                    self.dropped,
                )
            return False
        self._pending[message.topic] = message
        self._ready.set()
        return True

    async def room(self) -> None:
        """Wait until at least half the slots are free."""
        while len(self._pending) > self.limit // 2:
            self._room.clear()
            await self._room.wait()

    async def get(self) -> Outgoing:
        """The oldest pending message, waiting for one."""
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        topic = next(iter(self._pending))
        message = self._pending.pop(topic)
        if len(self._pending) <= self.limit // 2:
            self._room.set()
        return message
