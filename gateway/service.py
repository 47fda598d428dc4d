"""The gateway service: per device a link, a cache and a Modbus unit; one Modbus server.

Building the service loads and validates every map (ConfigError lists every problem of every
map) and opens nothing; ``start()`` binds the listeners first and starts the links only once
they are open, so a failed start leaves nothing half-running. Until a link is READY its unit
answers as stale (0x0B), as when the link goes down later.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import gateway.twin  # noqa: F401 - registers the sim:// link scheme
from gateway import logs
from gateway.config import DeviceConfig, GatewayConfig
from gateway.modbus.server import ModbusService
from gateway.modbus.server import UnitBackend as ServedUnit
from gateway.mqtt import MqttBridge
from gateway.mqtt.commands import audit_into
from gateway.mqtt.settings import MqttSettings
from gateway.regmap.catalog import AUTO, load_maps
from gateway.regmap.specs import RegisterMap
from gateway.security.runtime import SecurityRuntime
from gateway.tuya.link import LinkConfig, LinkState, McuLink
from gateway.tuya.payloads import parse_mac
from gateway.unit.auto import AutoBackend
from gateway.unit.backend import UnitBackend
from gateway.unit.cache import DatapointCache
from gateway.unit.energy import LifetimeEnergy, lifetime_energy
from gateway.unit.state_store import StateStore
from gateway.unit.status import link_status, product_key_check

if TYPE_CHECKING:
    from gateway.web.server import WebConsole

__all__ = ["GatewayService", "Unit"]

_LOGGER = logging.getLogger(__name__)
_ALL_INTERFACES = ("0.0.0.0", "::", "")
_ANSWER_SLACK_S = 0.25  # after a window ends: the last pacing gap and sending the answer


@dataclasses.dataclass(slots=True)
class Unit:
    """One breaker as served: its device entry, map, link, cache and Modbus backend."""

    device: DeviceConfig
    register_map: RegisterMap
    link: McuLink
    cache: DatapointCache
    backend: UnitBackend
    removers: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    served: ServedUnit | None = None  # what Modbus talks to, when not ``backend`` (--map auto)
    lifetime: LifetimeEnergy | None = None


def link_config(device: DeviceConfig, register_map: RegisterMap) -> LinkConfig:
    """The link settings: the map's tuya section, then the device's own overrides."""
    tuya = register_map.tuya
    config = LinkConfig(
        url=device.link,
        baudrate=device.baudrate or tuya.baudrate,
        wifi_state=tuya.wifi_state,
        query_interval_s=tuya.query_interval_s,
        confirm_timeout_s=tuya.confirm_timeout_s,
        max_frame_data=tuya.max_frame_data,
        capture_path=device.capture,
        module_mac=parse_mac(device.module_mac) if device.module_mac else None,
        capture_max_bytes=int(device.capture_max_mb * 1024 * 1024),
    )
    if tuya.heartbeat_interval_s is not None:
        config = dataclasses.replace(config, heartbeat_interval_s=tuya.heartbeat_interval_s)
    if tuya.heartbeat_timeout_s is not None:
        config = dataclasses.replace(config, heartbeat_timeout_s=tuya.heartbeat_timeout_s)
    if tuya.heartbeats_missed_down is not None:
        config = dataclasses.replace(config, heartbeats_missed_down=tuya.heartbeats_missed_down)
    return config


class GatewayService:
    """Links, caches and backends for every device, behind one ModbusService."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        maps = load_maps(device.map_path for device in config.devices)
        self._store = StateStore(config.state_dir)
        self._needs_store = AUTO in maps or any(m.energy for m in maps.values())
        regmaps = {device.unit: maps[device.map_path] for device in config.devices}
        self.security = SecurityRuntime(config.security, config.tcp, regmaps)
        self.units: dict[int, Unit] = {
            device.unit: self._build_unit(device, maps[device.map_path])
            for device in config.devices
        }
        self.web = None if config.http is None else _web_console(config, self.units)
        backends = {u: self._served(unit) for u, unit in self.units.items()}
        self.modbus = ModbusService(
            backends,
            config.tcp,
            config.rtu,
            allow_broadcast_switch=config.policy.allow_broadcast_switch,
            tls=self.security.tls_listener(),
            tcp_security=self.security.tcp_security(),
        )
        if self.web is not None:
            self.web.connections = self.modbus.connections
        self.mqtt = None if config.mqtt is None else self._mqtt_bridge(config.mqtt)
        self._started = False

    def _served(self, unit: Unit) -> ServedUnit:
        """What Modbus talks to: the backend (watched by the console), logged with its unit."""
        served: ServedUnit = unit.backend
        if unit.served is not None:  # --map auto: _use_map watches the backend it chooses
            served = unit.served
        elif self.web is not None:
            served = self.web.observe(unit.device.unit, unit.backend)
        return logs.bind_unit(served, _log_info(unit, self.config.policy.read_only))

    def _build_unit(self, device: DeviceConfig, register_map: RegisterMap) -> Unit:
        link = McuLink(link_config(device, register_map))
        cache = DatapointCache(types={d.dpid: d.dp_type for d in register_map.datapoints.values()})
        lifetime = lifetime_energy(register_map, cache, self._store, device.unit)
        backend = self._backend(register_map, cache, link, device.unit, lifetime)
        unit = Unit(device, register_map, link, cache, backend, lifetime=lifetime)
        unit.removers.append(link.add_report_listener(cache.update))
        unit.removers.append(link.add_state_listener(cache.set_link_state))
        check = product_key_check(device.unit, link, lambda: unit.register_map)
        unit.removers.append(link.add_state_listener(check))
        if device.map_path == AUTO:
            auto = AutoBackend(device.unit, lambda chosen: self._use_map(unit, chosen))
            unit.served = auto
            unit.removers.append(link.add_state_listener(auto.state_listener(link)))
        else:
            self._attach(unit)
        return unit

    def _backend(
        self,
        register_map: RegisterMap,
        cache: DatapointCache,
        link: McuLink,
        unit_id: int,
        lifetime: LifetimeEnergy | None,
    ) -> UnitBackend:
        return UnitBackend(
            register_map,
            cache,
            link.writes,
            link_status(link, lifetime, lambda: self._refusals(unit_id)),
            switch_interval_s=self.config.policy.switch_interval_s,
            read_only=self.config.policy.read_only,
            unit_id=unit_id,
        )

    def _use_map(self, unit: Unit, register_map: RegisterMap) -> ServedUnit:
        """Serve ``register_map`` from now on (``--map auto`` chose it)."""
        unit.lifetime = lifetime_energy(register_map, unit.cache, self._store, unit.device.unit)
        unit.register_map = register_map
        unit.cache.set_types({d.dpid: d.dp_type for d in register_map.datapoints.values()})
        unit.backend = self._backend(
            register_map, unit.cache, unit.link, unit.device.unit, unit.lifetime
        )
        self._attach(unit)
        if self.web is None:
            return unit.backend
        return self.web.observe(unit.device.unit, unit.backend)

    def _attach(self, unit: Unit) -> None:
        """The map's keep-alives, and the lifetime energy fed by the link's reports."""
        if unit.lifetime is not None:
            unit.removers.append(unit.link.add_report_listener(unit.lifetime.on_report))
            unit.lifetime.catch_up()
        for keepalive in unit.register_map.tuya.keepalive:
            unit.link.add_keepalive(keepalive.dp, keepalive.interval_s)

    def _refusals(self, unit_id: int) -> dict[str, int]:
        """The status values of the listeners' refused connections and a unit's refused writes."""
        listeners = self.modbus.counters.values()
        writes = self.security.policy.counters.refused_writes_by_unit.get(unit_id, 0)
        return {
            "refused_connections": sum(c.refused_connections for c in listeners),
            "refused_writes": writes,
        }

    def _mqtt_bridge(self, settings: MqttSettings) -> MqttBridge:
        audit = audit_into(lambda: self.security.policy.audit)  # opened by security.start()
        return MqttBridge(settings, self.units, audit=audit)

    @property
    def tcp_port(self) -> int:
        """The bound Modbus TCP port (useful with port 0)."""
        return self.modbus.tcp_port

    async def start(self) -> None:
        """Bind the Modbus listeners, then start every link (nothing runs if a bind fails)."""
        if self._needs_store:
            self._store.open()  # an unusable state dir fails here, before anything listens
        await self.modbus.start()
        if self.web is not None:
            try:
                await self.web.start()
            except BaseException:
                await self.modbus.stop()
                raise
        self.security.start()
        for unit_id, unit in self.units.items():
            with logs.unit_context(unit_id, unit.device.link):  # the link's tasks inherit it
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
        """Answer writes in flight (at most one window), close the listeners, then the links."""
        if not self._started:
            return
        self._started = False
        if self.mqtt is not None:
            await self.mqtt.stop()  # says offline while the links still run
        if self.web is not None:
            await self.web.stop()
        await self.modbus.stop(_longest_window(self.units.values()) + _ANSWER_SLACK_S)
        for unit_id, unit in self.units.items():
            with logs.unit_context(unit_id, unit.device.link):
                await unit.link.stop()
        self._store.close()
        self.security.stop()
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
        if (tls := self.config.security.tls) is not None:
            listeners.append(f"tls {tls.listener.host}:{self.modbus.tls_port} (ca {tls.ca})")
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


def _web_console(config: GatewayConfig, units: dict[int, Unit]) -> WebConsole:
    """The HTTP endpoint; aiohttp and prometheus-client are imported only when it is on."""
    from gateway.web.server import WebConsole

    assert config.http is not None
    return WebConsole(config.http, units)


def _longest_window(units: Iterable[Unit]) -> float:
    """The longest confirmation window of any datapoint: how long shutdown may wait."""
    windows = [0.0]
    for unit in units:
        tuya = unit.register_map.tuya
        windows.append(tuya.confirm_timeout_s)
        windows.extend(dp.confirm_timeout_s or 0.0 for dp in unit.register_map.datapoints.values())
    return max(windows)


def _log_info(unit: Unit, read_only: bool) -> logs.UnitInfo:
    return logs.UnitInfo(
        unit.device.unit,
        unit.device.link,
        lambda: unit.register_map,
        read_only,
        lambda: unit.link.state is LinkState.READY,
    )
