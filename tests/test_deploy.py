"""Deployment files: the Dockerfile's health check, the systemd unit and its install steps."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
UNIT = (ROOT / "deploy" / "tuya-modbus-gateway.service").read_text(encoding="utf-8")
TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _health_command(port: int) -> list[str]:
    """The HEALTHCHECK's exec form, aimed at ``port``, run by this interpreter."""
    match = re.search(r"^HEALTHCHECK .*?CMD (\[[^\n]*\])$", DOCKERFILE, re.MULTILINE | re.DOTALL)
    assert match is not None, "the Dockerfile has no HEALTHCHECK CMD [...]"
    command: list[str] = json.loads(match.group(1))
    assert command[0] == "python"
    return [sys.executable, *(arg.replace("5020", str(port)) for arg in command[1:])]


def test_the_health_check_passes_on_a_serving_gateway_and_fails_without() -> None:
    port = _free_port()
    check = _health_command(port)
    assert subprocess.run(check, capture_output=True, timeout=TIMEOUT_S).returncode != 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--link", "sim://", "--tcp", f"127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while subprocess.run(check, capture_output=True, timeout=TIMEOUT_S).returncode != 0:
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(TIMEOUT_S)


def test_the_image_takes_its_maps_from_the_package_and_documents_group_add() -> None:
    assert "RUN pip install ." in DOCKERFILE
    assert "COPY gateway ./gateway" in DOCKERFILE
    assert "maps/" not in DOCKERFILE.replace("gateway maps", "")  # no separate maps folder
    for text in (DOCKERFILE, (ROOT / "README.md").read_text(encoding="utf-8")):
        assert '--group-add "$(stat -c %g /dev/ttyUSB0)"' in text


def test_the_unit_allows_usb_acm_and_pi_uarts() -> None:
    allowed = re.findall(r"^DeviceAllow=char-(\w+) rw$", UNIT, re.MULTILINE)
    assert {"ttyUSB", "ttyACM", "ttyAMA"} <= set(allowed)
    assert "DevicePolicy=closed" in UNIT


def _install_steps() -> list[str]:
    lines = UNIT.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Install:"))
    steps = []
    for line in lines[start + 2 :]:
        if not line.startswith("#   "):
            break
        steps.append(line.removeprefix("#   "))
    return steps


def test_the_install_steps_work_as_written(tmp_path: Path) -> None:
    """Every step runs under a temporary root; apt and systemctl are what is left out.

    The one change: the venv sees this machine's site-packages and pip installs without
    dependencies (already there), so the test needs no package index.
    """
    steps = _install_steps()
    assert steps[0] == "apt-get install -y python3-venv"
    assert steps[-1].startswith("systemctl daemon-reload")
    clone = tmp_path / "clone"
    shutil.copytree(
        ROOT, clone, ignore=shutil.ignore_patterns(".*", "__pycache__", "build", "*.egg-info")
    )
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)  # there on every Debian
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for step in steps[1:-1]:
        step = re.sub(r"(?<![\w.])/(opt|etc)/", f"{root}/\\1/", step)
        step = step.replace("-m venv ", "-m venv --system-site-packages ")
        step = step.replace("pip install .", "pip install -q --no-deps .")
        step = step.replace("python3 -m venv", f"{sys.executable} -m venv")
        result = subprocess.run(
            step, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{step}\n{result.stdout}\n{result.stderr}"
    etc = root / "etc" / "tuya-modbus-gateway"
    assert (etc / "gateway.yaml").is_file()
    assert (etc / "register_map.yaml").is_file()
    assert (root / "etc" / "systemd" / "system" / "tuya-modbus-gateway.service").is_file()
    _start_as_the_unit_would(root, etc, env)


def _start_as_the_unit_would(root: Path, etc: Path, env: dict[str, str]) -> None:
    """ExecStart, in WorkingDirectory, with the installed config (its port moved to a free one)."""
    config = etc / "gateway.yaml"
    config.write_text(config.read_text().replace("port: 5020", f"port: {_free_port()}"))
    binary = root / "opt" / "tuya-modbus-gateway" / "venv" / "bin" / "tuya-modbus-gateway"
    proc = subprocess.Popen(
        [str(binary), "run", "--config", str(config)],
        cwd=etc,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    while not seen or "gateway started" not in seen[-1]:  # a bad config exits with status 2
        seen.append(proc.stderr.readline())
        assert seen[-1], f"the gateway ended: {''.join(seen)}"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err
    _verify_unit(root, binary)


def _verify_unit(root: Path, binary: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = root / "tuya-modbus-gateway.service"
    unit.write_text(
        UNIT.replace("/opt/tuya-modbus-gateway/venv/bin/tuya-modbus-gateway", str(binary))
    )
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
