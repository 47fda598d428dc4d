"""``/api/frames``: the TuyaMCU frames of every link, both directions, to any number of clients.

The link calls the hub synchronously for every frame, so the hub does no more there than
append a tuple to a bounded history and to each client's bounded queue. Frames are decoded and
encoded as JSON later, in each client's own handler. A client whose queue is full (it reads
slower than the links talk) is dropped rather than allowed to hold anything back.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping

from gateway.tuya.protocol import Command, Frame, decode_dps
from gateway.web.views import WatchedUnit, describe_dp

__all__ = ["FrameHub", "Subscription"]

_LOGGER = logging.getLogger(__name__)

HISTORY = 100  # frames a new client is shown first
CLIENT_QUEUE = 512  # frames waiting for one client before it is dropped
_DP_COMMANDS = (Command.DP_COMMAND, Command.DP_REPORT, Command.DP_SYNC_REPORT)

# (wall clock, unit id, direction, frame); None closes a subscription.
Event = tuple[float, int, str, Frame]


@dataclasses.dataclass(eq=False, slots=True)
class Subscription:
    """One client's queue of frames; ``dropped`` once it fell too far behind."""

    queue: asyncio.Queue[Event | None]
    dropped: bool = False


class FrameHub:
    """Fans the links' frames out to the subscribed clients."""

    def __init__(self, units: Mapping[int, WatchedUnit]) -> None:
        self._units = units
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._clients: set[Subscription] = set()
        self._removers: list[Callable[[], None]] = []

    def start(self) -> None:
        """Listen to every link."""
        for unit_id, unit in self._units.items():
            self._removers.append(unit.link.add_traffic_listener(self._listener(unit_id)))

    def stop(self) -> None:
        """Stop listening and end every client's stream."""
        for remove in self._removers:
            remove()
        self._removers.clear()
        for client in list(self._clients):
            self.unsubscribe(client)
            try:
                client.queue.put_nowait(None)
            except asyncio.QueueFull:
                client.dropped = True

    def subscribe(self) -> Subscription:
        """A new client's queue, holding the recent history first."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(CLIENT_QUEUE)
        shown = min(len(self._history), CLIENT_QUEUE // 2)  # room left for live frames
        for event in list(self._history)[len(self._history) - shown :]:
            queue.put_nowait(event)
        client = Subscription(queue)
        self._clients.add(client)
        return client

    def unsubscribe(self, client: Subscription) -> None:
        self._clients.discard(client)

    def _listener(self, unit_id: int) -> Callable[[str, Frame], None]:
        def on_frame(direction: str, frame: Frame) -> None:
            event = (time.time(), unit_id, direction, frame)
            self._history.append(event)
            for client in list(self._clients):
                try:
                    client.queue.put_nowait(event)
                except asyncio.QueueFull:
                    client.dropped = True
                    self._clients.discard(client)
                    _LOGGER.info("frame stream: dropped a client that fell behind")

        return on_frame

    def encode(self, event: Event) -> str:
        """The event as one JSON object: the frame decoded with the unit's map."""
        at, unit_id, direction, frame = event
        body: dict[str, object] = {
            "at": at,
            "unit": unit_id,
            "dir": direction,
            "command": _command_name(frame.command),
            "version": frame.version,
            "text": frame.describe(),
            "hex": frame.encode().hex(" "),
        }
        if frame.command in _DP_COMMANDS:
            regmap = self._units[unit_id].register_map
            body["dps"] = [
                {
                    "dp": dp.dpid,
                    "name": spec.name if (spec := regmap.datapoint_by_id(dp.dpid)) else None,
                    "text": describe_dp(spec, dp),
                }
                for dp in decode_dps(frame.data).values
            ]
        return json.dumps(body)


def _command_name(command: int) -> str:
    try:
        return Command(command).name
    except ValueError:
        return f"0x{command:02X}"
