"""A list of callbacks that one failing callback cannot break, and the link's four lists."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, ParamSpec

from gateway.tuya.link_config import LinkState
from gateway.tuya.protocol import DpValue, Dropped, Frame

__all__ = ["LinkEvents", "Listeners"]

_LOGGER = logging.getLogger(__name__)

P = ParamSpec("P")


class Listeners(Generic[P]):
    """Callbacks called in the order added; an exception is logged, never raised."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._callbacks: list[Callable[P, None]] = []

    def add(self, callback: Callable[P, None]) -> Callable[[], None]:
        """Add ``callback``; returns the function that removes it again."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def notify(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for callback in list(self._callbacks):
            try:
                callback(*args, **kwargs)
            except Exception:  # a listener's bug must not break the link
                _LOGGER.exception("link: %s listener failed", self._what)


class LinkEvents:
    """What a link tells its listeners: DP reports, state changes, frames and dropped bytes."""

    def __init__(self) -> None:
        self._reports: Listeners[[DpValue]] = Listeners("report")
        self._states: Listeners[[LinkState]] = Listeners("state")
        self._traffic: Listeners[[str, Frame]] = Listeners("traffic")
        self._drops: Listeners[[Dropped]] = Listeners("drop")

    def add_report_listener(self, cb: Callable[[DpValue], None]) -> Callable[[], None]:
        return self._reports.add(cb)

    def add_state_listener(self, cb: Callable[[LinkState], None]) -> Callable[[], None]:
        return self._states.add(cb)

    def add_traffic_listener(self, cb: Callable[[str, Frame], None]) -> Callable[[], None]:
        """Call ``cb(direction, frame)`` for every frame, 'rx' from the MCU or 'tx' to it."""
        return self._traffic.add(cb)

    def add_drop_listener(self, cb: Callable[[Dropped], None]) -> Callable[[], None]:
        """Call ``cb(event)`` for what the decoder drops, in order with the 'rx' frames."""
        return self._drops.add(cb)
