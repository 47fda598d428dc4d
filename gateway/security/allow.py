"""Allow lists of client networks (CIDR)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from gateway.errors import ConfigError

__all__ = ["Allowlist", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: Iterable[str], where: str) -> tuple[Network, ...]:
    """CIDRs (or single addresses) → networks; ConfigError listing every bad one."""
    networks, errors = [], []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError as err:
            errors.append(f"{where}: {err}")
    if errors:
        raise ConfigError(errors)
    return tuple(networks)


class Allowlist:
    """Whether a client address lies in one of the networks."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks

    def __call__(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
