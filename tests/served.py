"""A GatewayService started in process with a pymodbus client connected to it, and a waiter."""

from __future__ import annotations

from typing import TypeVar

from pymodbus.client import AsyncModbusTcpClient
from waiting import TIMEOUT_S, eventually

from gateway.config import GatewayConfig
from gateway.service import GatewayService
from gateway.twin import McuTwin, running_twin

__all__ = ["TIMEOUT_S", "Served", "eventually", "start_served"]


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
