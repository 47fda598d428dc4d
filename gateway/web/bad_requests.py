"""One warning line, at most once a minute per client, for a malformed HTTP request.

aiohttp answers such a request 400 itself and logs it at ERROR with a traceback; a client
that sends garbage (or TLS to the HTTP port) would otherwise fill the log with tracebacks.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["BadRequestLines"]

INTERVAL_S = 60.0
MAX_TRACKED = 1024
_AIOHTTP_SERVER = logging.getLogger("aiohttp.server")


class BadRequestLines(logging.Filter):
    """Turns aiohttp's bad-request tracebacks into rate-limited one-line warnings."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()

    def install(self) -> None:
        _AIOHTTP_SERVER.addFilter(self)

    def remove(self) -> None:
        _AIOHTTP_SERVER.removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        where = record.getMessage()
        if not self._due(where):
            return False
        reason = str(error.message).strip().splitlines()[0][:120]
        record.msg, record.args = "http: %s: %d %s", (where, error.code, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True

    def _due(self, where: str) -> bool:
        now = self._clock()
        last = self._last.get(where)
        if last is not None and now - last < INTERVAL_S:
            return False
        self._last.pop(where, None)
        self._last[where] = now
        if len(self._last) > MAX_TRACKED:
            self._last.popitem(last=False)
        return True
