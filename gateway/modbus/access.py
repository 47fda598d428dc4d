"""Who a TCP client is, and the hooks a security policy plugs into the listeners.

The Modbus layer knows neither maps nor roles: it hands every connection's identity (address,
TLS client certificate) to ``admit`` at accept and to ``guard``, which may wrap each unit's
backend for that connection and answer 0x01 where the client is not permitted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from gateway.modbus.pdu import UnitBackend

__all__ = ["Admit", "ClientIdentity", "Guard", "ListenerCounters", "identify", "peer_identity"]


@dataclasses.dataclass(frozen=True, slots=True)
class ClientIdentity:
    """One TCP connection's client: its address and, on TLS, its certificate (DER)."""

    host: str
    port: int
    listener: str = "tcp"
    certificate: bytes | None = None

    @property
    def address(self) -> str:
        """``host:port`` as logged everywhere."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclasses.dataclass(slots=True)
class ListenerCounters:
    """Connections a listener refused, by reason."""

    refused_not_allowed: int = 0
    refused_limit: int = 0
    closed_malformed: int = 0
    closed_incomplete: int = 0
    handshake_failed: int = 0

    @property
    def refused_connections(self) -> int:
        """Connections closed at accept or in the TLS handshake."""
        return self.refused_not_allowed + self.refused_limit + self.handshake_failed


# Whether a client address may connect at all (checked at accept).
Admit = Callable[[str], bool]
# (unit id, backend, client) -> the backend this client talks to.
Guard = Callable[[int, UnitBackend, ClientIdentity], UnitBackend]


def peer_identity(peer: object, listener: str) -> ClientIdentity:
    """The identity of a client known by its socket address only (before any TLS)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return ClientIdentity(str(peer[0]), int(peer[1]), listener)
    return ClientIdentity("?", 0, listener)


def identify(transport: asyncio.Transport, listener: str) -> ClientIdentity:
    """The identity of a just-accepted connection."""
    identity = peer_identity(transport.get_extra_info("peername"), listener)
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return identity
    return dataclasses.replace(identity, certificate=ssl_object.getpeercert(binary_form=True))
