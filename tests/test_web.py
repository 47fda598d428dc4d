"""The HTTP endpoint against a running gateway on the twin: metrics, health, API, frames."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import eventually
from web_gateway import TWIN, WebServed, start_web, web_config

from gateway.config import GatewayConfig
from gateway.modbus.server import TcpListener
from gateway.regmap.load import load_map
from gateway.service import GatewayService
from gateway.tuya.link import LinkState
from gateway.web import frames as web_frames
from gateway.web.options import HttpListener

ROOT = Path(__file__).resolve().parents[1]
POINTS = load_map(ROOT / "register_map.yaml")
VOLTAGE = POINTS.point("voltage").address
SWITCH = POINTS.point("switch").address
STATIC = ROOT / "gateway" / "web" / "static"
METRIC_NAMES = {
    "tuya_gateway_link_up",
    "tuya_gateway_link_state",
    "tuya_gateway_mcu_reboots",
    "tuya_gateway_frames_received",
    "tuya_gateway_frames_sent",
    "tuya_gateway_checksum_errors",
    "tuya_gateway_dp_age_seconds",
    "tuya_gateway_modbus_requests",
    "tuya_gateway_modbus_exceptions",
    "tuya_gateway_write_seconds",
    "tuya_gateway_modbus_connections",
    "tuya_gateway_point_value",
}

Start = Callable[[GatewayConfig], Awaitable[WebServed]]
SDM120 = str(ROOT / "gateway" / "maps" / "sdm120.yaml")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    started: list[WebServed] = []

    async def starter(cfg: GatewayConfig) -> WebServed:
        return await start_web(cfg, started)

    yield starter
    for served in started:
        await served.stop()


async def scrape(gw: WebServed) -> tuple[set[str], Samples]:
    """Metric family names and every sample, parsed with prometheus_client's own parser."""
    response = await gw.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(await response.text()))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    return {f.name for f in families}, samples


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_metrics_match_the_twin_and_the_modbus_traffic(start: Start) -> None:
    gw = await start(web_config(TWIN))
    await gw.ready()
    gw.twin().set_voltage(241.3)

    async def voltage_reported() -> bool:
        reply = await gw.client.read_input_registers(VOLTAGE, count=1, device_id=1)
        return not reply.isError() and reply.registers[0] == 2413

    await eventually(voltage_reported, "241.3 V in the register")
    reads = gw.service.web.observed[1].requests[4] if gw.service.web else 0
    bad = await gw.client.read_input_registers(9000, count=1, device_id=1)
    assert bad.isError()
    assert bad.exception_code == 0x02
    assert not (await gw.client.write_coil(SWITCH, False, device_id=1)).isError()

    names, samples = await scrape(gw)
    unit = (("unit", "1"),)
    assert names == METRIC_NAMES
    assert samples["tuya_gateway_link_up", unit] == 1
    assert samples["tuya_gateway_link_state", (("state", "READY"), ("unit", "1"))] == 1
    assert samples["tuya_gateway_link_state", (("state", "DOWN"), ("unit", "1"))] == 0
    assert samples["tuya_gateway_point_value", (("point", "voltage"), ("unit", "1"))] == 241.3
    assert samples["tuya_gateway_point_value", (("point", "switch"), ("unit", "1"))] == 0
    assert 0 <= samples["tuya_gateway_dp_age_seconds", (("dp", "phase_a"), ("unit", "1"))] < 5
    stats = gw.service.units[1].link.stats
    assert 0 < samples["tuya_gateway_frames_received_total", unit] <= stats.frames_received
    assert 0 < samples["tuya_gateway_frames_sent_total", unit] <= stats.frames_sent
    assert samples["tuya_gateway_checksum_errors_total", unit] == stats.checksum_errors == 0
    assert samples["tuya_gateway_mcu_reboots_total", unit] == 0
    fc4 = (("function", "4"), ("unit", "1"))
    assert samples["tuya_gateway_modbus_requests_total", fc4] == reads + 1
    assert samples["tuya_gateway_modbus_requests_total", (("function", "5"), ("unit", "1"))] == 1
    code = (("code", "0x02"), ("function", "4"), ("unit", "1"))
    assert samples["tuya_gateway_modbus_exceptions_total", code] == 1
    assert samples["tuya_gateway_write_seconds_count", ()] == 1
    assert samples["tuya_gateway_write_seconds_bucket", (("le", "+Inf"),)] == 1
    assert samples["tuya_gateway_modbus_connections", (("listener", "tcp"),)] == 1


