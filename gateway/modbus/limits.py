"""Per-address bookkeeping for the TCP listeners: rate-limited warnings and connection counts."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["AddressCounts", "RateLimitedLog"]

# A client spraying source addresses (IPv6) must not grow these tables without bound.
MAX_TRACKED_ADDRESSES = 4096


class RateLimitedLog:
    """Logs at most one warning per address and interval, with the count of those held back."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def warning(self, address: str, message: str, *args: object) -> bool:
        """Log ``message % args`` for ``address`` unless it logged within the interval."""
        now = self._clock()
        last, held = self._seen.get(address, (None, 0))
        if last is not None and now - last < self.interval_s:
            self._seen[address] = (last, held + 1)
            return False
        self._seen.pop(address, None)
        self._seen[address] = (now, 0)
        if len(self._seen) > MAX_TRACKED_ADDRESSES:
            self._seen.popitem(last=False)
        if held:
            message += " (%d more from this address in the last %.0f s)"
            args = (*args, held, now - last if last is not None else 0.0)
        self._logger.warning(message, *args, stacklevel=2)
        return True


class AddressCounts:
    """Open connections per client address."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def get(self, address: str) -> int:
        return self._counts.get(address, 0)

    def add(self, address: str) -> None:
        self._counts[address] = self._counts.get(address, 0) + 1

    def remove(self, address: str) -> None:
        left = self._counts.get(address, 0) - 1
        if left > 0:
            self._counts[address] = left
        else:
            self._counts.pop(address, None)
