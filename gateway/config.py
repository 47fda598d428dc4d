"""The gateway configuration, from ``gateway.yaml`` or from ``run``'s single-device flags.

Every problem is reported at once as ``file:line: path: message``; relative paths are resolved
against the config file's folder; link URLs are checked here, before anything is bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

import gateway.twin  # noqa: F401 - registers sim:// and how to check its URLs
from gateway.errors import ConfigError
from gateway.modbus.server import RtuListener, TcpListener
from gateway.mqtt.settings import MQTT_SCHEMA, MqttSettings, parse_section, settings_from_args
from gateway.regmap.shipped import resolve_map
from gateway.regmap.yaml_check import check_yaml
from gateway.regmap.yaml_read import read_text
from gateway.regmap.yaml_schema import Bool, Checked, Int, Key, ListOf, Num, Str, obj
from gateway.security import settings as security
from gateway.security.settings import SecuritySettings
from gateway.tuya.capture import capture_size_mb
from gateway.tuya.openers import link_problem
from gateway.tuya.payloads import MAC_PATTERN
from gateway.web.options import HTTP_SCHEMA, HttpListener, http_from_args, http_from_yaml

__all__ = [
    "CONFIG_SCHEMA",
    "DeviceConfig",
    "GatewayConfig",
    "WritePolicy",
    "add_run_options",
    "config_from_args",
    "load_config",
    "parse_host_port",
]

DEFAULT_MAP = "register_map.yaml"
DEFAULT_TCP = "127.0.0.1:5020"
DEFAULT_CAPTURE_MAX_MB = 50.0
_UNITS = (1, 247)  # the Modbus unit ids a server may answer as
_UNIT = Int(*_UNITS, "Modbus unit id")
_LINK_HELP = "/dev/ttyUSB0, socket://host:port, rfc2217://host:port, sim://[variant]"
_BAUD = Int(1200, 4_000_000, "bits per second")
_TCP = obj(
    "the Modbus TCP listener",
    host=Str(description="127.0.0.1 by default; 0.0.0.0 exposes the breakers to the network"),
    port=Int(0, 65535),
    max_connections=Int(1, 10_000),
    idle_timeout_s=Num(exclusive_minimum=0),
    unknown_unit_exception=Int(0x0A, 0x0B, "0x0A or 0x0B for a unit id nobody serves"),
    max_connections_per_ip=Int(1, 10_000),
    adu_timeout_s=Num(exclusive_minimum=0, description="an incomplete request is dropped after"),
    **security.TCP_SECURITY_KEYS,
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
    unit=Key(_UNIT, True),
    link=Key(Str(description=_LINK_HELP), True),
    map=Str(description="register map, relative to this file, or auto (from the product key)"),
    baudrate=_BAUD,
    capture=Str(description="JSON-lines capture of the TuyaMCU traffic"),
    module_mac=Str(pattern=MAC_PATTERN, description="MAC answered to 0x2D; default: from link"),
    capture_max_mb=Num(exclusive_minimum=0, description="rotate the capture at this size"),
)


CONFIG_SCHEMA = obj(
    "tuya-modbus-gateway gateway.yaml",
    modbus=Key(obj("Modbus listeners", tcp=_TCP, rtu=_RTU, tls=security.TLS_SCHEMA), True),
    write_policy=obj(
        "gateway-wide write rules",
        read_only=Bool(),
        switch_interval_s=Num(minimum=0),
        allow_broadcast_switch=Bool("let RTU unit 0 and TCP unit 0/255 writes move a motor"),
    ),
    devices=Key(ListOf(_DEVICE, min_items=1), True),
    http=HTTP_SCHEMA,
    state_dir=Str(description="lifetime energy store, relative to this file"),
    audit=security.AUDIT_SCHEMA,
    mqtt=MQTT_SCHEMA,
)


@dataclasses.dataclass(frozen=True, slots=True)
class WritePolicy:
    """Gateway-wide write rules."""

    read_only: bool = False
    switch_interval_s: float = 2.0
    allow_broadcast_switch: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One breaker: its Modbus unit id, its link URL and its map."""

    unit: int
    link: str
    map_path: str = DEFAULT_MAP
    baudrate: int | None = None
    capture: str | None = None
    module_mac: str | None = None
    capture_max_mb: float = DEFAULT_CAPTURE_MAX_MB


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything the service needs to start."""

    devices: tuple[DeviceConfig, ...]
    tcp: TcpListener | None = None
    rtu: RtuListener | None = None
    policy: WritePolicy = dataclasses.field(default_factory=WritePolicy)
    http: HttpListener | None = None  # the HTTP endpoint (gateway.web); off by default
    state_dir: str | None = None  # lifetime energy store; None keeps it in memory
    security: SecuritySettings = dataclasses.field(default_factory=SecuritySettings)
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


def _map_path(base_dir: str, spec: str) -> str:
    return spec if spec == "auto" else resolve_map(spec, base_dir)


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
        if problem := link_problem(item["link"]):
            checked.error(f"devices[{index}].link", problem)
        devices.append(
            DeviceConfig(
                unit=item["unit"],
                link=item["link"],
                map_path=_map_path(base_dir, item.get("map", "register_map.yaml")),
                baudrate=item.get("baudrate"),
                capture=_resolve(base_dir, item.get("capture")),
                module_mac=item.get("module_mac"),
                capture_max_mb=item.get("capture_max_mb", DEFAULT_CAPTURE_MAX_MB),
            )
        )
    return tuple(devices)


def _modbus(checked: Checked, raw: dict[str, Any]) -> tuple[TcpListener | None, RtuListener | None]:
    tcp = rtu = None
    if "tcp" in raw:
        fields = dict(raw["tcp"])
        fields.update({k: tuple(fields[k]) for k in security.TCP_SECURITY_KEYS if k in fields})
        tcp = TcpListener(fields.pop("host", "127.0.0.1"), fields.pop("port", 5020), **fields)
    if "rtu" in raw:
        fields = dict(raw["rtu"])
        rtu = RtuListener(port=fields.pop("device"), **fields)
    if tcp is None and rtu is None and "tls" not in raw and not checked.errors:
        checked.error("modbus", "configure at least one listener: tcp or rtu")
    return tcp, rtu


def load_config(path: str) -> GatewayConfig:
    """Load and validate a gateway file; ConfigError lists every problem with its line."""
    checked = check_yaml(read_text(path, "the gateway file"), path, CONFIG_SCHEMA)
    data = checked.data
    tcp, rtu = _modbus(checked, data.get("modbus", {}))
    devices = _devices(checked, data.get("devices", []), os.path.dirname(os.path.abspath(path)))
    policy = WritePolicy(**data.get("write_policy", {}))
    mqtt = parse_section(checked, data.get("mqtt"))
    if checked.errors:
        raise ConfigError(checked.errors)
    http = http_from_yaml(data.get("http"))
    base_dir = os.path.dirname(os.path.abspath(path))
    state_dir = _resolve(base_dir, data.get("state_dir"))
    secure = security.security_from_yaml(data, base_dir)
    return GatewayConfig(devices, tcp, rtu, policy, http, state_dir, secure, mqtt)


# -- the single-device flags of run ----------------------------------------------------------
def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``run``'s device and listener flags, and ``--config`` for a gateway file instead."""
    parser.add_argument("--link", help=f"MCU link: {_LINK_HELP}")
    parser.add_argument(
        "--map", help=f"register map: a file, a shipped name, or auto (default {DEFAULT_MAP})"
    )
    parser.add_argument("--unit", type=int, help="Modbus unit id (default 1)")
    parser.add_argument("--tcp", help=f"Modbus TCP HOST:PORT, or 'off' (default {DEFAULT_TCP})")
    parser.add_argument("--rtu", metavar="DEVICE", help="Modbus RTU serial port")
    parser.add_argument("--rtu-baud", type=int, help="default 9600")
    parser.add_argument("--rtu-parity", choices=("N", "E", "O"), help="default N")
    parser.add_argument("--rtu-stopbits", type=int, choices=(1, 2), help="default 1")
    parser.add_argument("--config", help="gateway.yaml with listeners and several devices")
    parser.add_argument("--capture", metavar="FILE", help="record TuyaMCU traffic (JSON lines)")
    parser.add_argument(
        "--capture-max-mb", type=capture_size_mb, metavar="MB", help="rotate at MB (default 50)"
    )
    parser.add_argument("--read-only", action="store_true", help="reject every Modbus write")
    security.add_cli_options(parser)


