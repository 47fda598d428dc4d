"""gateway.yaml loading: every problem reported with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import CONFIG_SCHEMA, load_config
from gateway.errors import ConfigError
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
