"""Log lines: JSON or text, each about a unit naming the unit and its link, numbers rounded."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient
from test_write_safety import RawClient, write_register
from waiting import eventually

from gateway import logs
from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.modbus.tables import Table
from gateway.regmap.load import load_map
from gateway.service import GatewayService

TIMEOUT_S = 30.0
KEYS = ["time", "level", "logger", "unit", "message", "fields"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_and_refuse(*extra: str) -> str:
    """Run the gateway on the twin, make it refuse one write (out of range), stop: its stderr."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--link",
            "sim://",
            "--tcp",
            f"127.0.0.1:{port}",
            *list(extra),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (client.connect() and not client.read_coils(0, count=1, device_id=1).isError()):
            assert time.monotonic() < deadline, "the gateway never served"
            time.sleep(0.2)
        refused = client.write_register(0, 60000, device_id=1)  # over_current is 1..63 A
        assert refused.isError()
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err
    return err


def test_json_logs_are_one_object_per_line_naming_unit_and_link() -> None:
    records = [json.loads(line) for line in _run_and_refuse("--log-format", "json").splitlines()]
    assert records
    for record in records:
        assert list(record) == KEYS
    gateway_wide = ("gateway.unit.state_store",)  # one store for all units
    about_units = [
        r
        for r in records
        if r["logger"].startswith(("gateway.tuya", "gateway.unit"))
        and r["logger"] not in gateway_wide
    ]
    assert len(about_units) >= 4
    for record in about_units:
        assert record["unit"] == 1, record
        assert record["fields"]["link"] == "sim://", record
    (refused,) = [r for r in records if r["message"].startswith("write refused")]
    assert refused["logger"] == "gateway.logs"
    assert refused["fields"]["points"] == {"overcurrent_threshold": 60000}
    assert refused["fields"]["reason"] == "out of range"


def test_text_logs_stay_the_default_and_name_unit_and_link() -> None:
    lines = _run_and_refuse().splitlines()
    assert not lines[0].startswith("{")
    (refused,) = [line for line in lines if "write refused" in line]
    assert (
        "WARNING gateway.logs: [unit 1 link sim://] write refused: overcurrent_threshold" in refused
    )
    assert refused.endswith("out of range (0x03)")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.setup("INFO", "json", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_numbers_are_rounded_and_fields_kept(captured: io.StringIO) -> None:
    logger = logging.getLogger("gateway.test")
    with logs.unit_context(7, "/dev/ttyUSB0"):
        logger.info("voltage %s V", 230.10000000000002, extra={"fields": {"v": 0.1 + 0.2}})
    record = json.loads(captured.getvalue())
    assert record["message"] == "voltage 230.1 V"
    assert record["unit"] == 7
    assert record["fields"] == {"v": 0.3, "link": "/dev/ttyUSB0"}


async def _refusal(
    captured: io.StringIO, link: str, *, read_only: bool = False, writes: int = 1
) -> dict[str, object]:
    """Serve ``link``, write the switch coil ``writes`` times in a row: the last refusal line."""
    device = DeviceConfig(unit=3, link=link, map_path="register_map.yaml")
    policy = WritePolicy(read_only=read_only)
    service = GatewayService(GatewayConfig((device,), TcpListener("127.0.0.1", 0), None, policy))
    await service.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=service.tcp_port, timeout=5, retries=0)
    try:
        await client.connect()
        if link.startswith("sim"):
            await _until_ready(client)
        for n in range(writes):
            await client.write_coil(0, n % 2 == 0, device_id=3)
    finally:
        client.close()
        await service.stop()
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    return [r for r in lines if r["message"].startswith("write refused")][-1]


async def _until_ready(client: AsyncModbusTcpClient) -> None:
    async def served() -> bool:
        return not (await client.read_coils(0, count=1, device_id=3)).isError()

    await eventually(served, "the unit serving")


async def test_refusals_log_one_line_of_one_shape_whatever_the_reason(
    captured: io.StringIO,
) -> None:
    closed = _free_port()  # nobody listens: the link never comes up
    cases = {
        "busy": await _refusal(captured, "sim://?motor_time=0.1", writes=2),
        "read-only": await _refusal(captured, "sim://", read_only=True),
        "link down": await _refusal(captured, f"socket://127.0.0.1:{closed}"),
    }
    for reason, record in cases.items():
        value = 0 if reason == "busy" else 1
        code = {"busy": "0x06", "read-only": "0x01", "link down": "0x0B"}[reason]
        assert record["message"] == (
            f"write refused: switch = {value} by {record['fields']['client']}: {reason} ({code})"
        )
        assert record["unit"] == 3
        assert record["fields"]["points"] == {"switch": value}
        assert record["fields"]["reason"] == reason


def test_a_refused_register_write_names_the_point_and_rounds_its_value(
    captured: io.StringIO,
) -> None:
    tongou = load_map("tongou_tosmr1")
    info = logs.UnitInfo(1, "sim://family_b", lambda: tongou, False, lambda: True)
    # temperature_threshold: int16, scale 10, -25..100 °C; 1234 asks for 123.4 °C
    logs.log_refused_write(info, Table.HOLDING_REGISTER, 4, [1234], "plc", 0x03)
    record = json.loads(captured.getvalue())
    assert record["message"] == (
        "write refused: temperature_threshold = 123.4 by plc: out of range (0x03)"
    )
    assert record["fields"]["link"] == "sim://family_b"


async def test_refusals_by_the_server_use_the_one_line_with_unit_link_and_point(
    captured: io.StringIO,
) -> None:
    """Writes to the broadcast alias and queued switch writes: refused before the unit sees them."""
    device = DeviceConfig(unit=3, link="sim://", map_path="register_map.yaml")
    policy = WritePolicy(switch_interval_s=0.0)
    service = GatewayService(GatewayConfig((device,), TcpListener("127.0.0.1", 0), None, policy))
    await service.start()
    client = await RawClient.open(service.tcp_port)
    try:
        await service.units[3].link.wait_ready(TIMEOUT_S)
        client.send((1, 0, b"\x05\x00\x00\x00\x00"))  # switch off through the alias
        assert await client.reply() == (1, b"\x85\x01")
        client.send((2, 3, write_register(0, 40)), (3, 3, b"\x05\x00\x00\x00\x00"))
        assert await client.reply() == (3, b"\x85\x06")  # at once, ahead of the write
        assert await client.reply() == (2, write_register(0, 40))
    finally:
        client.close()
        await service.stop()
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    refused = [r for r in lines if r["message"].startswith("write refused")]
    reasons = {
        "broadcast (unit 0): motor writes need an address; or set allow_broadcast_switch": "0x01",
        "busy: would wait behind 1 request(s) on this connection; never queued": "0x06",
    }
    assert [r["fields"]["reason"] for r in refused] == list(reasons)
    for record in refused:
        fields = record["fields"]
        reason, code = fields["reason"], reasons[fields["reason"]]
        assert (
            record["message"]
            == f"write refused: switch = 0 by {fields['client']}: {reason} ({code})"
        )
        assert record["logger"] == "gateway.logs"
        assert record["unit"] == 3
        assert fields["link"] == "sim://"
        assert fields["points"] == {"switch": 0}
        assert fields["code"] == code
        assert fields["event"] == "write_refused"
