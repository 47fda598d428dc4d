"""Nothing is served as fresh when the MCU is silent (issue 12, item 4).

A scripted MCU behind a real TCP socket; the real service and the real pymodbus client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from conftest import PEER_DPS, fast_config
from mcu_peer import ScriptedMcu, TcpPeer
from pymodbus.client import AsyncModbusTcpClient
from waiting import eventually

from gateway.config import DeviceConfig, GatewayConfig
from gateway.modbus.server import TcpListener
from gateway.regmap.load import load_map
from gateway.service import GatewayService
from gateway.tuya.link import LinkConfig, LinkState, McuLink
from gateway.tuya.protocol import Command, DpValue, Frame
from gateway.unit.cache import DatapointCache

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MAPS = [ROOT / "register_map.yaml", *sorted((ROOT / "gateway" / "maps").glob("*.yaml"))]
DEFAULT_MAP = load_map(ROOT / "register_map.yaml")
SWITCH = DEFAULT_MAP.point("switch").address  # coil
DATA_AGE = DEFAULT_MAP.point("data_age").address  # input register, seconds
MakeLink = Callable[[LinkConfig], McuLink]
NOTICE_S = 5.0  # the bound for a silent or rebooted MCU


@pytest.mark.parametrize("path", SHIPPED_MAPS, ids=lambda p: p.name)
def test_shipped_maps_bound_the_age_of_every_datapoint(path: Path) -> None:
    regmap = load_map(path)
    query = regmap.tuya.query_interval_s
    assert query is not None  # the gateway refreshes every DP itself
    unbounded = [dp.name for dp in regmap.datapoints.values() if dp.max_age_s is None]
    assert unbounded == []
    assert all(2 * query <= dp.max_age_s for dp in regmap.datapoints.values())  # type: ignore[operator]


def test_default_heartbeats_notice_a_silent_or_rebooted_mcu_within_5_s() -> None:
    cfg = LinkConfig("x")
    assert (
        cfg.heartbeats_missed_down * (cfg.heartbeat_interval_s + cfg.heartbeat_timeout_s)
        <= NOTICE_S
    )
    assert cfg.heartbeat_interval_s + cfg.heartbeat_timeout_s <= NOTICE_S


@pytest.fixture
async def tcp_peer() -> AsyncIterator[TcpPeer]:
    peer = await TcpPeer(ScriptedMcu(list(PEER_DPS))).open()
    yield peer
    await peer.close()


async def test_default_heartbeats_take_a_silent_mcu_down(
    tcp_peer: TcpPeer, make_link: MakeLink
) -> None:
    base = fast_config(tcp_peer.url)
    defaults = LinkConfig(tcp_peer.url)
    cfg = LinkConfig(tcp_peer.url, timings=base.timings)  # default heartbeats, fast handshake
    assert cfg.heartbeat_interval_s == defaults.heartbeat_interval_s
    link = make_link(cfg)
    await link.start()
    await link.wait_ready(10.0)
    tcp_peer.peer.silent = True
    await eventually(lambda: link.state is LinkState.DOWN, "DOWN after the MCU fell silent")
    tcp_peer.peer.silent = False
    tcp_peer.peer.reboot()
    await eventually(lambda: link.stats.mcu_reboots == 1, "the reboot counted")


async def test_a_reboot_seen_on_a_reconnect_is_counted(
    tcp_peer: TcpPeer, make_link: MakeLink
) -> None:
    link = make_link(fast_config(tcp_peer.url))
    await link.start()
    await link.wait_ready(10.0)
    assert link.stats.mcu_reboots == 0
    tcp_peer.drop()  # the bridge restarts while the MCU reboots: the link sees 0x00 on probing
    tcp_peer.peer.reboot()
    await eventually(lambda: link.stats.handshakes == 2 and link.state is LinkState.READY)
    assert link.stats.mcu_reboots == 1


def test_a_report_of_the_wrong_type_refreshes_nothing() -> None:
    now = [100.0]
    cache = DatapointCache(lambda: now[0], types={16: DpValue.of_bool(16, True).dp_type})
    cache.update(DpValue.of_bool(16, True))
    now[0] += 5.0
    cache.update(DpValue.of_value(16, 1))  # dp16 is a bool in the map
    snapshot = cache.snapshot()
    assert snapshot.data_age() == pytest.approx(5.0)
    entry = snapshot.get(16)
    assert entry is not None
    assert entry.dp == DpValue.of_bool(16, True)
    assert cache.wrong_type_reports == 1


async def start_service(folder: Path, url: str, **replace: str) -> GatewayService:
    text = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / "map.yaml"
    path.write_text(text, encoding="utf-8")
    service = GatewayService(
        GatewayConfig((DeviceConfig(1, url, str(path)),), TcpListener("127.0.0.1", 0), None)
    )
    await service.start()
    await service.units[1].link.wait_ready(15.0)
    return service


async def test_an_mcu_that_only_answers_heartbeats_goes_stale_switch_included(
    tcp_peer: TcpPeer, tmp_path: Path
) -> None:
    # every max_age and the query interval scaled down 90:1 and 30:0.3
    service = await start_service(
        tmp_path,
        tcp_peer.url,
        **{"max_age_s: 90": "max_age_s: 1", "query_interval_s: 30": "query_interval_s: 0.3"},
    )
    client = AsyncModbusTcpClient("127.0.0.1", port=service.tcp_port, timeout=5)
    try:
        assert await client.connect()
        assert not (await client.read_coils(SWITCH, count=1, device_id=1)).isError()
        tcp_peer.peer.dps.clear()  # from now on query-all gets no reports

        async def switch_stale() -> bool:
            return (await client.read_coils(SWITCH, count=1, device_id=1)).isError()

        await eventually(switch_stale, "the switch coil served as stale")
        assert service.units[1].link.state is LinkState.READY  # heartbeats still answered
    finally:
        client.close()
        await service.stop()


async def test_data_age_after_a_report_of_the_wrong_type(tcp_peer: TcpPeer, tmp_path: Path) -> None:
    service = await start_service(tmp_path, tcp_peer.url)
    client = AsyncModbusTcpClient("127.0.0.1", port=service.tcp_port, timeout=5)
    try:
        assert await client.connect()
        await asyncio.sleep(1.5)  # the MCU reports nothing unasked: the data ages
        seen: list[Frame] = []
        service.units[1].link.add_traffic_listener(
            lambda direction, frame: (
                seen.append(frame) if frame.command == Command.DP_REPORT else None
            )
        )
        tcp_peer.peer.report(DpValue.of_value(16, 1))  # the switch is a bool
        await eventually(lambda: bool(seen), "the report handled")
        reply = await client.read_input_registers(DATA_AGE, count=1, device_id=1)
        assert not reply.isError()
        assert reply.registers[0] >= 1
    finally:
        client.close()
        await service.stop()
