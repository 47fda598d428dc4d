"""Link URL schemes: each names an async opener that connects a protocol to an MCU.

Paths and pyserial URLs (``/dev/ttyUSB0``, ``rfc2217://...``) open through pyserial,
``socket://h:p`` as a plain TCP connection. Other packages register their own schemes; the
MCU twin registers ``sim://`` when ``gateway.twin`` is imported, so the link never needs to
know it.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib.util
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

__all__ = [
    "Opener",
    "UrlCheck",
    "link_problem",
    "open_transport",
    "register_opener",
    "registered_schemes",
]

Opener = Callable[[str, asyncio.Protocol, int], Awaitable[asyncio.BaseTransport]]
"""``opener(url, protocol, baudrate)``: the open transport, ``protocol`` connected to it."""

UrlCheck = Callable[[str], str | None]
"""``check(url)``: why ``url`` can never open (one line), or None."""

_OPENERS: dict[str, Opener] = {}
_CHECKS: dict[str, UrlCheck] = {}
_HOST_PORT_SCHEMES = ("socket", "rfc2217")
_SCHEME_HINTS = {"tcp": "socket", "telnet": "rfc2217"}


def register_opener(scheme: str, opener: Opener, check: UrlCheck | None = None) -> None:
    """Open ``scheme://...`` URLs with ``opener`` from now on; ``check`` vets them early."""
    _OPENERS[scheme.lower()] = opener
    if check is not None:
        _CHECKS[scheme.lower()] = check


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


async def _open_socket(
    url: str, protocol: asyncio.Protocol, baudrate: int
) -> asyncio.BaseTransport:
    """socket://HOST:PORT as a plain TCP connection: pyserial's path patches the transport,
    which an event loop written in C (uvloop) does not allow."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(
        lambda: protocol, parts.hostname or "", parts.port or 0
    )
    return transport


def link_problem(url: str) -> str | None:
    """Why the MCU link ``url`` can never open, or None (a device path may appear later)."""
    written, sep, rest = url.partition("://")
    if not sep:
        return None if url.strip() else "the link is empty"
    scheme = written.lower()  # as the openers and pyserial take it
    if scheme in _CHECKS:
        return _CHECKS[scheme](url)
    if scheme in _HOST_PORT_SCHEMES:
        return _host_port_problem(url, scheme)
    if scheme.isidentifier() and importlib.util.find_spec(f"serial.urlhandler.protocol_{scheme}"):
        return None  # pyserial's other URL handlers (loop://, spy://, hwgrep://...)
    known = sorted({*_HOST_PORT_SCHEMES, *_OPENERS})
    close = difflib.get_close_matches(scheme, known, n=1)
    hint = _SCHEME_HINTS.get(scheme) or (close[0] if close else "")
    advice = f" (did you mean {hint}://{rest}?)" if hint else ""
    names = ", ".join(f"{name}://" for name in known)
    return f"unknown link scheme {written}:// in {url!r}{advice}; known: a device path, {names}"


def _host_port_problem(url: str, scheme: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        return f"{url!r}: {err}"
    if parts.hostname and port is not None:
        return None
    return f"{url!r}: expected {scheme}://HOST:PORT"


register_opener("socket", _open_socket)
