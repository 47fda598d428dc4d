"""A real Prometheus scrapes a gateway started with ``run --http`` and sees its link up."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from web_gateway import ROOT, TWIN, require_tool

PROMETHEUS = "/usr/bin/prometheus"
DEADLINE_S = 60.0  # Prometheus start, a few 1 s scrapes, on a busy CI machine
SCRAPE_CONFIG = """global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: tuya-modbus-gateway
    static_configs:
      - targets: ["{target}"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def gateway_http(tmp_path: Path) -> AsyncIterator[str]:
    """``tuya-modbus-gateway run --http 127.0.0.1:0`` on the twin; yields HOST:PORT."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "run", "--link", TWIN, "--map"),
        *(str(ROOT / "register_map.yaml"), "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"),
        env=env,
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    drain = None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode()
                assert line, "the gateway exited before serving HTTP"
                found = re.search(r"/metrics on http://([\d.]+:\d+)/", line)
                if found:
                    break
        drain = asyncio.ensure_future(process.stderr.read())  # keep its pipe from filling
        yield found.group(1)
    finally:
        await stop(process)
        if drain is not None:
            await drain


async def query(session: aiohttp.ClientSession, base: str, expr: str) -> list[Any]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_the_gateway_and_finds_the_link_up(
    tmp_path: Path, gateway_http: str
) -> None:
    require_tool(PROMETHEUS, "prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(target=gateway_http), encoding="utf-8")
    listen = f"127.0.0.1:{free_port()}"
    prometheus = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={listen}",
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://{listen}"
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(DEADLINE_S):
            while True:
                try:
                    result = await query(session, base, "tuya_gateway_link_up")
                except aiohttp.ClientError:
                    result = []  # Prometheus is still starting
                if result and result[0]["value"][1] == "1":
                    break
                await asyncio.sleep(0.5)
            assert result[0]["metric"]["unit"] == "1"
            assert result[0]["metric"]["job"] == "tuya-modbus-gateway"
            voltage = await query(session, base, 'tuya_gateway_point_value{point="voltage"}')
            assert float(voltage[0]["value"][1]) == 230.0
    finally:
        await stop(prometheus)
