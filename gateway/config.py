"""The multi-device gateway file (``gateway.yaml``): Modbus listeners, write policy, devices.

Every problem is collected and reported at once as ``file:line: path: message``; relative map
and capture paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from gateway.errors import ConfigError
from gateway.modbus.server import RtuListener, TcpListener
from gateway.mqtt.settings import MQTT_SCHEMA, MqttSettings, parse_section
from gateway.regmap.yaml_schema import Bool, Checked, Int, Key, ListOf, Num, Str, check_yaml, obj

__all__ = [
    "CONFIG_SCHEMA",
    "DeviceConfig",
    "GatewayConfig",
    "WritePolicy",
    "load_config",
    "parse_host_port",
]

_BAUD = Int(1200, 4_000_000, "bits per second")
_TCP = obj(
    "the Modbus TCP listener",
    host=Str(description="127.0.0.1 by default; 0.0.0.0 exposes the breakers to the network"),
    port=Int(0, 65535),
    max_connections=Int(1, 10_000),
    idle_timeout_s=Num(exclusive_minimum=0),
    unknown_unit_exception=Int(0x0A, 0x0B, "0x0A or 0x0B for a unit id nobody serves"),
)
_RTU = obj(
    "the Modbus RTU listener on a serial port",
    device=Key(Str(), True),
    baudrate=_BAUD,
    parity=Str(("N", "E", "O")),
    stopbits=Int(1, 2),
    rs485_rts=Bool(),
    echo_suppression=Bool(),
    turnaround_delay_s=Num(minimum=0),
)
_DEVICE = obj(
    "one breaker",
    unit=Key(Int(1, 247), True),
    link=Key(Str(description="/dev/ttyUSB0, socket://host:port, sim://[variant]"), True),
    map=Str(description="register map, relative to this file"),
    baudrate=_BAUD,
    capture=Str(description="JSON-lines capture of the TuyaMCU traffic"),
)
CONFIG_SCHEMA = obj(
    "tuya-modbus-gateway gateway.yaml",
    modbus=Key(obj("Modbus listeners", tcp=_TCP, rtu=_RTU), True),
    write_policy=obj(
        "gateway-wide write rules", read_only=Bool(), switch_interval_s=Num(minimum=0)
    ),
    devices=Key(ListOf(_DEVICE, min_items=1), True),
    mqtt=MQTT_SCHEMA,
)


@dataclasses.dataclass(frozen=True, slots=True)
class WritePolicy:
    """Gateway-wide write rules."""

    read_only: bool = False
    switch_interval_s: float = 2.0


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One breaker: its Modbus unit id, its link URL and its map."""

    unit: int
    link: str
    map_path: str = "register_map.yaml"
    baudrate: int | None = None
    capture: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the service needs to start."""

    devices: tuple[DeviceConfig, ...]
    tcp: TcpListener | None = None
    rtu: RtuListener | None = None
    policy: WritePolicy = dataclasses.field(default_factory=WritePolicy)
    mqtt: MqttSettings | None = None


def parse_host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``, or ``PORT``) → (host, port); ValueError if malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    host = host.strip("[]") or default_host
    port = int(port_text)
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} is not 0..65535")
    return host, port


def _resolve(base_dir: str, path: str | None) -> str | None:
    if path is None or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _devices(checked: Checked, items: list[Any], base_dir: str) -> tuple[DeviceConfig, ...]:
    devices: list[DeviceConfig] = []
    seen: dict[int, int] = {}
    for index, item in enumerate(items):
        if item is None:  # rejected by the schema, already reported
            continue
        if item["unit"] in seen:
            first = seen[item["unit"]]
            checked.error(
                f"devices[{index}].unit", f"unit {item['unit']} already used by devices[{first}]"
            )
            continue
        seen[item["unit"]] = index
        devices.append(
            DeviceConfig(
                unit=item["unit"],
                link=item["link"],
                map_path=_resolve(base_dir, item.get("map", "register_map.yaml")) or "",
                baudrate=item.get("baudrate"),
                capture=_resolve(base_dir, item.get("capture")),
            )
        )
    return tuple(devices)


def _modbus(checked: Checked, raw: dict[str, Any]) -> tuple[TcpListener | None, RtuListener | None]:
    tcp = rtu = None
    if "tcp" in raw:
        fields = dict(raw["tcp"])
        tcp = TcpListener(fields.pop("host", "127.0.0.1"), fields.pop("port", 5020), **fields)
    if "rtu" in raw:
        fields = dict(raw["rtu"])
        rtu = RtuListener(port=fields.pop("device"), **fields)
    if tcp is None and rtu is None and not checked.errors:
        checked.error("modbus", "configure at least one listener: tcp or rtu")
    return tcp, rtu


def load_config(path: str) -> GatewayConfig:
    """Load and validate a gateway file; ConfigError lists every problem with its line."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: cannot read: {err}"]) from err
    checked = check_yaml(text, path, CONFIG_SCHEMA)
    data = checked.data
    tcp, rtu = _modbus(checked, data.get("modbus", {}))
    devices = _devices(checked, data.get("devices", []), os.path.dirname(os.path.abspath(path)))
    policy = dict(data.get("write_policy", {}))
    mqtt = parse_section(checked, data.get("mqtt"))
    if checked.errors:
        raise ConfigError(checked.errors)
    return GatewayConfig(devices=devices, tcp=tcp, rtu=rtu, policy=WritePolicy(**policy), mqtt=mqtt)
