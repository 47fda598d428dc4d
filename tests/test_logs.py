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
from pymodbus.client import ModbusTcpClient

from gateway import logs

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
    about_units = [r for r in records if r["logger"].startswith(("gateway.tuya", "gateway.unit"))]
    assert len(about_units) >= 4
    for record in about_units:
        assert record["unit"] == 1, record
        assert record["fields"]["link"] == "sim://", record
    refused = [r for r in records if "refused" in r["message"]]
    assert refused
    assert refused[0]["logger"] == "gateway.unit.backend"


def test_text_logs_stay_the_default_and_name_unit_and_link() -> None:
    lines = _run_and_refuse().splitlines()
    assert not lines[0].startswith("{")
    refused = [line for line in lines if "refused" in line]
    assert "gateway.unit.backend: [unit 1 link sim://] write by" in refused[0]


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


@pytest.mark.parametrize("reason", list(logs.RefusedWrite))
def test_every_refusal_reason_logs_the_same_line(
    captured: io.StringIO, reason: logs.RefusedWrite
) -> None:
    with logs.unit_context(2, "socket://10.0.0.5:6668"):
        logs.refused_write(logging.getLogger("gateway.test"), "switch", 1.0000001, reason, "plc")
    record = json.loads(captured.getvalue())
    assert record["message"] == f"write refused: switch = 1.0 by plc: {reason.value}"
    assert record["unit"] == 2
    assert record["fields"] == {
        "event": "write_refused",
        "point": "switch",
        "value": 1.0,
        "reason": reason.value,
        "client": "plc",
        "link": "socket://10.0.0.5:6668",
    }