async def test_a_stale_point_has_no_value_and_a_down_link_is_not_up(start: Start) -> None:
    gw = await start(web_config(TWIN, f"socket://127.0.0.1:{closed_port()}"))
    await gw.ready()
    _, samples = await scrape(gw)
    assert samples["tuya_gateway_link_up", (("unit", "1"),)] == 1
    assert samples["tuya_gateway_link_up", (("unit", "2"),)] == 0
    assert ("tuya_gateway_point_value", (("point", "voltage"), ("unit", "2"))) not in samples
    assert ("tuya_gateway_point_value", (("point", "voltage"), ("unit", "1"))) in samples


async def test_healthz_is_503_naming_the_unit_whose_link_is_not_ready(start: Start) -> None:
    gw = await start(web_config(TWIN, f"socket://127.0.0.1:{closed_port()}"))
    await gw.ready()
    response = await gw.get("/healthz")
    body = await response.json()
    assert response.status == 503
    assert body["status"] == "unavailable"
    assert body["units"]["1"] == "READY"
    assert list(body["not_ready"]) == ["2"]


async def test_healthz_is_200_when_every_link_is_ready(start: Start) -> None:
    gw = await start(web_config(TWIN, TWIN))
    await gw.ready(1)
    await gw.ready(2)
    response = await gw.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "units": {"1": "READY", "2": "READY"}}


async def test_api_units_shows_dps_and_the_registers_a_modbus_client_reads(start: Start) -> None:
    gw = await start(web_config(TWIN))
    await gw.ready()
    gw.twin().set_voltage(236.5)

    async def reported() -> bool:
        reply = await gw.client.read_input_registers(VOLTAGE, count=1, device_id=1)
        return not reply.isError() and reply.registers[0] == 2365

    await eventually(reported, "236.5 V in the register")
    assert not (await gw.client.write_coil(SWITCH, False, device_id=1)).isError()
    response = await gw.get("/api/units")
    assert response.status == 200
    (unit,) = (await response.json())["units"]
    assert unit["unit"] == 1
    assert unit["link"]["state"] == "READY"
    assert unit["product_key"] == POINTS.device.product_key
    dps = {dp["name"]: dp for dp in unit["dps"]}
    assert dps["phase_a"]["dp"] == 6
    assert dps["phase_a"]["type"] == "raw"
    assert dps["phase_a"]["value"]["voltage"] == 236.5
    assert "voltage 236.5 V" in dps["phase_a"]["text"]
    assert dps["switch"]["value"] is False
    assert 0 <= dps["phase_a"]["age_s"] < 5
    points = {p["name"]: p for p in unit["points"]}
    assert points["voltage"]["registers"] == [2365]
    assert points["voltage"]["value"] == 236.5
    assert points["voltage"]["stale"] is False
    modbus = await gw.client.read_input_registers(VOLTAGE, count=6, device_id=1)
    api_words = [w for name in ("voltage", "current", "power") for w in points[name]["registers"]]
    assert api_words == modbus.registers[: len(api_words)]
    (write,) = unit["writes"]
    assert write["points"] == ["switch"]
    assert write["exception"] is None
    assert write["values"] == [0]


async def test_api_units_marks_a_never_reported_point_stale(start: Start) -> None:
    gw = await start(web_config(f"socket://127.0.0.1:{closed_port()}"))
    (unit,) = (await (await gw.get("/api/units")).json())["units"]
    assert unit["dps"] == []
    voltage = next(p for p in unit["points"] if p["name"] == "voltage")
    assert voltage["stale"] is True
    assert voltage["registers"] is None
    assert voltage["exception"] == 0x0B


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, object]]:
    async for line in response.content:
        if line.startswith(b"data: "):
            yield json.loads(line[6:])


async def test_frame_stream_carries_both_directions_decoded(start: Start) -> None:
    gw = await start(web_config(TWIN))
    await gw.ready()
    response = await gw.get("/api/frames")
    assert response.headers["Content-Type"] == "text/event-stream"
    seen: dict[str, dict[str, object]] = {}
    async with asyncio.timeout(15):
        async for event in read_events(response):
            seen.setdefault(f"{event['dir']} {event['command']}", event)
            if "rx DP_REPORT" in seen and "tx HEARTBEAT" in seen:
                break
    report = seen["rx DP_REPORT"]
    assert report["unit"] == 1
    assert isinstance(report["dps"], list)
    assert report["dps"]
    assert str(report["hex"]).startswith("55 aa 03 07")
    response.close()


async def test_stopping_the_gateway_ends_an_open_frame_stream(start: Start) -> None:
    gw = await start(web_config(TWIN))
    await gw.ready()
    response = await gw.get("/api/frames")
    async with asyncio.timeout(15):
        await anext(read_events(response))
        await gw.service.stop()
        await response.content.read()  # returns at EOF: the server ended the stream
    assert response.content.at_eof()


