"""Shared fixtures: a scripted MCU peer over a real pty or TCP socket, and fast links."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from mcu_peer import PtyPeer, ScriptedMcu, TcpPeer
from mqtt_broker import Broker, mosquitto_path
from served import Served, start_served

import gateway.twin  # noqa: F401 - registers the sim:// link scheme
from gateway.config import GatewayConfig
from gateway.tuya.handshake import LinkTimings
from gateway.tuya.link import LinkConfig, McuLink
from gateway.tuya.protocol import DpValue

# `run` keeps lifetime energy in the platform state dir: point it (and every subprocess's) at
# a temporary one so tests never write into the user's ~/.local/state.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="tmg-test-state-")
os.environ.pop("STATE_DIRECTORY", None)  # systemd's, which would come first

# Spec timings scaled down so a handshake takes ~0.1 s; reply timeouts stay generous because
# they only matter when something is wrong, and CI machines are busy.
FAST_TIMINGS = LinkTimings(
    probe_interval_s=0.1,
    reply_timeout_s=1.0,
    notice_wait_s=0.05,
    query_quiet_s=0.1,
    query_max_s=2.0,
    line_idle_s=0.02,
    backoff_min_s=0.05,
    backoff_max_s=0.2,
    wifi_reset_step_s=0.02,
)

PEER_DPS = [
    DpValue.of_bool(16, False),
    DpValue.of_value(2, 100),
    DpValue.of_raw(6, bytes.fromhex("0916000099000023")),
    DpValue.of_bitmap(9, 0, 1),
]


def fast_config(url: str, **overrides: Any) -> LinkConfig:
    """A LinkConfig with short heartbeats and handshake timings for tests."""
    base = LinkConfig(
        url,
        heartbeat_interval_s=0.1,
        heartbeat_timeout_s=0.3,
        confirm_timeout_s=2.0,
        timings=FAST_TIMINGS,
    )
    return dataclasses.replace(base, **overrides)


MakeLink = Callable[[LinkConfig], McuLink]
READY_S = 10.0


@dataclasses.dataclass
class PeerEnd:
    """A scripted MCU and the URL the link opens to reach it."""

    peer: ScriptedMcu
    url: str
    transport: PtyPeer | TcpPeer


@pytest.fixture(params=["pty", "tcp"])
async def peer_end(request: pytest.FixtureRequest) -> AsyncIterator[PeerEnd]:
    """A scripted MCU over a real pty pair, then over a real TCP socket."""
    peer = ScriptedMcu(list(PEER_DPS))
    if request.param == "pty":
        pty_peer = PtyPeer(peer)
        yield PeerEnd(peer, pty_peer.url, pty_peer)
        pty_peer.close()
    else:
        tcp_peer = await TcpPeer(peer).open()
        yield PeerEnd(peer, tcp_peer.url, tcp_peer)
        await tcp_peer.close()


@pytest.fixture
async def make_link() -> AsyncIterator[Callable[[LinkConfig], McuLink]]:
    """Build links that are stopped when the test ends."""
    links: list[McuLink] = []

    def build(config: LinkConfig) -> McuLink:
        link = McuLink(config)
        links.append(link)
        return link

    yield build
    for link in links:
        await link.stop()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A Mosquitto of our own on a free port (skipped without it, failed under CI=true)."""
    mosquitto_path()
    running = Broker(tmp_path)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def start() -> AsyncIterator[Callable[[GatewayConfig], Awaitable[Served]]]:
    """Start a gateway on a config (its Modbus client connected); all stopped after the test."""
    started: list[Served] = []

    async def starter(cfg: GatewayConfig) -> Served:
        return await start_served(cfg, Served, started)

    yield starter
    for served in started:
        await served.stop()


async def ready_link(make_link: MakeLink, end: PeerEnd, **overrides: object) -> McuLink:
    """A fast link to the peer's end, started and READY."""
    link = make_link(fast_config(end.url, **overrides))
    await link.start()
    await link.wait_ready(READY_S)
    return link


def reports_of(link: McuLink) -> list[DpValue]:
    """Every report the link passes on from now, in order."""
    seen: list[DpValue] = []
    link.add_report_listener(seen.append)
    return seen
