"""The breaker's motor: a remote switch command moves the lever ``time_s`` later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["TwinMotor"]


class TwinMotor:
    """One move at a time; ``arrived(on)`` runs when a move ends."""

    def __init__(self, time_s: float, arrived: Callable[[bool], None]) -> None:
        self.time_s = time_s
        self._arrived = arrived
        self._handle: asyncio.TimerHandle | None = None
        self._target = False

    @property
    def moving(self) -> bool:
        return self._handle is not None

    def heading_to(self, on: bool) -> bool:
        return self._handle is not None and self._target == on

    def start(self, on: bool) -> None:
        self.cancel()
        self._target = on
        self._handle = asyncio.get_running_loop().call_later(self.time_s, self._done, on)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _done(self, on: bool) -> None:
        self._handle = None
        self._arrived(on)
