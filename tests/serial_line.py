"""The tests' one pty helper: the master side of a pty pair, whose slave ``path`` the gateway
opens. A Modbus master reads and writes the bus through it; a scripted MCU takes its bytes.
``pty_pair`` is the same pair for a test that drives a subprocess without an event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable, Iterator

__all__ = ["PtyMaster", "pty_pair"]


@contextlib.contextmanager
def pty_pair(raw: bool = False) -> Iterator[tuple[int, str]]:
    """The master fd and the slave's path of a new pty (raw on request); both closed after."""
    master, slave = os.openpty()
    try:
        if raw:
            tty.setraw(slave)
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


class PtyMaster:
    """The bus side of a pseudo-terminal; ``path`` is the slave end the gateway opens."""

    def __init__(self, on_data: Callable[[bytes], None] | None = None) -> None:
        self._on_data = on_data  # set: received bytes go there instead of to read()
        self.fd, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.fd, False)
        self._data = bytearray()
        self._event = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            data = os.read(self.fd, 4096)
            if self._on_data is not None:
                self._on_data(data)
                return
            self._data += data
            self._event.set()

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def read(self, size: int, wait_s: float = 5.0) -> bytes:
        """Exactly ``size`` bytes; TimeoutError if they do not come within ``wait_s``."""
        async with asyncio.timeout(wait_s):
            while len(self._data) < size:
                self._event.clear()
                await self._event.wait()
        out = bytes(self._data[:size])
        del self._data[:size]
        return out

    async def first_answer(self, request: bytes, size: int) -> bytes:
        """Repeat ``request`` until an answer comes (a discarding receiver waits for idle)."""
        for _ in range(50):
            self.write(request)
            with contextlib.suppress(TimeoutError):
                return await self.read(size, 0.3)
        raise AssertionError("no answer")

    def pending(self) -> bytes:
        """What has arrived and not been read yet."""
        return bytes(self._data)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)
        os.close(self._slave)