async def test_a_client_that_falls_behind_is_dropped_and_the_link_goes_on(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_frames, "CLIENT_QUEUE", 3)
    gw = await start(web_config(TWIN))
    await gw.ready()
    assert gw.service.web is not None
    hub = gw.service.web.frames
    slow = hub.subscribe()  # never read
    received = gw.service.units[1].link.stats.frames_received

    async def dropped() -> bool:
        return slow.dropped

    await eventually(dropped, "the slow client dropped")
    await gw.ready()
    link = gw.service.units[1].link
    await eventually(
        lambda: _true(link.stats.frames_received > received + 3), "frames after the drop"
    )
    assert slow.queue.qsize() == 3  # nothing more was queued for it once it was dropped


async def _true(value: bool) -> bool:
    return value


async def test_console_page_is_self_contained_and_read_only(start: Start) -> None:
    gw = await start(web_config(TWIN))
    page = await gw.get("/")
    assert page.status == 200
    html = await page.text()
    assert "/static/console.js" in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        served = await gw.get(f"/static/{path.name}")
        assert served.status == 200
        assert await served.text() == text
    assert (await gw.get("/static/../service.py")).status == 404
    assert gw.session is not None
    posted = await gw.session.post(gw.url + "/api/units", data=b"{}")
    assert posted.status == 405
    tables = await (await gw.get("/api/registers")).json()
    assert tables["1"]["columns"][:4] == ["table", "address", "count", "name"]
    assert ["input_register", "0", "1", "voltage"] in [row[:4] for row in tables["1"]["rows"]]


async def test_http_off_by_default_and_a_taken_port_starts_nothing(start: Start) -> None:
    cfg = web_config(TWIN)
    assert GatewayService(dataclasses.replace(cfg, http=None)).web is None
    gw = await start(cfg)
    assert gw.service.web is not None
    modbus_port = closed_port()
    second = GatewayService(
        dataclasses.replace(
            cfg,
            tcp=TcpListener("127.0.0.1", modbus_port),
            http=HttpListener("127.0.0.1", gw.service.web.port),
        )
    )
    with pytest.raises(OSError, match="address already in use"):
        await second.start()
    with pytest.raises(ConnectionRefusedError):  # the Modbus listener it had opened is closed again
        await asyncio.open_connection("127.0.0.1", modbus_port)
    assert second.units[1].link.state is LinkState.STOPPED


async def test_a_unit_on_map_auto_is_counted_once_its_map_is_chosen(start: Start) -> None:
    config = web_config(TWIN)
    device = dataclasses.replace(config.devices[0], map_path="auto")
    gw = await start(dataclasses.replace(config, devices=(device,)))
    await gw.ready()

    async def served() -> bool:
        reply = await gw.client.read_input_registers(VOLTAGE, count=1, device_id=1)
        return not reply.isError()

    await eventually(served, "the auto map chosen and served")
    bad = await gw.client.read_input_registers(9000, count=1, device_id=1)
    assert bad.exception_code == 0x02
    assert not (await gw.client.write_coil(SWITCH, False, device_id=1)).isError()
    _, samples = await scrape(gw)
    fc4 = (("function", "4"), ("unit", "1"))
    assert samples["tuya_gateway_modbus_requests_total", fc4] >= 2
    code = (("code", "0x02"), ("function", "4"), ("unit", "1"))
    assert samples["tuya_gateway_modbus_exceptions_total", code] == 1
    assert samples["tuya_gateway_write_seconds_count", ()] == 1
    units = await (await gw.get("/api/units")).json()
    assert [w["points"] for w in units["units"][0]["writes"]] == [["switch"]]


async def bad_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await reader.read(100)
    finally:
        writer.close()


async def test_malformed_requests_get_400_and_one_log_line_not_tracebacks(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start(web_config(TWIN))
    await gw.ready()
    assert gw.service.web is not None
    port = gw.service.web.port
    huge_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    for request in (huge_header, huge_header, b"\x16\x03\x01 not http\r\n\r\n"):
        assert (await bad_request(port, request)).startswith(b"HTTP/1.0 400")
    assert (await gw.get("/healthz")).status == 200
    from_http = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelname for r in from_http] == ["WARNING"]  # once a minute per client
    assert "400" in from_http[0].getMessage()
    assert from_http[0].exc_info is None


async def test_a_meter_profile_s_gap_constants_are_not_measured_values(start: Start) -> None:
    config = web_config(TWIN)
    device = dataclasses.replace(config.devices[0], map_path=SDM120)
    gw = await start(dataclasses.replace(config, devices=(device,)))
    await gw.ready()
    _, samples = await scrape(gw)
    points = {dict(labels)["point"] for name, labels in samples if name.endswith("point_value")}
    assert "voltage" in points
    assert not [p for p in points if p.startswith("fill_")]
