"""A gateway with its HTTP endpoint on, on the sim:// twin, for the tests/test_web*.py files.

The twin is reached only through :meth:`WebServed.twin` (inherited from tests/served.py), so
there is one place to change when the twin moves behind a registry.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from served import Served, eventually, start_served

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.tuya.link import LinkState
from gateway.web.options import HttpListener

__all__ = ["ROOT", "TWIN", "WebServed", "require_tool", "start_web", "web_config"]

ROOT = Path(__file__).resolve().parents[1]
MAP = str(ROOT / "register_map.yaml")
# Reports every second, no measurement noise: the value the twin is set to is the one shown.
TWIN = "sim://family_a?report_interval=1&motor_time=0.1&noise=0"


def web_config(*links: str, switch_interval_s: float = 0.1) -> GatewayConfig:
    """Units 1, 2… on these links, Modbus TCP and HTTP on free ports of 127.0.0.1."""
    devices = tuple(DeviceConfig(unit, link, MAP) for unit, link in enumerate(links, start=1))
    policy = WritePolicy(switch_interval_s=switch_interval_s)
    tcp = TcpListener("127.0.0.1", 0)
    return GatewayConfig(devices, tcp, None, policy, HttpListener("127.0.0.1", 0))


class WebServed(Served):
    """A started gateway with its HTTP endpoint, a pymodbus client and an HTTP session."""

    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        assert self.service.web is not None
        return f"http://127.0.0.1:{self.service.web.port}"

    async def get(self, path: str) -> aiohttp.ClientResponse:
        if not hasattr(self, "session"):
            self.session = aiohttp.ClientSession()
        return await self.session.get(self.url + path)

    async def ready(self, unit: int = 1) -> None:
        async def is_ready() -> bool:
            return self.service.units[unit].link.state is LinkState.READY

        await eventually(is_ready, f"unit {unit} READY")

    async def stop(self) -> None:
        if hasattr(self, "session"):
            await self.session.close()
        await super().stop()


async def start_web(cfg: GatewayConfig, started: list[WebServed]) -> WebServed:
    return await start_served(cfg, WebServed, started)


def require_tool(path: str, package: str) -> str:
    """The tool's path; skip the test when it is missing, fail when CI=true."""
    if shutil.which(path) is None:
        reason = f"{path} is not installed (Debian: apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
