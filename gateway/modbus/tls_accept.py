"""Modbus/TCP Security accept: the allow list and limits are checked before the TLS handshake.

asyncio's ``create_server(ssl=...)`` tells the protocol about a client only once its handshake
is done, so a refused address would still cost a handshake. The listener accepts plain TCP,
lets the connection check the address, and only then upgrades it with ``start_tls``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import cast

__all__ = ["TlsGate"]

_LOGGER = logging.getLogger(__name__)


class TlsGate(asyncio.Protocol):
    """Admits a TCP client, then runs its TLS handshake and hands the result over."""

    def __init__(
        self,
        connection: asyncio.Protocol,
        admit: Callable[[asyncio.Transport], bool],
        context: ssl.SSLContext,
        timeout_s: float,
        on_failed: Callable[[asyncio.Transport, BaseException], None],
    ) -> None:
        self._connection = connection
        self._admit = admit
        self._context = context
        self._timeout_s = timeout_s
        self._on_failed = on_failed
        self._tasks: set[asyncio.Task[None]] = set()

    def tracked_by(self, tasks: set[asyncio.Task[None]]) -> TlsGate:
        """Keep the handshake task in ``tasks`` while it runs (to cancel it on stop)."""
        self._tasks = tasks
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        if self._admit(transport):
            task = asyncio.ensure_future(self._handshake(transport))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection.connection_lost(exc)  # closed before the handshake began

    async def _handshake(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            upgraded = await loop.start_tls(
                transport,
                self._connection,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout_s,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as err:
            self._on_failed(transport, err)
            transport.abort()
            self._connection.connection_lost(err)
            return
        if upgraded is None:  # closed as the handshake ended
            self._connection.connection_lost(None)
            return
        self._connection.connection_made(upgraded)