_DEVICE_FLAGS = ("link", "map", "unit", "tcp", "rtu", "rtu_baud", "rtu_parity", "rtu_stopbits")


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The gateway configuration from ``--config`` or from the single-device flags."""
    if args.config:
        return _config_file_with_flags(args)
    if not args.link:
        raise ConfigError(["run: --link URL (or --config FILE) is required"])
    tcp = _tcp_flag(args.tcp or DEFAULT_TCP)
    rtu = None
    if args.rtu:
        rtu = RtuListener(
            args.rtu, args.rtu_baud or 9600, args.rtu_parity or "N", args.rtu_stopbits or 1
        )
    elif any(getattr(args, n) is not None for n in _DEVICE_FLAGS[5:]):
        raise ConfigError(["--rtu-baud, --rtu-parity, --rtu-stopbits: only with --rtu DEVICE"])
    if tcp is None and rtu is None and not args.tls:
        raise ConfigError(["run: --tcp off needs --rtu DEVICE or --tls HOST:PORT"])
    unit = 1 if args.unit is None else args.unit
    errors = [f"--link: {problem}"] if (problem := link_problem(args.link)) else []
    if not _UNITS[0] <= unit <= _UNITS[1]:  # the same range as devices[].unit in gateway.yaml
        errors.append(f"--unit: expected {_UNITS[0]}..{_UNITS[1]}, got {unit}")
    if errors:
        raise ConfigError(errors)
    device = DeviceConfig(
        unit,
        args.link,
        args.map or DEFAULT_MAP,
        capture=args.capture,
        capture_max_mb=args.capture_max_mb or DEFAULT_CAPTURE_MAX_MB,
    )
    config = GatewayConfig((device,), tcp, rtu, WritePolicy(read_only=args.read_only))
    return _with_feature_flags(config, args)


def _config_file_with_flags(args: argparse.Namespace) -> GatewayConfig:
    """``--config FILE`` and the flags that may go with it (--read-only, the features')."""
    names = (*_DEVICE_FLAGS, "capture", "capture_max_mb")
    clash = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is not None]
    if clash:
        raise ConfigError([f"{', '.join(clash)}: not allowed with --config"])
    config = load_config(args.config)
    if args.read_only:
        config = dataclasses.replace(
            config, policy=dataclasses.replace(config.policy, read_only=True)
        )
    return _with_feature_flags(config, args)


def _with_feature_flags(config: GatewayConfig, args: argparse.Namespace) -> GatewayConfig:
    """The features' run flags (--http, --mqtt, TLS, allow, audit) over their file sections."""
    http, mqtt = http_from_args(args, config.http), settings_from_args(args, config.mqtt)
    return security.apply_cli_options(dataclasses.replace(config, http=http, mqtt=mqtt), args)


def _tcp_flag(text: str) -> TcpListener | None:
    if text == "off":
        return None
    try:
        host, port = parse_host_port(text)
    except ValueError as err:
        raise ConfigError([f"--tcp: expected HOST:PORT, got {text!r} ({err})"]) from None
    return TcpListener(host=host, port=port)
