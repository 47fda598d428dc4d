"""The sampler: units marked dirty by their links' reports become messages in the outbox.

It fills the outbox only while it has room (:meth:`Outbox.room`), one unit at a time. A unit
whose messages did not all fit keeps them due (:class:`UnitFeed`) and goes to the back of the
line, behind the units that did not get their turn: while the broker is slower than the
breakers every unit gets its turn, and each point's newest value arrives in the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from gateway.mqtt.feed import UnitFeed
from gateway.mqtt.outbox import Outbox

__all__ = ["Sampler"]

Dirty = dict[int, set[int] | None]  # unit -> the DPs reported since; None: every point


class Sampler:
    """Dirty units -> the outbox, while it has room."""

    def __init__(self, feeds: Mapping[int, UnitFeed], outbox: Outbox) -> None:
        self.feeds = feeds
        self._outbox = outbox
        self._dirty: Dirty = {}
        self._wake = asyncio.Event()

    def mark(self, unit_id: int, dpid: int) -> None:
        """``dpid`` of the unit was reported; O(1), never blocks."""
        reported = self._dirty.setdefault(unit_id, set())
        if reported is not None:
            reported.add(dpid)
        self._wake.set()

    def mark_all(self, unit_id: int) -> None:
        """Look at every point of the unit."""
        self._dirty[unit_id] = None
        self._wake.set()

    def republish(self) -> None:
        """Everything again: availability, discovery, every point's state (a new session)."""
        for unit_id, feed in self.feeds.items():
            feed.forget()
            self.mark_all(unit_id)

    def announce(self) -> None:
        """Discovery again (Home Assistant came online)."""
        for unit_id, feed in self.feeds.items():
            feed.announce()
            self._dirty.setdefault(unit_id, set())
        self._wake.set()

    async def run(self) -> None:
        held: dict[int, float] = {}  # unit -> when a rate-limited value is due
        while True:
            delay = None if not held else max(0.0, min(held.values()) - time.monotonic())
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            await self._outbox.room()
            self._wake.clear()
            now = time.monotonic()
            dirty, self._dirty = self._dirty, {}
            for unit_id, when in list(held.items()):
                if when <= now:
                    dirty.setdefault(unit_id, set())
            await self._sample(list(dirty.items()), now, held)

    async def _sample(
        self, dirty: list[tuple[int, set[int] | None]], now: float, held: dict[int, float]
    ) -> None:
        for index, (unit_id, reported) in enumerate(dirty):
            held.pop(unit_id, None)
            feed = self.feeds[unit_id]
            due = feed.fill(now, self._outbox.put, reported)
            if due is not None:
                held[unit_id] = due
            if feed.blocked:  # the outbox is full
                self._requeue([*dirty[index + 1 :], (unit_id, reported)])
                return
            await asyncio.sleep(0)  # one unit at a time: Modbus requests get their turn

    def _requeue(self, first: list[tuple[int, set[int] | None]]) -> None:
        """``first`` ahead of the units marked since."""
        merged: Dirty = dict(first)
        for unit_id, reported in self._dirty.items():
            earlier = merged.get(unit_id, set())
            merged[unit_id] = None if earlier is None or reported is None else earlier | reported
        self._dirty = merged
        self._wake.set()
