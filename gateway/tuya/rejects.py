"""DP records the link rejects: counted each time, logged at most once a minute per DP id.

A hostile or broken MCU can send the same malformed record in every report; one warning per
DP id and interval, with the count of those held back, keeps the log readable and bounded.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.tuya.channel import LinkStats

__all__ = ["RejectedRecords"]

_LOGGER = logging.getLogger("gateway.tuya.link")  # the link's own lines, as before
_MAX_KEYS = 512  # 255 DP ids and the record-header errors: the table cannot grow past this


def record_key(error: str) -> str:
    """``dp5: ...`` → ``dp5``; an error that names no DP (a truncated header) → ``header``."""
    head = error.partition(":")[0]
    return head if head.startswith("dp") and head[2:].isdigit() else "header"


class RejectedRecords:
    """Counts rejected DP records in the link's stats and logs them rate-limited per DP id."""

    def __init__(
        self,
        stats: LinkStats,
        url: str,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._url = url
        self.interval_s = interval_s
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def note(self, errors: tuple[str, ...]) -> None:
        for error in errors:
            self._stats.dp_errors += 1
            self._warn(record_key(error), error)

    def _warn(self, key: str, error: str) -> None:
        now = self._clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.interval_s:
            self._seen[key] = (last, held + 1)
            return
        self._seen.pop(key, None)
        self._seen[key] = (now, 0)
        if len(self._seen) > _MAX_KEYS:
            self._seen.popitem(last=False)
        more = f" ({held} more for {key} in the last {now - (last or now):.0f} s)" if held else ""
        _LOGGER.warning("link %s: rejected DP record: %s%s", self._url, error, more)
