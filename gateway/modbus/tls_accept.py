"""Modbus/TCP Security accept: the allow list and limits are checked before the TLS handshake.

asyncio's ``create_server(ssl=...)`` tells the protocol about a client only once its handshake
is done, so a refused address would still cost a handshake. Upgrading an accepted transport
with ``start_tls`` instead loses a ClientHello that arrives before the upgrade begins (uvloop
reads as soon as the protocol is told of the connection). So this listener accepts sockets
itself, lets the connection check the address, and only then hands the socket to the event
loop's own TLS server side (``connect_accepted_socket``), which reads nothing before it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine

__all__ = ["TlsListener"]

_LOGGER = logging.getLogger(__name__)

BACKLOG = 100  # as asyncio's create_server
ACCEPT_RETRY_S = 0.1  # after an accept error (out of file descriptors): never a busy loop

# The connection for a just-accepted peer address, or None when it is refused.
Admit = Callable[[object], asyncio.Protocol | None]
# (peer address, why the handshake failed)
OnFailed = Callable[[object, BaseException], None]


class TlsListener:
    """Accepts TLS clients on one port; the shape of ``asyncio.Server`` the listener uses."""

    def __init__(
        self, admit: Admit, context: ssl.SSLContext, timeout_s: float, on_failed: OnFailed
    ) -> None:
        self._admit = admit
        self._context = context
        self._timeout_s = timeout_s
        self._on_failed = on_failed
        self.sockets: tuple[socket.socket, ...] = ()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    async def start(self, host: str, port: int) -> TlsListener:
        """Bind ``host:port`` and start accepting."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        listening = socket.create_server(address, family=family, backlog=BACKLOG)
        listening.setblocking(False)
        self.sockets = (listening,)
        self._track(self._accept_forever(listening))
        return self

    def close(self) -> None:
        """Stop accepting and abandon the handshakes under way."""
        for task in list(self._tasks):
            task.cancel()
        for listening in self.sockets:
            listening.close()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once closed and every accept or handshake task has ended."""
        await self._closed.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _track(self, coroutine: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept_forever(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, peer = await loop.sock_accept(listening)
            except OSError as err:
                _LOGGER.warning("tls: accept failed: %s", err)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            connection = self._admit(peer)
            if connection is None:
                client.close()
                continue
            task = self._track(self._handshake(peer, client, connection))
            task.add_done_callback(functools.partial(_abandoned, client, connection))

    async def _handshake(
        self, peer: object, client: socket.socket, connection: asyncio.Protocol
    ) -> None:
        # From here on the loop's transport owns the socket and closes it when this fails.
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: connection,
                client,
                ssl=self._context,
                ssl_handshake_timeout=self._timeout_s,
            )
        except Exception as err:  # whatever a client's bytes provoke ends here, one line
            self._on_failed(peer, err)
            connection.connection_lost(err)  # the loop tells the protocol only after success


def _abandoned(
    client: socket.socket, connection: asyncio.Protocol, task: asyncio.Task[None]
) -> None:
    """A handshake cancelled on stop: free the connection's slot, and the socket if still ours."""
    if task.cancelled():
        if client.fileno() != -1:  # cancelled before the loop took it over
            client.close()
        connection.connection_lost(None)
