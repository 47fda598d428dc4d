"""The gateway service: per device a link, a cache and a Modbus unit; one Modbus server.

Building the service loads and validates every map (ConfigError lists every problem of every
map) and opens nothing; ``start()`` binds the listeners first and starts the links only once
they are open, so a failed start leaves nothing half-running. Until a link is READY its unit
answers as stale (0x0B), as when the link goes down later.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from gateway.config import DeviceConfig, GatewayConfig
from gateway.errors import ConfigError
from gateway.modbus.server import ModbusService
from gateway.modbus.server import UnitBackend as ServedUnit
from gateway.mqtt import MqttBridge
from gateway.regmap.load import load_map
from gateway.regmap.specs import RegisterMap
from gateway.tuya.link import LinkConfig, LinkState, McuLink
from gateway.unit.backend import StatusValues, UnitBackend
from gateway.unit.cache import DatapointCache

__all__ = ["GatewayService", "Unit"]

_LOGGER = logging.getLogger(__name__)
_ALL_INTERFACES = ("0.0.0.0", "::", "")


@dataclasses.dataclass(slots=True)
class Unit:
    """One breaker as served: its device entry, map, link, cache and Modbus backend."""

    device: DeviceConfig
    register_map: RegisterMap
    link: McuLink
    cache: DatapointCache
    backend: UnitBackend
    removers: list[Callable[[], None]] = dataclasses.field(default_factory=list)


def link_config(device: DeviceConfig, register_map: RegisterMap) -> LinkConfig:
    """The link settings: the map's tuya section, then the device's own overrides."""
    tuya = register_map.tuya
    config = LinkConfig(
        url=device.link,
        baudrate=device.baudrate or tuya.baudrate,
        wifi_state=tuya.wifi_state,
        query_interval_s=tuya.query_interval_s,
        confirm_timeout_s=tuya.confirm_timeout_s,
        capture_path=device.capture,
    )
    if tuya.heartbeat_interval_s is not None:
        config = dataclasses.replace(config, heartbeat_interval_s=tuya.heartbeat_interval_s)
    if tuya.heartbeat_timeout_s is not None:
        config = dataclasses.replace(config, heartbeat_timeout_s=tuya.heartbeat_timeout_s)
    if tuya.heartbeats_missed_down is not None:
        config = dataclasses.replace(config, heartbeats_missed_down=tuya.heartbeats_missed_down)
    return config


def _load_maps(devices: tuple[DeviceConfig, ...]) -> dict[str, RegisterMap]:
    """Every distinct map, loaded once; ConfigError with the problems of all of them."""
    maps: dict[str, RegisterMap] = {}
    errors: list[str] = []
    for device in devices:
        if device.map_path in maps:
            continue
        try:
            maps[device.map_path] = load_map(device.map_path)
        except ConfigError as err:
            errors.extend(err.errors)
    if errors:
        raise ConfigError(errors)
    return maps


class GatewayService:
    """Links, caches and backends for every device, behind one ModbusService."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        maps = _load_maps(config.devices)
        self.units: dict[int, Unit] = {
            device.unit: self._build_unit(device, maps[device.map_path])
            for device in config.devices
        }
        backends: dict[int, ServedUnit] = {u: unit.backend for u, unit in self.units.items()}
        self.modbus = ModbusService(backends, config.tcp, config.rtu)
        self.mqtt = MqttBridge(config.mqtt, self.units) if config.mqtt is not None else None
        self._started = False

    def _build_unit(self, device: DeviceConfig, register_map: RegisterMap) -> Unit:
        link = McuLink(link_config(device, register_map))
        cache = DatapointCache()
        backend = UnitBackend(
            register_map,
            cache,
            link.write_dp,
            _status_of(link),
            switch_interval_s=self.config.policy.switch_interval_s,
            read_only=self.config.policy.read_only,
            unit_id=device.unit,
        )
        unit = Unit(device, register_map, link, cache, backend)
        unit.removers.append(link.add_report_listener(cache.update))
        unit.removers.append(link.add_state_listener(cache.set_link_state))
        unit.removers.append(link.add_state_listener(_product_key_check(unit)))
        for keepalive in register_map.tuya.keepalive:
            link.add_keepalive(keepalive.dp, keepalive.interval_s)
        return unit

    @property
    def tcp_port(self) -> int:
        """The bound Modbus TCP port (useful with port 0)."""
        return self.modbus.tcp_port

    async def start(self) -> None:
        """Bind the Modbus listeners, then start every link (nothing runs if a bind fails)."""
        await self.modbus.start()
        for unit in self.units.values():
            await unit.link.start()
        if self.mqtt is not None:
            await self.mqtt.start()
        self._started = True
        _LOGGER.info("%s", self.summary())
        tcp = self.config.tcp
        if tcp is not None and tcp.host in _ALL_INTERFACES and not self.config.policy.read_only:
            _LOGGER.warning(
                "Modbus TCP listens on all interfaces (%s): anyone who reaches port %d can"
                " switch the breakers; use a firewall, or --read-only",
                tcp.host or "*",
                self.tcp_port,
            )

    async def stop(self) -> None:
        """Close the listeners, then the links; safe to call twice."""
        if not self._started:
            return
        self._started = False
        if self.mqtt is not None:
            await self.mqtt.stop()  # says offline while the links still run
        await self.modbus.stop()
        for unit in self.units.values():
            await unit.link.stop()
        _LOGGER.info("gateway stopped")

    def summary(self) -> str:
        """The start-up summary: listeners, write policy, and one line per device."""
        tcp, rtu, policy = self.config.tcp, self.config.rtu, self.config.policy
        listeners = []
        if tcp is not None:
            listeners.append(
                f"tcp {tcp.host}:{self.tcp_port} (max {tcp.max_connections} connections,"
                f" idle {tcp.idle_timeout_s:g} s, unknown unit 0x{tcp.unknown_unit_exception:02X})"
            )
        if rtu is not None:
            listeners.append(f"rtu {rtu.port} {rtu.baudrate} 8{rtu.parity}{rtu.stopbits}")
        mode = (
            "read-only" if policy.read_only else f"switch interval {policy.switch_interval_s:g} s"
        )
        lines = [f"gateway started: {'; '.join(listeners)}; writes: {mode}"]
        for unit_id, unit in sorted(self.units.items()):
            spec = unit.register_map.device
            expected = spec.product_key or "any"
            capture = f", capture {unit.device.capture}" if unit.device.capture else ""
            lines.append(
                f"  unit {unit_id}: link {unit.device.link} @ {unit.link.config.baudrate},"
                f" map {unit.register_map.path} ({spec.name}), product key {expected}{capture}"
            )
        return "\n".join(lines)


