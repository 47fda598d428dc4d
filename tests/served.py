"""A GatewayService started in process with a pymodbus client connected to it, and a waiter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymodbus.client import AsyncModbusTcpClient

from gateway.config import GatewayConfig
from gateway.service import GatewayService
from gateway.twin import McuTwin, running_twin

__all__ = ["TIMEOUT_S", "Served", "eventually", "start_served"]

TIMEOUT_S = 15.0


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = TIMEOUT_S
) -> None:
    """Wait until ``check()`` is true; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Served:
    """A started service and a pymodbus client connected to its TCP port."""

    def __init__(self, service: GatewayService, client: AsyncModbusTcpClient) -> None:
        self.service = service
        self.client = client

    def twin(self, unit: int = 1) -> McuTwin:
        twin = running_twin(self.service.units[unit].link.config.url)
        assert twin is not None
        return twin

    async def stop(self) -> None:
        self.client.close()
        await self.service.stop()


ServedT = TypeVar("ServedT", bound=Served)


async def start_served(cfg: GatewayConfig, kind: type[ServedT], started: list[ServedT]) -> ServedT:
    """Start a service for ``cfg`` and connect a client; ``started`` collects it for stopping."""
    service = GatewayService(cfg)
    await service.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=service.tcp_port, timeout=5)
    served = kind(service, client)
    started.append(served)
    assert await client.connect()
    return served
