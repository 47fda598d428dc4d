"""The MCU twin's breaker model: mains, load, energy, protections and DP values (no I/O).

Protections compare the settings (not the noisy readings) with their limits, so a test that
sets a load past a limit sees exactly one trip. Methods that change state return the DP ids
whose reported value changed; the twin reports those.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable

from gateway.tuya.layouts import PHASE_A, decode_records, encode_fields, encode_records
from gateway.tuya.protocol import DpType, DpValue
from gateway.twin.families import DpSpec, Protection, ProtectionSpec, Role, Variant
from gateway.twin.family_c import MEASURED, measured_dp
from gateway.twin.options import TwinOptions

__all__ = ["Threshold", "TwinModel", "fault_bitmap"]

_LOGGER = logging.getLogger(__name__)

_VOLTAGE_NOISE_V = 0.3  # one sigma, at noise=1.0
_CURRENT_NOISE = 0.005  # relative, one sigma
_ACTION_ALARM, _ACTION_TRIP = 1, 2


@dataclasses.dataclass(frozen=True, slots=True)
class Threshold:
    """A protection limit in physical units, whether it is watched and whether it trips."""

    limit: float
    enabled: bool
    trips: bool


def _initial_payload(spec: DpSpec) -> DpValue:
    value = spec.initial
    if spec.dp_type is DpType.BOOL:
        return DpValue.of_bool(spec.dpid, bool(value))
    if spec.dp_type is DpType.VALUE and isinstance(value, int):
        return DpValue.of_value(spec.dpid, value)
    if spec.dp_type is DpType.ENUM and isinstance(value, int):
        return DpValue.of_enum(spec.dpid, value)
    if spec.dp_type is DpType.STRING and isinstance(value, str):
        return DpValue.of_string(spec.dpid, value)
    if isinstance(value, bytes):
        return DpValue.of_raw(spec.dpid, value)
    return DpValue.of_bitmap(spec.dpid, int(value), 1)


def fault_bitmap(dpid: int, bits: int) -> DpValue:
    """The fault DP, 1, 2 or 4 bytes as the value needs (``mcu_dp_fault_update`` does this)."""
    size = 1 if bits <= 0xFF else 2 if bits <= 0xFFFF else 4
    return DpValue.of_bitmap(dpid, bits, size)


class TwinModel:
    """The breaker's state and physics; ``clock`` is a monotonic time source in seconds."""

    def __init__(
        self,
        variant: Variant,
        options: TwinOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        opts = TwinOptions() if options is None else options
        self.variant = variant
        self.voltage_v = opts.voltage_v
        self.current_a = opts.current_a
        self.leakage_ma = 0.0
        self.temperature_c = 35.0
        self.noise = opts.noise
        self.fault_bits = 0
        self.last_event = 0
        self._rng = random.Random(opts.seed)
        self._clock = clock
        self._stored = {spec.dpid: _initial_payload(spec) for spec in variant.dps}
        energy = variant.dpids(Role.ENERGY)
        self._energy_kwh = _int(self._stored[energy[0]]) / 100 if energy else 0.0
        self.switch_on = bool(self._stored[16].value) if 16 in self._stored else True
        self._alarming: set[Protection] = set()
        self._tripped_by: Protection | None = None
        self._last_t = clock()

    # -- measurements ------------------------------------------------------------------
    @property
    def energy_kwh(self) -> float:
        self.integrate()
        return self._energy_kwh

    def set_energy(self, kwh: float) -> None:
        self.integrate()
        self._energy_kwh = kwh

    def integrate(self) -> None:
        now = self._clock()
        if self.switch_on:
            self._energy_kwh += self.voltage_v * self.current_a * (now - self._last_t) / 3.6e6
        self._last_t = now

    def _measured(self) -> tuple[float, float]:
        volts = self.voltage_v + self._rng.gauss(0.0, _VOLTAGE_NOISE_V) * self.noise
        amps = self.current_a * (1 + self._rng.gauss(0.0, _CURRENT_NOISE) * self.noise)
        return max(volts, 0.0), max(amps, 0.0) if self.switch_on else 0.0

    def _phase_a(self, dpid: int) -> DpValue:
        volts, amps = self._measured()
        deci_v = min(round(volts * 10), 0xFFFF)
        milli_a = min(round(amps * 1000), 0xFFFFFF)
        watts = int(deci_v * milli_a / 10_000)  # P = V·I, PF 1, truncated
        wire = {"voltage": deci_v, "current": milli_a, "power": watts}
        return DpValue.of_raw(dpid, encode_fields(PHASE_A, wire))

    def dp(self, dpid: int) -> DpValue | None:
        """The value the MCU would report for ``dpid`` now."""
        spec = self.variant.spec(dpid)
        if spec is None:
            return None
        role = spec.role
        if role is Role.ENERGY:
            return DpValue.of_value(dpid, int(self.energy_kwh * 100 + 1e-6))
        if role is Role.PHASE_A:
            return self._phase_a(dpid)
        if role in MEASURED:
            return measured_dp(dpid, role, *self._measured())
        if role is Role.LEAKAGE:
            return DpValue.of_value(dpid, round(self.leakage_ma) if self.switch_on else 0)
        if role is Role.TEMPERATURE:
            return DpValue.of_value(dpid, round(self.temperature_c * 10))
        if role is Role.SWITCH:
            return DpValue.of_bool(dpid, self.switch_on)
        if role is Role.FAULT:
            return fault_bitmap(dpid, self.fault_bits)
        if role is Role.LAST_EVENT:
            return DpValue.of_enum(dpid, self.last_event)
        return self._stored[dpid]

    # -- writes ------------------------------------------------------------------------
    def write(self, dp: DpValue) -> DpValue | None:
        """Store a written setting; the value to report, or None when the MCU ignores it."""
        spec = self.variant.spec(dp.dpid)
        if spec is None or not spec.writable or spec.dp_type is not dp.dp_type:
            return None
        if spec.role is Role.SWITCH:
            return None  # the motor moves it, see McuTwin
        if spec.role is Role.ALARM_SET:
            return self._write_alarm_set(dp)
        value = dp.value
        if spec.labels and isinstance(value, int) and value >= len(spec.labels):
            return None
        if spec.limits and isinstance(value, int) and not spec.limits[0] <= value <= spec.limits[1]:
            return None
        self._stored[dp.dpid] = dp
        return dp

    def _write_alarm_set(self, dp: DpValue) -> DpValue | None:
        written, trailing = decode_records(dp.payload)
        if trailing:
            return None  # not a whole number of records
        current, _ = decode_records(self._stored[dp.dpid].payload)
        by_id = {r.rid: r for r in written}
        merged = [by_id.pop(r.rid, r) for r in current]
        merged += [r for r in written if r.rid in by_id]
        stored = DpValue.of_raw(dp.dpid, encode_records(merged))
        self._stored[dp.dpid] = stored
        return stored

    # -- protections -------------------------------------------------------------------
    def threshold(self, spec: ProtectionSpec) -> Threshold | None:
        if spec.record_id is not None:
            records, _ = decode_records(self._stored[spec.limit_dp].payload)
            for record in records:
                if record.rid == spec.record_id:
                    return Threshold(record.value * spec.scale, record.enabled, record.enabled)
            return None
        limit = _int(self._stored[spec.limit_dp])
        action = _int(self._stored[spec.action_dp]) if spec.action_dp is not None else _ACTION_TRIP
        return Threshold(limit * spec.scale, action >= _ACTION_ALARM, action == _ACTION_TRIP)

    def thresholds(self) -> dict[Protection, Threshold]:
        found = {spec.kind: self.threshold(spec) for spec in self.variant.protections}
        return {kind: limit for kind, limit in found.items() if limit is not None}

    def _exceeded(self, kind: Protection, limit: float) -> bool:
        readings = {
            Protection.OVER_CURRENT: self.current_a > limit,
            Protection.OVER_VOLTAGE: self.voltage_v > limit,
            Protection.UNDER_VOLTAGE: self.voltage_v < limit,
            Protection.LEAKAGE: self.leakage_ma > limit,
            Protection.OVER_POWER: self.voltage_v * self.current_a > limit,
            Protection.OVER_TEMPERATURE: self.temperature_c > limit,
        }
        return readings[kind]

    def check_protections(self) -> list[int]:
        """Trip or alarm on every limit passed while closed; the DP ids to report."""
        changed: list[int] = []
        for spec in self.variant.protections:
            limit = self.threshold(spec)
            active = limit is not None and limit.enabled and self._exceeded(spec.kind, limit.limit)
            if not active or limit is None:
                self._alarming.discard(spec.kind)
                continue
            if limit.trips and self.switch_on:
                _LOGGER.info("twin: %s past %s: trip", spec.kind.value, limit.limit)
                changed += self.trip(spec.fault_bit, spec.trip_event)
                self._tripped_by = spec.kind
            elif not limit.trips and spec.kind not in self._alarming:
                self._alarming.add(spec.kind)
                changed += self._set_fault(spec.fault_bit, spec.alarm_event)
        return _unique(changed)

    def trip(self, bit: int, event: int | None = None) -> list[int]:
        """Open at once (trips do not wait for the motor) and raise ``bit``."""
        changed = self._set_switch(False)
        changed += self._set_fault(bit, event)
        self._tripped_by = None
        return _unique(changed)

    def _set_fault(self, bit: int, event: int | None) -> list[int]:
        changed: list[int] = []
        if not self.fault_bits & (1 << bit):
            self.fault_bits |= 1 << bit
            changed += self.variant.dpids(Role.FAULT)
        if event is not None:
            self.last_event = event
            changed += self.variant.dpids(Role.LAST_EVENT)
        return changed

    def move_switch(self, on: bool, cause: str) -> list[int]:
        """The switch moved (``cause`` ``remote`` or ``manual``); closing clears the faults."""
        changed = self._set_switch(on)
        if on:
            self._tripped_by = None
        if on and self.fault_bits:
            self.fault_bits = 0
            self._alarming.clear()
            changed += self.variant.dpids(Role.FAULT)
        event = self.variant.events.get(f"{cause}_{'on' if on else 'off'}")
        if event is not None:
            self.last_event = event
            changed += self.variant.dpids(Role.LAST_EVENT)
        return _unique(changed)

    def _set_switch(self, on: bool) -> list[int]:
        self.integrate()
        self.switch_on = on
        return list(self.variant.dpids(Role.SWITCH))

    def auto_reclose_due(self) -> bool:
        """A voltage trip has cleared and the variant's auto-reclose setting is on."""
        if self._tripped_by not in (Protection.OVER_VOLTAGE, Protection.UNDER_VOLTAGE):
            return False
        setting = next((d for d in self.variant.dps if d.name == "auto_reclose"), None)
        if setting is None or self._stored[setting.dpid].value is not True:
            return False
        return not any(
            (limit := self.threshold(spec)) is not None
            and spec.kind is self._tripped_by
            and self._exceeded(spec.kind, limit.limit)
            for spec in self.variant.protections
        )

    def reboot(self) -> bool:
        """Faults are in RAM; the power-on-state setting, if any, says the switch position."""
        self.fault_bits = 0
        self._alarming.clear()
        self._tripped_by = None
        setting = next((d for d in self.variant.dps if d.name == "power_on_state"), None)
        if setting is not None:
            state = self._stored[setting.dpid].value
            if state in (0, 1):
                self._set_switch(state == 1)
        return self.switch_on


def _int(dp: DpValue) -> int:
    value = dp.value
    return int(value) if isinstance(value, int) else 0


def _unique(dpids: list[int]) -> list[int]:
    return list(dict.fromkeys(dpids))
