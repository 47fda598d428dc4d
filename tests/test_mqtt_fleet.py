"""A fleet on one broker: three gateway processes, four twins each, twelve distinct devices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from mqtt_broker import Broker, listening
from served import eventually

ROOT = Path(__file__).resolve().parents[1]
BASE = "tuya-modbus-gateway"
GATEWAYS = ("site-a", "site-b", "site-c")
UNITS = (1, 2, 3, 4)
STOP_TIMEOUT_S = 15.0


def fleet_yaml(folder: Path, gateway_id: str, port: int) -> Path:
    """A gateway.yaml with four twins, Modbus on a free port and MQTT to the broker."""
    devices = "".join(
        f"  - {{unit: {unit}, link: 'sim://family_a?report_interval=1',"
        f" map: {ROOT / 'register_map.yaml'}}}\n"
        for unit in UNITS
    )
    path = folder / f"{gateway_id}.yaml"
    path.write_text(
        "modbus:\n  tcp: {host: 127.0.0.1, port: 0}\n"
        f"mqtt:\n  url: mqtt://127.0.0.1:{port}\n  gateway_id: {gateway_id}\n"
        f"devices:\n{devices}",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def fleet(folder: Path, port: int) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """The three gateway processes, stopped with SIGTERM at the end."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--config",
            str(fleet_yaml(folder, gateway_id, port)),
            "--log-level",
            "WARNING",
        )
        for gateway_id in GATEWAYS
    ]
    try:
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        stuck = [p for p in processes if not await _exited(p)]
        assert not stuck, f"{len(stuck)} gateway(s) ignored SIGTERM for {STOP_TIMEOUT_S} s"


async def _exited(process: asyncio.subprocess.Process) -> bool:
    """Whether ``process`` ends within STOP_TIMEOUT_S; killed if not."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        return False
    return True


async def test_three_gateways_give_twelve_distinct_devices(tmp_path: Path, broker: Broker) -> None:
    async with listening(broker.port, "homeassistant/+/+/+/config", f"{BASE}/+/+/status") as (
        _,
        heard,
    ):
        async with fleet(tmp_path, broker.port) as processes:

            def devices() -> dict[str, set[str]]:
                found: dict[str, set[str]] = {}
                for topic, payload in heard.latest.items():
                    if topic.startswith("homeassistant/") and payload:
                        config = json.loads(payload)
                        (identifier,) = config["device"]["identifiers"]
                        found.setdefault(identifier, set()).add(config["unique_id"])
                return found

            async def twelve_online() -> bool:
                online = [
                    t for t, p in heard.latest.items() if t.endswith("/status") and p == b"online"
                ]
                return len(devices()) == 12 and len(online) == 12

            await eventually(twelve_online, "twelve devices, each unit online", timeout_s=60)
            ids = devices()
            expected = {f"tuya_modbus_gateway_{g}_{u}" for g in GATEWAYS for u in UNITS}
            assert set(ids) == expected
            unique_ids = [uid for uids in ids.values() for uid in uids]
            assert len(unique_ids) == len(set(unique_ids))  # no entity collides across gateways
            sizes = {len(uids) for uids in ids.values()}
            assert len(sizes) == 1  # every device has the same entities
            for process in processes:
                process.terminate()
        async with listening(broker.port, f"{BASE}/+/status") as (_, states):
            for gateway_id in GATEWAYS:
                topic = f"{BASE}/{gateway_id}/status"

                async def offline(topic: str = topic) -> bool:
                    return states.text(topic) == "offline"

                await eventually(offline, f"{topic} offline after SIGTERM")
