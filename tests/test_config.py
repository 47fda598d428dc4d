"""gateway.yaml loading: every problem reported with its line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import CONFIG_SCHEMA, load_config
from gateway.errors import ConfigError
from gateway.regmap.load import load_map
from gateway.regmap.yaml_read import MAX_FILE_BYTES
from gateway.regmap.yaml_schema import json_schema


def test_negative_durations_are_rejected_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "modbus:\n"
        "  tcp: {port: 0}\n"
        "  rtu: {device: /dev/null, turnaround_delay_s: -0.5}\n"
        "write_policy:\n"
        "  switch_interval_s: -1\n"
        "devices:\n"
        '  - {unit: 1, link: "sim://"}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.errors == [
        f"{path}:3: modbus.rtu.turnaround_delay_s: -0.5 is below the minimum 0",
        f"{path}:5: write_policy.switch_interval_s: -1 is below the minimum 0",
    ]


def test_zero_durations_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "modbus: {tcp: {port: 0}}\n"
        "write_policy: {switch_interval_s: 0}\n"
        'devices: [{unit: 3, link: "sim://"}]\n',
        encoding="utf-8",
    )
    config = load_config(str(path))
    assert config.policy.switch_interval_s == 0
    assert [device.unit for device in config.devices] == [3]


def test_json_schema_of_the_config_carries_the_minimums() -> None:
    schema = json_schema(CONFIG_SCHEMA)
    policy = schema["properties"]["write_policy"]["properties"]
    assert policy["switch_interval_s"] == {"type": "number", "minimum": 0}


# -- hostile and broken files (issue 13): a file:line message and exit 2, in bounded time ----
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAP = ROOT / "register_map.yaml"
GATEWAY_YAML = 'modbus: {tcp: {port: 0}}\ndevices: [{unit: 1, link: "sim://", map: MAP}]\n'


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def _alias_bomb(levels: int = 12) -> str:
    """A valid-looking map whose derived sources expand to 9**levels nodes (about 1.5 kB)."""
    points = [f"  - {{name: p0, address: 0, source: {{sum: &a0 [{', '.join(['v'] * 9)}]}}}}"]
    for level in range(1, levels):
        args = ", ".join([f"{{sum: *a{level - 1}}}"] * 9)
        points.append(
            f"  - {{name: p{level}, address: {level}, source: {{sum: &a{level} [{args}]}}}}"
        )
    head = "device: {name: x}\ndatapoints: {v: {id: 1, type: value}}\ninput_registers:\n"
    return head + "\n".join(points) + "\n"


def _nested(levels: int) -> str:
    return "device: {name: x}\ndatapoints: {}\ninput_registers: " + "[" * levels + "]" * levels


HOSTILE = {
    "alias_bomb": (_alias_bomb(), "more than 100000 nodes once aliases are expanded"),
    "nested_150": (_nested(150), "nested deeper than 50 levels"),
    "tag": ("device: !foo {name: x}\ndatapoints: {}\n", "tags are not allowed here"),
    "python_tag": ("device: !!python/object:os.system {}\n", "tags are not allowed here"),
    "recursive_alias": ("device: &d {name: x, again: *d}\n", "refers to a node that contains it"),
    "undefined_alias": ("device: *nowhere\n", "names no anchor before it"),
    "bad_date": ("device: {name: 2001-13-45}\ndatapoints: {}\n", "is not a valid value"),
    "huge_int": ("device: {name: x}\ndatapoints: {a: {id: " + "9" * 5000 + "}}\n", "valid"),
    "list_key": ("device: {name: x}\ndatapoints: {[a]: 1}\n", "keys must be strings"),
    "broken_argument": (
        "device: {name: x}\ndatapoints: {v: {id: 1, type: value}}\n"
        "input_registers: [{name: q, address: 1, source: {sum: [v, [1]]}}]\n",
        "input_registers[0].source.sum[1]: expected a source text or a number or a mapping",
    ),
    "two_documents": ("device: {name: x}\n---\ndevice: {name: y}\n", "one YAML document"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_maps_end_in_one_message_with_a_line(tmp_path: Path, name: str) -> None:
    text, expected = HOSTILE[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_map(path)
    assert any(expected in line for line in caught.value.errors), caught.value.errors
    for line in caught.value.errors:
        assert re.match(rf"{re.escape(str(path))}:\d+: ", line), line


def test_an_alias_bomb_is_refused_from_every_command(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb(), encoding="utf-8")
    config = tmp_path / "gateway.yaml"
    config.write_text(GATEWAY_YAML.replace("MAP", str(bomb)), encoding="utf-8")
    config_bomb = tmp_path / "config_bomb.yaml"
    config_bomb.write_text(_alias_bomb(), encoding="utf-8")
    runs = [
        ("check", str(bomb)),
        ("run", "--link", "sim://", "--tcp", "127.0.0.1:0", "--map", str(bomb)),
        ("run", "--config", str(config)),
        ("run", "--config", str(config_bomb)),
    ]
    for args in runs:
        result = _gateway(*args)
        assert result.returncode == 2, (args, result.stderr)
        output = result.stdout + result.stderr
        assert "Traceback" not in output
        assert "more than 100000 nodes once aliases are expanded" in output, output


def test_a_50_mb_file_and_dev_zero_are_refused_without_reading_them(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: costs no disk
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    cases = {
        str(big): f"has {50 * 1024 * 1024} bytes, more than the limit of {MAX_FILE_BYTES}",
        "/dev/zero": "is not a regular file",
        str(fifo): "is not a regular file",
        str(tmp_path): "is not a regular file",  # a directory, given where a file belongs
    }
    for path, expected in cases.items():
        for args in (("check", path), ("run", "--config", path)):
            result = _gateway(*args)
            assert result.returncode == 2, (args, result.stderr)
            assert f"{path}:1: <top>: " in result.stdout + result.stderr
            assert expected in result.stdout + result.stderr


@pytest.mark.parametrize("number", [".nan", ".NaN", ".inf", "-.inf", "+.Inf"])
def test_nan_and_inf_are_refused_in_the_gateway_file(tmp_path: Path, number: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "modbus: {tcp: {port: 0, idle_timeout_s: 5}}\n"
        f"write_policy: {{switch_interval_s: {number}}}\n"
        'devices: [{unit: 1, link: "sim://"}]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.errors == [
        f"{path}:2: write_policy.switch_interval_s: expected a finite number, got {number}"
    ]


def test_nan_and_inf_are_refused_everywhere_in_a_map(tmp_path: Path) -> None:
    text = DEFAULT_MAP.read_text(encoding="utf-8")
    numbers = re.findall(r"(?m)^\s+(?:max_age_s|interval_s|confirm_timeout_s|min|max): \S+$", text)
    assert numbers  # the default map has these keys
    broken = re.sub(
        r"(?m)^(\s+(?:max_age_s|interval_s|confirm_timeout_s|min|max): )\S+$", r"\1.nan", text
    )
    path = tmp_path / "nan.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_map(path)
    finite = [e for e in caught.value.errors if "expected a finite number, got .nan" in e]
    assert len(finite) == len(numbers), caught.value.errors
