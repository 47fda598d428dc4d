"""A real Mosquitto broker on a free 127.0.0.1 port, and a subscriber that keeps what it hears."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from served import TIMEOUT_S
from waiting import eventually

from gateway.mqtt import MqttSettings

__all__ = ["Broker", "Heard", "gateway_mqtt_settings", "heard_text", "listening", "mosquitto_path"]


def mosquitto_path() -> str:
    """The mosquitto binary; skip the test without it (fail under CI=true)."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        reason = "mosquitto is not installed (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Broker:
    """``mosquitto -c`` with a temporary config; ``restart()`` keeps the port."""

    def __init__(self, folder: Path, acl: str | None = None) -> None:
        self.port = _free_port()
        self._config = folder / "mosquitto.conf"
        text = f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        if acl is not None:
            (folder / "acl").write_text(acl)
            # as root mosquitto drops to user mosquitto, who cannot read pytest's 0700 folders
            text += f"acl_file {folder / 'acl'}\nuser {getpass.getuser()}\n"
        self._config.write_text(text)
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            mosquitto_path(),
            "-c",
            str(self._config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT_S
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            if loop.time() > deadline or self._process.returncode is not None:
                raise AssertionError(f"mosquitto did not listen on {self.port}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._process = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


class Heard:
    """Every message a subscriber received: the latest payload per topic, and all of them."""

    def __init__(self) -> None:
        self.latest: dict[str, bytes] = {}
        self.log: list[tuple[str, bytes, bool]] = []

    def text(self, topic: str) -> str | None:
        payload = self.latest.get(topic)
        return None if payload is None else payload.decode()

    def matching(self, keep: Callable[[str], bool]) -> dict[str, bytes]:
        return {topic: payload for topic, payload in self.latest.items() if keep(topic)}


@contextlib.asynccontextmanager
async def listening(
    port: int,
    *filters: str,
    username: str | None = None,
    tls: aiomqtt.TLSParameters | None = None,
) -> AsyncIterator[tuple[aiomqtt.Client, Heard]]:
    """A connected MQTT v5 client subscribed to ``filters`` that fills a :class:`Heard`."""
    heard = Heard()
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=10,
        tls_params=tls,
    ) as client:
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                heard.latest[str(message.topic)] = payload
                heard.log.append((str(message.topic), payload, message.retain))

        task = asyncio.create_task(collect())
        try:
            yield client, heard
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def heard_text(heard: Heard, topic: str, expected: str | None = None) -> str:
    """The payload of ``topic`` once it arrived (and equals ``expected`` if given)."""

    async def arrived() -> bool:
        text = heard.text(topic)
        return text is not None and (expected is None or text == expected)

    await eventually(arrived, f"{topic} = {expected!r}")
    return heard.text(topic) or ""


def gateway_mqtt_settings(broker: Broker, **overrides: Any) -> MqttSettings:
    """The gateway's MQTT settings for ``broker``: gateway id test-gw, every change sent, fast
    reconnects."""
    fields: dict[str, Any] = {"gateway_id": "test-gw", "min_interval_s": 0.0}
    fields |= {"backoff_min_s": 0.1, "backoff_max_s": 0.5, **overrides}
    return MqttSettings("127.0.0.1", broker.port, **fields)
