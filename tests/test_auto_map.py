"""``--map auto``: the map follows the product key; an unknown key is refused, loudly, once."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient
from served import Served, eventually, start_served

from gateway.config import DeviceConfig, GatewayConfig, load_config
from gateway.discover import discover
from gateway.modbus.server import TcpListener
from gateway.regmap.catalog import choose_map, shipped_maps
from gateway.tuya.link import LinkState
from gateway.unit.state_store import StateStore

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = "noise=0&report_interval=1"  # quiet 0.5 s ends the handshake query
FAMILIES = {
    "family_a": ROOT / "gateway" / "maps" / "register_map.yaml",
    "family_b": ROOT / "gateway" / "maps" / "tongou_tosmr1.yaml",
    "family_c": ROOT / "gateway" / "maps" / "tongou_qcb2.yaml",
}

Start = Callable[[str], Awaitable[Served]]


@pytest.fixture
async def serve_auto() -> AsyncIterator[Start]:
    started: list[Served] = []

    async def start(link: str) -> Served:
        cfg = GatewayConfig((DeviceConfig(1, link, "auto"),), TcpListener("127.0.0.1", 0))
        return await start_served(cfg, Served, started)

    yield start
    for served in started:
        await served.stop()


def test_every_shipped_map_lists_its_product_keys_and_each_family_has_one() -> None:
    names = {Path(m.path).name for m in shipped_maps()}
    assert {"register_map.yaml", "sdm120.yaml", "sdm630.yaml"} <= names
    assert {"tongou_tosmr1.yaml", "tongou_qcb2.yaml"} <= names
    assert all(m.device.product_keys for m in shipped_maps())
    sdm = choose_map("lih4vjeoyao4jeku")
    assert sdm.map is not None
    assert Path(sdm.map.path).name == "register_map.yaml"  # the family's map, not a profile
    assert {Path(p).name for p in sdm.also} == {"sdm120.yaml", "sdm630.yaml"}
    assert choose_map("nobodysknownkey0").map is None
    assert choose_map(None).map is None


# "Product keys seen in the field", ../shared/vectors/tuyamcu_frames.md (copied: the suite runs
# on a clean checkout)
FIELD_KEYS = {
    "pqcmqh1ufgmalru0": "family_a",
    "hktsllupwmoii1it": "family_b",
    "f1q6h4xhddjnopxu": "family_b",
    "vhnq3ezhphqggwqt": "family_c",
}


@pytest.mark.parametrize(("key", "family"), sorted(FIELD_KEYS.items()))
async def test_auto_knows_the_product_keys_seen_in_the_field(
    serve_auto: Start, key: str, family: str
) -> None:
    gw = await serve_auto(f"sim://{family}?{OPTIONS}&product_key={key}")

    async def served() -> bool:
        reply = await gw.client.read_input_registers(0, count=1, device_id=1)
        return not reply.isError()

    await eventually(served, f"{key} served by {family}'s map")
    assert Path(gw.service.units[1].register_map.path) == FAMILIES[family]


@pytest.mark.parametrize("family", sorted(FAMILIES))
async def test_auto_serves_the_map_of_the_reported_product_key(
    serve_auto: Start, family: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw = await serve_auto(f"sim://{family}?{OPTIONS}")

    async def voltage_served() -> bool:
        reply = await gw.client.read_input_registers(0, count=1, device_id=1)
        return not reply.isError() and reply.registers == [2300]  # 230.0 V in every map

    await eventually(voltage_served, f"{family}'s voltage at input 0")
    unit = gw.service.units[1]
    assert Path(unit.register_map.path) == FAMILIES[family]
    chosen = [r.getMessage() for r in caplog.records if "--map auto" in r.getMessage()]
    assert len(chosen) == 1
    assert f"-> map {FAMILIES[family]} ({family})" in chosen[0]
    switch = await gw.client.read_coils(0, count=1, device_id=1)
    assert switch.bits[0] is True


async def test_an_unknown_product_key_is_refused_with_one_line_and_the_link_stays_up(
    serve_auto: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw = await serve_auto(f"sim://family_a?{OPTIONS}&product_key=zzunknownkey0001")
    link = gw.service.units[1].link

    async def ready() -> bool:
        return link.state is LinkState.READY

    await eventually(ready, "the link READY")
    for _ in range(3):
        reply = await gw.client.read_input_registers(0, count=1, device_id=1)
        assert reply.isError()
        assert reply.exception_code == 0x0B
        coil = await gw.client.write_coil(0, False, device_id=1)
        assert coil.exception_code == 0x0B
        await asyncio.sleep(0.3)  # the twin keeps reporting: the link is up
    gw.twin().reboot()  # a second handshake with the same key adds no second line
    await eventually(ready, "the link READY again")
    assert link.state is LinkState.READY
    assert gw.twin().switch_on  # nothing was written
    refused = [r for r in caplog.records if "NOT SERVING" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].levelno == logging.ERROR
    assert "'zzunknownkey0001' is in no shipped map" in refused[0].getMessage()
    writes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("write ")]
    assert writes, "each refused write is logged"
    assert all("not served: --map auto has no map" in line for line in writes), writes


def test_auto_in_gateway_yaml_is_not_a_path(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "modbus: {tcp: {port: 0}}\nstate_dir: state\n"
        "devices:\n  - {unit: 1, link: 'sim://', map: auto}\n"
        "  - {unit: 2, link: 'sim://', map: maps/x.yaml}\n",
        encoding="utf-8",
    )
    config = load_config(str(path))
    assert [d.map_path for d in config.devices] == ["auto", str(tmp_path / "maps" / "x.yaml")]
    assert config.state_dir == str(tmp_path / "state")


@pytest.mark.parametrize(
    ("family", "expected"),
    [("family_a", "register_map.yaml (family_a)"), ("family_c", "tongou_qcb2.yaml (family_c)")],
)
async def test_discover_names_the_matching_shipped_map(family: str, expected: str) -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    await discover(f"sim://{family}?{OPTIONS}", 9600, 0.3, None, stop, out)
    line = next(line for line in out.getvalue().splitlines() if line.startswith("shipped map"))
    assert line.endswith(expected) or f"{expected} (also fits" in line


def test_the_run_command_with_map_auto_and_a_state_dir(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["run", "--link", f"sim://family_c?{OPTIONS}", "--map", "auto"]
    args += ["--state-dir", str(tmp_path / "state"), "--tcp", f"127.0.0.1:{port}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if client.connect():
                reply = client.read_input_registers(12, count=2, device_id=1)
                if not reply.isError():
                    break
            time.sleep(0.1)
        client.close()
        assert not reply.isError(), reply  # the lifetime register of the family C map
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert f"product key 'tgqcb2jwtwinc0c1' -> map {FAMILIES['family_c']} (family_c)" in stderr
    stored = StateStore(str(tmp_path / "state")).load_energy("unit 1")
    assert stored is not None
