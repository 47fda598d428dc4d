"""The in-process ``sim://`` link: a transport between the link's protocol and a new twin.

Importing :mod:`gateway.twin` registers the ``sim`` scheme with the link's openers. Tests and
demos reach the twin behind a ``sim://`` link with :func:`running_twin`.
"""

from __future__ import annotations

import asyncio

from gateway.errors import ConfigError
from gateway.tuya.openers import register_opener
from gateway.twin.mcu import McuTwin
from gateway.twin.options import parse_sim_url

__all__ = ["SimTransport", "open_sim_link", "running_twin"]

_RUNNING: dict[str, McuTwin] = {}


def running_twin(url: str) -> McuTwin | None:
    """The twin behind the newest open ``sim://`` link to ``url`` (None once it closed)."""
    return _RUNNING.get(url)


class SimTransport(asyncio.Transport):
    """An in-process transport between a protocol and a twin; deliveries go through call_soon."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, twin: McuTwin, protocol: asyncio.Protocol, url: str
    ) -> None:
        super().__init__({"peername": url, "twin": twin})
        self._loop = loop
        self._twin = twin
        self._protocol = protocol
        self._closing = False
        self._reading = True
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self._loop.call_soon(self._to_twin, bytes(data))

    def _to_twin(self, data: bytes) -> None:
        if not self._closing:
            self._twin.data_received(data)

    def from_twin(self, data: bytes) -> None:
        """The twin's ``send``: hand the bytes to the protocol on a later loop turn."""
        if not self._closing:
            self._loop.call_soon(self._to_protocol, data)

    def _to_protocol(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._reading:
            self._held.append(data)
            return
        self._protocol.data_received(data)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        url = self.get_extra_info("peername")
        if _RUNNING.get(url) is self._twin:
            del _RUNNING[url]
        self._twin.connection_lost()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        held, self._held = self._held, []
        for data in held:
            self._loop.call_soon(self._to_protocol, data)

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False


async def open_sim_link(url: str, protocol: asyncio.Protocol) -> tuple[SimTransport, McuTwin]:
    """Connect ``protocol`` to a new in-process twin described by the ``sim://`` ``url``."""
    twin = McuTwin(parse_sim_url(url))
    loop = asyncio.get_running_loop()
    transport = SimTransport(loop, twin, protocol, url)
    _RUNNING[url] = twin
    twin.connection_made(transport.from_twin)
    protocol.connection_made(transport)
    return transport, twin


async def _open(url: str, protocol: asyncio.Protocol, baudrate: int) -> asyncio.BaseTransport:
    transport, _twin = await open_sim_link(url, protocol)
    return transport


def _problem(url: str) -> str | None:
    try:
        parse_sim_url(url)
    except ConfigError as err:
        return "; ".join(err.errors)
    return None


register_opener("sim", _open, _problem)
