"""Where the HTTP endpoint listens: ``--http HOST:PORT`` and the ``http:`` gateway.yaml section.

Off unless asked for; a bare port listens on 127.0.0.1 only. The console is read-only, but it
shows every value and the MCU traffic, so listening on all interfaces is logged as a warning.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from gateway.errors import ConfigError
from gateway.regmap.yaml_schema import Int, Key, Str, obj

__all__ = ["HTTP_SCHEMA", "HttpListener", "add_cli_options", "http_from_args", "http_from_yaml"]

DEFAULT_HOST = "127.0.0.1"
ALL_INTERFACES = ("0.0.0.0", "::", "")

HTTP_SCHEMA = obj(
    "the HTTP endpoint: /metrics, /healthz, /api/units, /api/frames and the console at /",
    host=Str(description="127.0.0.1 by default; 0.0.0.0 shows the console to the network"),
    port=Key(Int(0, 65535), True),
)


@dataclasses.dataclass(frozen=True, slots=True)
class HttpListener:
    """The HTTP endpoint's address."""

    host: str = DEFAULT_HOST
    port: int = 8080


def parse_http(text: str) -> HttpListener:
    """``HOST:PORT``, ``[v6]:PORT`` or ``PORT`` → HttpListener; ConfigError if malformed."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]") if sep else DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 0xFFFF:
        raise ConfigError([f"--http: expected HOST:PORT or PORT, got {text!r}"])
    return HttpListener(host or DEFAULT_HOST, port)


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """The ``run`` options of the HTTP endpoint."""
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve /metrics, /healthz, /api and the console here (off by default;"
        f" a bare PORT listens on {DEFAULT_HOST})",
    )


def http_from_args(
    args: argparse.Namespace, configured: HttpListener | None
) -> HttpListener | None:
    """``--http`` if given (it overrides gateway.yaml), else the configured listener."""
    text = getattr(args, "http", None)
    return configured if text is None else parse_http(text)


def http_from_yaml(section: dict[str, Any] | None) -> HttpListener | None:
    """The checked ``http:`` section of gateway.yaml (None when absent)."""
    if section is None:
        return None
    return HttpListener(section.get("host", DEFAULT_HOST), section["port"])
