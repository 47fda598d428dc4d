"""A list of callbacks that one failing callback cannot break."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, ParamSpec

__all__ = ["Listeners"]

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
