"""The bounded outgoing queue: one slot per topic, the newest message wins, overflow counted.

Producers never wait: ``put`` replaces a topic's pending message in place (a point that changes
faster than the broker takes it sends only its latest value) and, when every slot is taken,
drops the oldest pending message and counts it. So a slow or absent broker costs the Modbus
side nothing but a dict assignment.
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
        self.dropped = 0
        self.replaced = 0
        self._pending: dict[str, Outgoing] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, message: Outgoing) -> None:
        """Queue ``message``; never blocks."""
        if message.topic in self._pending:
            self.replaced += 1
        elif len(self._pending) >= self.limit:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _LOGGER.warning("mqtt: outgoing queue full, %d messages dropped", self.dropped)
        self._pending[message.topic] = message
        self._ready.set()

    async def get(self) -> Outgoing:
        """The oldest pending message, waiting for one."""
        while not self._pending:
            self._ready.clear()
            await self._ready.wait()
        topic = next(iter(self._pending))
        return self._pending.pop(topic)
