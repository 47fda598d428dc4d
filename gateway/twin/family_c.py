"""Family C: Tongou's older layout (AT-Q-SMR1-40-JWT, AT-QCB2-JWT), as twin data; and
``family_a_pq``, family A with the 15-byte phase DP some newer MCUs send.

Voltage, current and power are separate value DPs (106, 107, 117) instead of a phase_a raw
DP. The limits sit in 102-105, 110 and 118; the protection actions in 111-116 follow the
order of those limits (current, over-voltage, under-voltage, leakage, temperature, power).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from gateway.tuya.protocol import DpType, DpValue
from gateway.twin.families import (
    _LAST_EVENTS,
    FAMILY_A,
    REGISTRY,
    DpSpec,
    Protection,
    ProtectionSpec,
    Role,
    Variant,
)

__all__ = ["FAMILY_A_PQ", "FAMILY_C", "MEASURED", "measured_dp"]

_ACTIONS = ("closed", "alarm", "trip")
MEASURED = (Role.VOLTAGE, Role.CURRENT, Role.POWER, Role.PHASE_A_PQ)


def measured_dp(dpid: int, role: Role, volts: float, amps: float) -> DpValue:
    """The voltage (0.1 V), current (mA), power (W, V·I truncated) or 15-byte phase DP."""
    deci_v, milli_a = round(volts * 10), round(amps * 1000)
    if role is Role.PHASE_A_PQ:
        return DpValue.of_raw(dpid, phase_15(deci_v, milli_a))
    wire = {
        Role.VOLTAGE: deci_v,
        Role.CURRENT: milli_a,
        Role.POWER: int(deci_v * milli_a / 10_000),
    }
    return DpValue.of_value(dpid, wire[role])


def phase_15(deci_v: int, milli_a: int) -> bytes:
    """V u16, I u24, P u24, Q u24, S u24, PF u8 (0.01); the twin's load is resistive."""
    deci_v, milli_a = min(deci_v, 0xFFFF), min(milli_a, 0xFFFFFF)
    apparent = min(int(deci_v * milli_a / 10_000), 0xFFFFFF)
    sizes = ((deci_v, 2), (milli_a, 3), (apparent, 3), (0, 3), (apparent, 3), (100, 1))
    return b"".join(value.to_bytes(size, "big") for value, size in sizes)


def _value(dpid: int, name: str, role: Role, initial: int, measures: str) -> DpSpec:
    return DpSpec(dpid, name, DpType.VALUE, role, initial, measures=measures)


def _setting(dpid: int, name: str, dp_type: DpType, initial: bool | int) -> DpSpec:
    return DpSpec(dpid, name, dp_type, Role.SETTING, initial, writable=True)


def _limit(dpid: int, name: str, initial: int, limits: tuple[int, int], unit: str) -> DpSpec:
    return DpSpec(
        dpid, name, DpType.VALUE, Role.THRESHOLD, initial, True, f"limit, {unit}", (), limits
    )


def _action(dpid: int, name: str, initial: int) -> DpSpec:
    return DpSpec(dpid, name, DpType.ENUM, Role.ACTION, initial, writable=True, labels=_ACTIONS)


def _event(label: str) -> int:
    return _LAST_EVENTS.index(label)


def _protection(kind: Protection, bit: int, limit_dp: int, action_dp: int) -> ProtectionSpec:
    """``bit`` is the twin's own fault bit (family A's numbering): family C has no fault DP."""
    trip, alarm = _event(f"trip_{kind.value}"), _event(f"alarm_{kind.value}")
    return ProtectionSpec(kind, bit, limit_dp, None, 1.0, action_dp, trip, alarm)


FAMILY_C = Variant(
    name="family_c",
    models="Tongou AT-Q-SMR1-40-JWT, AT-QCB2-JWT (older Tongou layout)",
    product_key="tgqcb2jwtwinc0c1",  # the twin's own, so a capture shows it was no field device
    dps=(
        _value(1, "total_energy", Role.ENERGY, 0, "energy, 0.01 kWh"),
        _value(15, "leakage_current", Role.LEAKAGE, 0, "leakage, mA"),
        DpSpec(16, "switch", DpType.BOOL, Role.SWITCH, True, writable=True),
        _setting(101, "leakage_test", DpType.BOOL, False),
        _limit(102, "current_limit", 63, (1, 100), "A"),
        _limit(103, "over_voltage_limit", 275, (245, 295), "V"),
        _limit(104, "under_voltage_limit", 175, (145, 220), "V"),
        _limit(105, "leakage_limit", 30, (10, 100), "mA"),
        _value(106, "voltage", Role.VOLTAGE, 0, "voltage, 0.1 V"),
        _value(107, "current", Role.CURRENT, 0, "current, mA"),
        DpSpec(108, "rated_voltage", DpType.VALUE, Role.CONSTANT, 230, measures="rated, V"),
        _value(109, "temperature", Role.TEMPERATURE, 0, "0.1 °C"),
        _limit(110, "temperature_limit", 80, (-25, 100), "°C"),
        _action(111, "current_action", 2),
        _action(112, "over_voltage_action", 2),
        _action(113, "under_voltage_action", 2),
        _action(114, "leakage_action", 2),
        _action(115, "temperature_action", 1),
        _action(116, "power_action", 0),
        _value(117, "power", Role.POWER, 0, "power, W"),
        _limit(118, "power_limit", 10000, (5, 25000), "W"),
        DpSpec(119, "event", DpType.ENUM, Role.LAST_EVENT, 0, labels=_LAST_EVENTS),
        _setting(120, "self_check", DpType.BOOL, False),
        _setting(121, "self_check_day", DpType.VALUE, 1),
        _setting(122, "self_check_hour", DpType.VALUE, 10),
        _setting(123, "auto_reclose", DpType.BOOL, False),
        DpSpec(124, "signal", DpType.VALUE, Role.CONSTANT, 80, measures="WiFi signal, %"),
        DpSpec(125, "firmware_version", DpType.STRING, Role.CONSTANT, "1.0.3"),
        _setting(126, "factory_reset", DpType.BOOL, False),
    ),
    protections=(
        _protection(Protection.OVER_CURRENT, 8, 102, 111),
        _protection(Protection.OVER_VOLTAGE, 10, 103, 112),
        _protection(Protection.UNDER_VOLTAGE, 11, 104, 113),
        _protection(Protection.LEAKAGE, 3, 105, 114),
        _protection(Protection.OVER_TEMPERATURE, 4, 110, 115),
        _protection(Protection.OVER_POWER, 6, 118, 116),
    ),
    periodic=((106, 107, 117, 1), (15, 109)),
    events=MappingProxyType(
        {label: _event(label) for label in ("remote_on", "remote_off", "manual_on", "manual_off")}
    ),
)

_PHASE_PQ = DpSpec(6, "phase_a", DpType.RAW, Role.PHASE_A_PQ, b"", measures="V I P Q S PF")
FAMILY_A_PQ = dataclasses.replace(
    FAMILY_A,
    name="family_a_pq",
    models="family A with the 15-byte phase DP (reactive, apparent power, power factor)",
    dps=tuple(_PHASE_PQ if dp.dpid == 6 else dp for dp in FAMILY_A.dps),
)

REGISTRY.update({FAMILY_C.name: FAMILY_C, FAMILY_A_PQ.name: FAMILY_A_PQ})
