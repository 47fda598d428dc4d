"""MQTT settings: the ``mqtt:`` section of gateway.yaml, the ``--mqtt`` option, the gateway id.

MQTT runs when a broker URL is given, by ``--mqtt`` (which wins) or by ``mqtt.url``. The URL is
``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` for TLS (port 1883 / 8883).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.errors import ConfigError
from gateway.regmap.yaml_schema import Checked, Int, Num, Str, obj

__all__ = [
    "DEFAULT_BASE",
    "MQTT_SCHEMA",
    "MqttSettings",
    "add_cli_options",
    "default_gateway_id",
    "parse_section",
    "settings_from_args",
]

DEFAULT_BASE = "tuya-modbus-gateway"
_TOPIC_LEVEL = r"^[A-Za-z0-9_-]+$"  # no MQTT wildcards, no separators, valid HA node id
_TOPIC_PATH = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
_SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}
_FILES = ("ca", "client_cert", "client_key")

MQTT_SCHEMA = obj(
    "MQTT northbound: state, Home Assistant discovery and commands on a broker",
    url=Str(pattern=r"^mqtts?://", description="mqtt://HOST:PORT or mqtts://HOST:PORT"),
    username=Str(),
    password=Str(),
    ca=Str(description="CA certificate file (PEM) for mqtts://; the system store by default"),
    client_cert=Str(description="client certificate file (PEM) for mqtts://"),
    client_key=Str(description="client private key file (PEM) for mqtts://"),
    base=Str(pattern=_TOPIC_PATH, description=f"topic prefix, default {DEFAULT_BASE}"),
    gateway_id=Str(pattern=_TOPIC_LEVEL, description="default: derived from the host name"),
    discovery_prefix=Str(pattern=_TOPIC_PATH, description="Home Assistant's, homeassistant"),
    min_interval_s=Num(minimum=0, description="least time between two values of a point"),
    queue_size=Int(16, 1_000_000, "outgoing messages held at most (newest win)"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where the broker is, how to log in, and how topics are named."""

    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)  # never in a log line
    ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    base: str = DEFAULT_BASE
    gateway_id: str = ""
    discovery_prefix: str = "homeassistant"
    min_interval_s: float = 1.0
    queue_size: int = 4096
    backoff_min_s: float = 0.5
    backoff_max_s: float = 30.0

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def default_gateway_id(hostname: str | None = None) -> str:
    """A stable topic-safe id from the host name: ``gw-`` + its first label, lower case."""
    name = (hostname or socket.gethostname()).split(".")[0].lower()
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", name).strip("-")
    return f"gw-{cleaned or 'host'}"


def _from_url(url: str) -> MqttSettings:
    """Host, port, TLS and credentials of a broker URL; ValueError if it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(f"expected mqtt://HOST:PORT or mqtts://HOST:PORT, got {url!r}")
    default_port, tls = _SCHEMES[parts.scheme]
    port = parts.port or default_port  # .port raises ValueError when out of range
    return MqttSettings(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _merge(settings: MqttSettings, fields: dict[str, Any]) -> MqttSettings:
    fields = {k: v for k, v in fields.items() if v is not None and k != "url"}
    settings = dataclasses.replace(settings, **fields)
    if not settings.gateway_id:
        settings = dataclasses.replace(settings, gateway_id=default_gateway_id())
    return settings


def _files(checked: Checked, raw: dict[str, Any]) -> dict[str, str]:
    """The TLS files, relative to the gateway file's folder; each must be a file."""
    base_dir = os.path.dirname(os.path.abspath(checked.filename))
    found: dict[str, str] = {}
    for key in _FILES:
        path = raw.get(key)
        if not isinstance(path, str):
            continue
        path = os.path.normpath(os.path.join(base_dir, path))
        if not os.path.isfile(path):
            checked.error(f"mqtt.{key}", f"no such file: {path}")
        found[key] = path
    return found


def parse_section(checked: Checked, raw: dict[str, Any] | None) -> MqttSettings | None:
    """The checked ``mqtt:`` section; without a URL it waits for ``--mqtt``."""
    if raw is None:
        return None
    raw = {**raw, **_files(checked, raw)}
    url = raw.get("url")
    if url is None:
        return _merge(MqttSettings(host=""), raw)  # completed by --mqtt, else unused
    try:
        return _merge(_from_url(url), raw)
    except ValueError as err:
        checked.error("mqtt.url", str(err))
        return None


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """The ``run`` options of the MQTT northbound."""
    parser.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish to an MQTT broker: mqtt://HOST:PORT or mqtts://HOST:PORT (TLS);"
        " the rest goes in gateway.yaml's mqtt: section",
    )


def settings_from_args(
    args: argparse.Namespace, section: MqttSettings | None
) -> MqttSettings | None:
    """``--mqtt`` over the file's section; None when no broker URL is given anywhere."""
    url: str | None = getattr(args, "mqtt", None)
    if url is None:
        return section if section is not None and section.host else None
    try:
        broker = _from_url(url)
    except ValueError as err:
        raise ConfigError([f"--mqtt: {err}"]) from None
    if section is None:
        return _merge(broker, {})
    if broker.username is None:  # the login stays in the file, out of the process list
        broker = dataclasses.replace(broker, username=section.username, password=section.password)
    return dataclasses.replace(
        section,
        host=broker.host,
        port=broker.port,
        tls=broker.tls,
        username=broker.username,
        password=broker.password,
    )
