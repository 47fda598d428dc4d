"""Link URL schemes: each names an async opener that connects a protocol to an MCU.

Paths and pyserial URLs (``/dev/ttyUSB0``, ``socket://h:p``, ``rfc2217://...``) open through
pyserial. Other packages register their own schemes; the MCU twin registers ``sim://`` when
``gateway.twin`` is imported, so the link never needs to know it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Opener", "open_transport", "register_opener", "registered_schemes"]

Opener = Callable[[str, asyncio.Protocol, int], Awaitable[asyncio.BaseTransport]]
"""``opener(url, protocol, baudrate)``: the open transport, ``protocol`` connected to it."""

_OPENERS: dict[str, Opener] = {}


def register_opener(scheme: str, opener: Opener) -> None:
    """Open ``scheme://...`` URLs with ``opener`` from now on."""
    _OPENERS[scheme.lower()] = opener


def registered_schemes() -> tuple[str, ...]:
    return tuple(sorted(_OPENERS))


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


async def open_transport(
    url: str, protocol: asyncio.Protocol, baudrate: int
) -> asyncio.BaseTransport:
    """Connect ``protocol`` to ``url``; OSError when it cannot open, ValueError for a bad URL."""
    opener = _OPENERS.get(_scheme(url), _open_serial)
    return await opener(url, protocol, baudrate)


async def _open_serial(
    url: str, protocol: asyncio.Protocol, baudrate: int
) -> asyncio.BaseTransport:
    import serial_asyncio_fast  # only serial links need the serial stack

    loop = asyncio.get_running_loop()
    transport, _ = await serial_asyncio_fast.create_serial_connection(
        loop, lambda: protocol, url, baudrate=baudrate
    )
    return transport
