"""Where the HTTP endpoint listens: --http, the http: section of gateway.yaml, and their errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser, config_from_args
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.web.options import HttpListener

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_YAML = "modbus: {tcp: {port: 0}}\ndevices: [{unit: 1, link: 'sim://'}]\n"


def run_config(*argv: str) -> HttpListener | None:
    return config_from_args(build_parser().parse_args(["run", *argv])).http


def test_http_is_off_unless_asked_for() -> None:
    assert run_config("--link", "sim://") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080", HttpListener("127.0.0.1", 8080)),
        (":9100", HttpListener("127.0.0.1", 9100)),
        ("0.0.0.0:8080", HttpListener("0.0.0.0", 8080)),
        ("[::1]:8080", HttpListener("::1", 8080)),
    ],
)
def test_http_flag_a_bare_port_listens_on_localhost(text: str, expected: HttpListener) -> None:
    assert run_config("--link", "sim://", "--http", text) == expected


@pytest.mark.parametrize("text", ["http", "127.0.0.1:", "127.0.0.1:70000", "host:-1"])
def test_a_malformed_http_flag_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--http: expected HOST:PORT or PORT"):
        run_config("--link", "sim://", "--http", text)


def test_http_section_of_gateway_yaml_and_the_flag_overriding_it(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY_YAML + "http: {port: 8081}\n", encoding="utf-8")
    assert load_config(str(path)).http == HttpListener("127.0.0.1", 8081)
    assert run_config("--config", str(path)) == HttpListener("127.0.0.1", 8081)
    assert run_config("--config", str(path), "--http", "9000") == HttpListener("127.0.0.1", 9000)
    assert run_config("--config", str(path), "--read-only") == HttpListener("127.0.0.1", 8081)


def test_gateway_yaml_without_http_section_has_it_off(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY_YAML, encoding="utf-8")
    assert load_config(str(path)).http is None


def test_a_bad_http_section_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY_YAML + "http:\n  host: 127.0.0.1\n  colour: red\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    errors = caught.value.errors
    assert f"{path}:4: http: missing required key 'port'" in errors
    assert any(e.startswith(f"{path}:5: http.colour: unknown key") for e in errors), errors


def test_run_with_a_malformed_http_flag_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--link", "sim://", "--http", "nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--http: expected HOST:PORT or PORT, got 'nope'" in result.stderr
