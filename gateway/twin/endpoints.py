"""Ways to reach an MCU peer (the twin or a capture replay) from outside: TCP and a pty."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import tty
from collections.abc import Callable
from typing import Protocol, cast

__all__ = [
    "McuPeer",
    "PtyEndpoint",
    "close_pty",
    "open_pty",
    "open_pty_endpoint",
    "serve_tcp",
]

_LOGGER = logging.getLogger(__name__)
_READ_SIZE = 4096


class McuPeer(Protocol):
    """What the TCP and pty endpoints drive: the twin, or a capture replay."""

    def connection_made(self, send: Callable[[bytes], None]) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, send: Callable[[bytes], None] | None = None) -> None: ...


class _TwinStreamProtocol(asyncio.Protocol):
    """One TCP connection to a twin."""

    def __init__(self, twin: McuPeer) -> None:
        self._twin = twin
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small frames must not wait for Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _LOGGER.info("twin: TCP client %s", transport.get_extra_info("peername"))
        self._twin.connection_made(self._write)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._twin.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._twin.connection_lost(self._write)  # the twin may serve a newer connection now


async def serve_tcp(host: str, port: int, twin_factory: Callable[[], McuPeer]) -> asyncio.Server:
    """Serve a twin per TCP connection (``socket://host:port`` for the gateway)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _TwinStreamProtocol(twin_factory()), host, port)


@dataclasses.dataclass(slots=True)
class PtyEndpoint:
    """A pseudo-terminal whose master side is the twin; the gateway opens ``path``."""

    path: str
    master_fd: int
    slave_fd: int
    twin: McuPeer
    bytes_lost: int = 0

    def close(self) -> None:
        if self.master_fd < 0:
            return
        asyncio.get_running_loop().remove_reader(self.master_fd)
        self.twin.connection_lost()
        os.close(self.master_fd)
        os.close(self.slave_fd)
        self.master_fd = self.slave_fd = -1
        _PTYS.pop(self.path, None)

    def _read(self) -> None:
        try:
            data = os.read(self.master_fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            _LOGGER.warning("twin: pty %s read failed: %s", self.path, err)
            return
        self.twin.data_received(data)

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self.master_fd, data)
        except BlockingIOError:  # nobody reads the slave: the bytes are lost, as on a UART
            written = 0
        except OSError as err:
            _LOGGER.warning("twin: pty %s write failed: %s", self.path, err)
            written = 0
        self.bytes_lost += len(data) - written


_PTYS: dict[str, PtyEndpoint] = {}


def open_pty_endpoint(twin: McuPeer) -> PtyEndpoint:
    """Open a pty pair in raw mode, attach ``twin`` to the master; needs a running loop."""
    loop = asyncio.get_running_loop()
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    os.set_blocking(master_fd, False)
    endpoint = PtyEndpoint(os.ttyname(slave_fd), master_fd, slave_fd, twin)
    # the slave stays open here too: with no slave open, reading the master fails with EIO
    loop.add_reader(master_fd, endpoint._read)
    twin.connection_made(endpoint._write)
    _PTYS[endpoint.path] = endpoint
    _LOGGER.info("twin: pty %s", endpoint.path)
    return endpoint


def open_pty(twin: McuPeer) -> str:
    """Attach ``twin`` to a new pty and return the slave path the gateway opens."""
    return open_pty_endpoint(twin).path


def close_pty(path: str) -> None:
    """Close a pty opened by :func:`open_pty`."""
    endpoint = _PTYS.get(path)
    if endpoint is not None:
        endpoint.close()
