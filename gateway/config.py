"""The multi-device gateway file (``gateway.yaml``): Modbus listeners, write policy, devices.

Every problem is collected and reported at once as ``file:line: path: message``; relative map
and capture paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.modbus_server import RtuListener, TcpListener

__all__ = [
    "DeviceConfig",
    "GatewayConfig",
    "WritePolicy",
    "load_config",
    "parse_host_port",
]

_PARITIES = ("N", "E", "O")
_UNKNOWN_UNIT_CODES = (0x0A, 0x0B)


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


class _Source:
    """The parsed YAML plus the line of every path, for ``file:line: path:`` messages."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines: dict[str, int] = {}
        self.errors: list[str] = []
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            self.errors.append(f"{path}:{line}: not valid YAML: {err}")
            self.data = None
            return
        if node is not None:
            self._index(node, "")

    def _index(self, node: yaml.Node, where: str, line: int | None = None) -> None:
        self.lines[where] = line or node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{where}.{key.value}" if where else str(key.value)
                self._index(value, name, key.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, f"{where}[{index}]")

    def error(self, where: str, message: str) -> None:
        line = self.lines.get(where)
        while line is None and where:
            where_parent = where.rpartition(".")[0] if "." in where else ""
            line, where = self.lines.get(where_parent), where_parent
        self.errors.append(f"{self.path}:{line or 1}: {where or '<top>'}: {message}")


_Check = Callable[[Any], str | None]


def _int_range(low: int, high: int) -> _Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"expected an integer {low}..{high}, got {value!r}"
        return None

    return check


def _number_min(low: float) -> _Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            return f"expected a number >= {low}, got {value!r}"
        return None

    return check


def _one_of(*choices: object) -> _Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"{value!r} is not one of {choices}"

    return check


def _of_type(kind: type, label: str) -> _Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        return None if ok else f"expected {label}, got {value!r}"

    return check


_BOOL = _of_type(bool, "true or false")
_TEXT = _of_type(str, "a string")
_OPT_TEXT: _Check = lambda v: None if v is None else _TEXT(v)  # noqa: E731
_OPT_BAUD: _Check = lambda v: None if v is None else _int_range(1200, 4_000_000)(v)  # noqa: E731

_TCP_FIELDS: dict[str, _Check] = {
    "host": _TEXT,
    "port": _int_range(0, 65535),
    "max_connections": _int_range(1, 10_000),
    "idle_timeout_s": _number_min(0.1),
    "unknown_unit_exception": _one_of(*_UNKNOWN_UNIT_CODES),
}
_RTU_FIELDS: dict[str, _Check] = {
    "device": _TEXT,
    "baudrate": _int_range(1200, 4_000_000),
    "parity": _one_of(*_PARITIES),
    "stopbits": _one_of(1, 2),
    "rs485_rts": _BOOL,
    "echo_suppression": _BOOL,
    "turnaround_delay_s": _number_min(0.0),
}
_POLICY_FIELDS: dict[str, _Check] = {"read_only": _BOOL, "switch_interval_s": _number_min(0.0)}
_DEVICE_FIELDS: dict[str, _Check] = {
    "unit": _int_range(1, 247),
    "link": _TEXT,
    "map": _TEXT,
    "baudrate": _OPT_BAUD,
    "capture": _OPT_TEXT,
}


def _section(
    src: _Source, value: Any, where: str, fields: Mapping[str, _Check], required: tuple[str, ...]
) -> dict[str, Any] | None:
    """Check one mapping against its field checks; the valid fields, or None if not a mapping."""
    if not isinstance(value, dict):
        src.error(where, f"expected a mapping, got {value!r}")
        return None
    good: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{where}.{key}" if where else str(key)
        check = fields.get(str(key))
        if check is None:
            src.error(path, f"unknown key (expected one of {', '.join(fields)})")
        elif (problem := check(item)) is not None:
            src.error(path, problem)
        else:
            good[str(key)] = item
    for key in required:
        if key not in value:
            src.error(where, f"missing required key '{key}'")
    return good


def _resolve(base_dir: str, path: str | None) -> str | None:
    if path is None or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _devices(src: _Source, value: Any, base_dir: str) -> tuple[DeviceConfig, ...]:
    if not isinstance(value, list) or not value:
        src.error("devices", "expected a non-empty list of devices")
        return ()
    devices: list[DeviceConfig] = []
    seen: dict[int, int] = {}
    for index, item in enumerate(value):
        where = f"devices[{index}]"
        good = _section(src, item, where, _DEVICE_FIELDS, ("unit", "link"))
        if good is None or "unit" not in good or "link" not in good:
            continue
        if good["unit"] in seen:
            src.error(
                f"{where}.unit",
                f"unit {good['unit']} already used by devices[{seen[good['unit']]}]",
            )
            continue
        seen[good["unit"]] = index
        devices.append(
            DeviceConfig(
                unit=good["unit"],
                link=good["link"],
                map_path=_resolve(base_dir, good.get("map", "register_map.yaml")) or "",
                baudrate=good.get("baudrate"),
                capture=_resolve(base_dir, good.get("capture")),
            )
        )
    return tuple(devices)


def _modbus(src: _Source, value: Any) -> tuple[TcpListener | None, RtuListener | None]:
    good = _section(src, value, "modbus", {"tcp": lambda _: None, "rtu": lambda _: None}, ())
    if not good:
        return None, None
    tcp = rtu = None
    if good.get("tcp") is not None:
        fields = _section(src, good["tcp"], "modbus.tcp", _TCP_FIELDS, ())
        if fields is not None:
            tcp = TcpListener(fields.pop("host", "127.0.0.1"), fields.pop("port", 5020), **fields)
    if good.get("rtu") is not None:
        fields = _section(src, good["rtu"], "modbus.rtu", _RTU_FIELDS, ("device",))
        if fields is not None and "device" in fields:
            rtu = RtuListener(port=fields.pop("device"), **fields)
    if tcp is None and rtu is None:
        src.error("modbus", "configure at least one listener: tcp or rtu")
    return tcp, rtu


def load_config(path: str) -> GatewayConfig:
    """Load and validate a gateway file; ConfigError lists every problem with its line."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from err
    src = _Source(path, text)
    if src.errors:
        raise ConfigError(src.errors)
    top = _section(
        src,
        src.data,
        "",
        {"modbus": lambda _: None, "write_policy": lambda _: None, "devices": lambda _: None},
        ("modbus", "devices"),
    )
    base_dir = os.path.dirname(os.path.abspath(path))
    tcp, rtu = _modbus(src, top["modbus"]) if top and "modbus" in top else (None, None)
    devices = _devices(src, top["devices"], base_dir) if top and "devices" in top else ()
    policy = WritePolicy()
    if top and top.get("write_policy") is not None:
        fields = _section(src, top["write_policy"], "write_policy", _POLICY_FIELDS, ())
        policy = WritePolicy(**(fields or {}))
    if src.errors:
        raise ConfigError(src.errors)
    return GatewayConfig(devices=devices, tcp=tcp, rtu=rtu, policy=policy)
