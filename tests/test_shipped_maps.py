"""Shipped maps: package data in the wheel, ``--map NAME``, ``maps``, a venv outside the clone."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.regmap.catalog import map_listing
from gateway.regmap.load import load_map
from gateway.regmap.shipped import resolve_map, shipped_path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "gateway" / "maps"
TIMEOUT_S = 30.0


def test_the_top_level_map_is_the_shipped_default() -> None:
    assert (ROOT / "register_map.yaml").read_bytes() == (SHIPPED / "register_map.yaml").read_bytes()


def test_every_shipped_map_loads_by_name_and_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = [item.name for item in map_listing()]
    assert names == sorted(p.stem for p in SHIPPED.glob("*.yaml"))
    assert {"register_map", "sdm120", "tongou_tosmr1"} <= set(names)
    for name in names:
        assert load_map(name).path == shipped_path(name)
        assert load_map(f"{name}.yaml").path == shipped_path(name)


def test_a_file_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_map("sdm120") == shipped_path("sdm120")
    shutil.copy(SHIPPED / "tongou_tosmr1.yaml", tmp_path / "sdm120.yaml")
    assert load_map("sdm120.yaml").device.name == "family_b"
    assert load_map("sdm120").device.name == "sdm120"  # no file named sdm120: the shipped one


def test_an_unknown_map_names_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nor a shipped map: register_map, sdm120"):
        load_map("sdm12O")
    with pytest.raises(ConfigError, match="cannot read the map"):
        load_map(tmp_path / "sdm120.yaml")  # a path is a path: no fallback


def test_gateway_yaml_takes_shipped_names(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "modbus: {tcp: {port: 0}}\n"
        "devices:\n"
        "  - {unit: 1, link: 'sim://'}\n"
        "  - {unit: 2, link: 'sim://', map: sdm120}\n"
        "  - {unit: 3, link: 'sim://', map: mine.yaml}\n"
    )
    devices = load_config(str(config)).devices
    assert devices[0].map_path == shipped_path("register_map")
    assert devices[1].map_path == shipped_path("sdm120")
    assert devices[2].map_path == str(tmp_path / "mine.yaml")


def test_maps_command_lists_names_families_and_product_keys() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "maps"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    ).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["name", "device", "family", "product", "keys", "description"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {item.name for item in map_listing()}
    assert "(default)" in rows["register_map"]
    assert rows["sdm120"].split()[1:4] == ["family_a:", "Tuya", "AT-Q-SMR1-20"]
    assert "lih4vjeoyao4jeku" in rows["sdm120"]
    assert "family_b: Tongou TO-SMR1" in rows["tongou_tosmr1"]  # the twin's sim://family_b
    assert "family_c: Tongou AT-QCB2-JWT" in rows["tongou_qcb2"]


# -- the package as a newcomer gets it --------------------------------------------------------
def _clone(target: Path) -> Path:
    """The files a build needs, copied so that building leaves the worktree untouched."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(
        ROOT / "gateway", target / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    return target


def test_the_wheel_contains_every_shipped_map(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "-q",
            "-w",
            "tmp",
        ],
        cwd=clone,
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = (clone / "tmp").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"gateway/maps/{p.name}" for p in SHIPPED.glob("*.yaml")}
    assert expected <= names
    assert "gateway/maps/register_map.yaml" in names


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the clone with the package installed from a clone: its bin dir."""
    base = tmp_path_factory.mktemp("newcomer")
    (base / "clone").mkdir()
    clone = _clone(base / "clone")
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--no-deps",
            str(clone),
        ],
        check=True,
        timeout=300,
        capture_output=True,
        env=_clean_env(),
        cwd=base,
    )
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return venv / "bin"


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH: the venv must find the installed package, not this tree."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _read_until_served(port: int, address: int, count: int) -> list[int]:
    deadline = time.monotonic() + TIMEOUT_S
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        while time.monotonic() < deadline:
            if client.connect():
                reply = client.read_input_registers(address, count=count, device_id=1)
                if not reply.isError():
                    return list(reply.registers)
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"nothing served on port {port}")


@pytest.mark.parametrize(("args", "address", "count"), [((), 0, 1), (("--map", "sdm120"), 0, 2)])
def test_a_fresh_venv_serves_from_another_folder(
    installed: Path, args: tuple[str, ...], address: int, count: int
) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(installed / "tuya-modbus-gateway"),
            "run",
            "--link",
            "sim://",
            *args,
            "--tcp",
            f"127.0.0.1:{port}",
        ],
        cwd=installed.parents[1] / "elsewhere",
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        registers = _read_until_served(port, address, count)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err.decode()
    assert str(installed.parent) in err.decode()  # the venv's own copy of the map was served
    assert any(registers)


def test_a_fresh_venv_lists_the_maps(installed: Path) -> None:
    out = subprocess.run(
        [str(installed / "tuya-modbus-gateway"), "maps"],
        cwd=installed.parents[1] / "elsewhere",
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    ).stdout
    assert {"register_map", "sdm120", "tongou_tosmr1"} <= {
        line.split()[0] for line in out.splitlines()[1:]
    }
