"""Link URL schemes resolve through the opener registry; the twin registers ``sim://`` itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conftest import PEER_DPS, fast_config
from mcu_peer import ScriptedMcu, TcpPeer

from gateway.tuya.link import LinkConfig, McuLink
from gateway.tuya.openers import register_opener, registered_schemes
from gateway.twin import running_twin

MakeLink = Callable[[LinkConfig], McuLink]


def test_importing_the_twin_registers_sim() -> None:
    assert "sim" in registered_schemes()


async def test_a_registered_scheme_opens_through_its_opener(make_link: MakeLink) -> None:
    tcp = await TcpPeer(ScriptedMcu(list(PEER_DPS))).open()
    opened: list[tuple[str, int]] = []

    async def opener(url: str, protocol: asyncio.Protocol, baudrate: int) -> asyncio.BaseTransport:
        opened.append((url, baudrate))
        port = int(tcp.url.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
        return transport

    register_opener("h2-test", opener)
    try:
        link = make_link(fast_config("h2-test://breaker-7", baudrate=115200))
        await link.start()
        await link.wait_ready(10.0)
        assert opened == [("h2-test://breaker-7", 115200)]
        assert tcp.connections == 1
    finally:
        await tcp.close()


async def test_the_sim_twin_leaves_the_registry_when_its_link_stops(make_link: MakeLink) -> None:
    url = "sim://family_b?report_interval=0&seed=7"
    link = make_link(fast_config(url))
    await link.start()
    await link.wait_ready(10.0)
    twin = running_twin(url)
    assert twin is not None
    assert twin.variant.name == "family_b"
    await link.stop()
    assert running_twin(url) is None
