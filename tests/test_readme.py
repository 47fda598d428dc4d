"""The README stays true: its register table is generated, its commands are the real ones."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
START = "<!-- register-table:start -->\n"
END = "<!-- register-table:end -->"


def test_register_table_matches_the_default_map() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "gateway", "docs", "register_map.yaml", "--format", "md"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=30,
    ).stdout
    assert START in README
    assert END in README
    shown = README[README.index(START) + len(START) : README.index(END)]
    assert shown == generated, (
        "README register table is out of date: run "
        "`python -m gateway docs register_map.yaml --format md` and paste the output "
        "between the register-table markers"
    )


def test_set_up_commands_are_the_documented_ones() -> None:
    assert "pip install . && tuya-modbus-gateway run --link sim:// --tcp 127.0.0.1:5020" in README
    # .ci/run takes the line two lines after the marker: it must be the test command.
    lines = README.splitlines()
    marker = lines.index("<!-- test-command -->")
    assert lines[marker + 2] == "pip install -e '.[test]' && python -m pytest"


def test_every_documented_subcommand_exists() -> None:
    documented = set(re.findall(r"^\| `(\w+)", README, flags=re.MULTILINE))
    assert {"run", "simulate", "check", "docs", "schema", "discover", "sniff"} <= documented
    for name in documented:
        result = subprocess.run(
            [sys.executable, "-m", "gateway", name, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
            timeout=30,
        )
        assert result.returncode == 0, f"`{name}` is documented but not a command"


# -- a newcomer's path (issue 14) -------------------------------------------------------------
def test_setup_gets_a_python_311_venv_before_the_two_commands() -> None:
    venv = README.index("python3 -m venv .venv && . .venv/bin/activate")
    assert "Python 3.11 or newer" in README[:venv]
    assert venv < README.index("pip install . && tuya-modbus-gateway run --link sim://")
    assert venv < README.index("<!-- test-command -->")


def test_the_readme_names_the_tools_of_the_suite_and_how_to_install_them() -> None:
    from tools import INSTALL

    apt = next(line for line in README.splitlines() if line.startswith("sudo apt install mbpoll"))
    for tool in [*INSTALL, "mosquitto", "prometheus", "chromium", "openssl"]:
        assert f"`{tool}`" in README
        assert tool in apt.split()


def test_a_missing_tool_skips_with_its_install_line_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tools import require

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"mbpoll is not installed \(apt-get"):
        require("mbpoll")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and socat is not installed"):
        require("socat")


def _mbpoll_writes() -> list[list[str]]:
    """Every mbpoll command of the README that writes (values after the host)."""
    commands = re.findall(r"^(mbpoll .*127\.0\.0\.1 .+)$", README, flags=re.MULTILINE)
    return [command.split() for command in commands]


def test_every_mbpoll_write_example_works_against_a_slow_motor() -> None:
    from tools import require

    require("mbpoll")
    writes = _mbpoll_writes()
    assert len(writes) >= 3
    assert all("-o" in w and w[w.index("-o") + 1] == "5" for w in writes)
    port = _free_port()
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--link",
            "sim://?motor_time=1.5",
            "--tcp",
            f"127.0.0.1:{port}",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_served(port)
        for command in writes:
            time.sleep(2.1)  # the switch interval the README asks for between switch writes
            result = _mbpoll(command, port)
            assert result.returncode == 0, f"{' '.join(command)}: {result.stdout}"
        time.sleep(2.1)
        without = [arg for arg in writes[0] if arg not in ("-o", "5")]
        assert _mbpoll(without, port).returncode != 0  # why -o 5: 1 s is shorter than the motor
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(30)


def _mbpoll(command: list[str], port: int) -> subprocess.CompletedProcess[str]:
    args = [str(port) if arg == "5020" else arg for arg in command]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_served(port: int) -> None:
    deadline = time.monotonic() + 30
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        while not (client.connect() and not client.read_coils(0, count=1, device_id=1).isError()):
            assert time.monotonic() < deadline, "the gateway never served"
            time.sleep(0.2)
    finally:
        client.close()


async def test_the_troubleshooting_block_read_entry_is_true() -> None:
    """One point the breaker never reports fails its block (0x0B); a gap fails with 0x02."""
    from gateway.config import DeviceConfig, GatewayConfig
    from gateway.modbus.server import TcpListener
    from gateway.service import GatewayService

    assert "**A block read fails although most of its points are fine**" in README
    # A family B breaker behind the family A map: it never reports dp9, the fault bitmap.
    device = DeviceConfig(unit=1, link="sim://family_b", map_path="register_map.yaml")
    service = GatewayService(GatewayConfig((device,), TcpListener("127.0.0.1", 0)))
    await service.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=service.tcp_port, timeout=2, retries=0)
    try:
        await client.connect()
        for _ in range(150):
            if not (await client.read_input_registers(0, count=7, device_id=1)).isError():
                break
            await asyncio.sleep(0.1)
        assert not (await client.read_input_registers(0, count=7, device_id=1)).isError()
        block = await client.read_input_registers(0, count=9, device_id=1)  # 7-8: fault
        assert block.isError()
        assert block.exception_code == 0x0B
        gap = await client.read_input_registers(15, count=10, device_id=1)  # 18-99 unmapped
        assert gap.isError()
        assert gap.exception_code == 0x02
    finally:
        client.close()
        await service.stop()


def test_the_safety_section_states_the_write_rules() -> None:
    safety = README[README.index("## Safety") : README.index("## The twin for PLC")]
    for rule in (
        "only when the MCU confirms it",  # confirmation by the MCU's report
        "`switch_interval_s`",
        "No queued or late switch commands",
        "never sent afterwards",
        "never resent",
        "resent once",
        "`allow_broadcast_switch: true`",
    ):
        assert rule in safety, rule


def test_the_register_table_gives_range_and_step_of_writable_points() -> None:
    from gateway.regmap.docs import SCALE_SENTENCE, table_rows
    from gateway.regmap.load import load_map

    assert SCALE_SENTENCE in README
    assert "register = value × scale" in SCALE_SENTENCE
    rows = {row[3]: row for row in table_rows(load_map("tongou_tosmr1"))}
    assert rows["leakage_threshold"][9:11] == ("30..100", "5")  # the device's own step
    assert rows["temperature_threshold"][9:11] == ("-25..100", "0.1")  # scale 10: 0.1 °C
    assert rows["switch"][9:11] == ("0..1", "1")
    assert rows["voltage"][8:11] == ("r", "", "")  # read-only: no range, no step