def _status_of(link: McuLink) -> Callable[[], StatusValues]:
    """The live link values a map's status points show."""

    def status() -> StatusValues:
        stats = link.stats
        info = link.product_info
        return {
            "mcu_reboots": stats.mcu_reboots,
            "frames_received": stats.frames_received,
            "frames_sent": stats.frames_sent,
            "checksum_errors": stats.checksum_errors,
            "heartbeat_rtt_ms": stats.heartbeat_rtt_ms,
            "product_key": info.product_key if info is not None else None,
        }

    return status


def _product_key_check(unit: Unit) -> Callable[[LinkState], None]:
    """A state listener that reports the MCU's product key and shouts on a mismatch."""

    def on_state(state: LinkState) -> None:
        if state is not LinkState.READY:
            return
        info = unit.link.product_info
        found = info.product_key if info is not None else None
        expected = unit.register_map.device.product_key
        if expected is not None and found != expected:
            _LOGGER.warning(
                "unit %d: PRODUCT KEY MISMATCH: the MCU on %s reports %r but map %s expects %r;"
                " the map may not fit this breaker, check every value before trusting it",
                unit.device.unit,
                unit.device.link,
                found,
                unit.register_map.path,
                expected,
            )
        else:
            version = info.version if info is not None else "?"
            _LOGGER.info(
                "unit %d: link READY, product key %r, MCU version %s",
                unit.device.unit,
                found,
                version,
            )

    return on_state
