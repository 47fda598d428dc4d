"""The MCU twin's device variants, as data: each DP, its type, first value and what it does.

``family_a`` is the standard Tuya breaker schema (AT-Q-SMR1-20, ZMB9-W-1P); its first values
reproduce the frames in ``shared/vectors/tuyamcu_frames.md``. ``family_b`` is the Tongou
TO-SMR1 / TOWSMR1 schema; its action DP order (102 over-voltage … 108 leakage) and last-event
labels follow the public zigbee2mqtt converter for the Zigbee version of the same breaker.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from types import MappingProxyType

from gateway.errors import ConfigError
from gateway.tuya.protocol import DpType

__all__ = [
    "FAMILY_A",
    "FAMILY_B",
    "REGISTRY",
    "VARIANTS",
    "DpSpec",
    "Protection",
    "ProtectionSpec",
    "Role",
    "Variant",
    "get_variant",
]


class Role(enum.Enum):
    """What a DP does inside the twin."""

    SETTING = "setting"  # stored as written and echoed back
    CONSTANT = "constant"  # never changes (breaker id)
    ENERGY = "energy"  # value, 0.01 kWh
    PHASE_A = "phase_a"  # raw 8 B: V u16 0.1 V, I u24 mA, P u24 W
    LEAKAGE = "leakage"  # value, mA
    TEMPERATURE = "temperature"  # value, 0.1 °C
    SWITCH = "switch"  # bool, moved by the motor
    FAULT = "fault"  # bitmap; size follows the value, as the Tuya MCU SDK sends it
    LAST_EVENT = "last_event"  # enum
    ONLINE = "online"  # enum; "online" turns on fast reporting
    ALARM_SET = "alarm_set"  # raw list of [id, enabled, u16 BE value]
    THRESHOLD = "threshold"  # value DP holding one protection limit
    ACTION = "action"  # enum closed/alarm/trip for one protection
    VOLTAGE = "voltage"  # value, 0.1 V (family C reports V, I, P as separate DPs)
    CURRENT = "current"  # value, mA
    POWER = "power"  # value, W
    PHASE_A_PQ = "phase_a_pq"  # raw 15 B: phase_a, then Q u24 var, S u24 VA, PF u8 0.01


class Protection(enum.Enum):
    """The protections the twin models."""

    OVER_CURRENT = "over_current"
    OVER_VOLTAGE = "over_voltage"
    UNDER_VOLTAGE = "under_voltage"
    LEAKAGE = "leakage"
    OVER_POWER = "over_power"
    OVER_TEMPERATURE = "over_temperature"


@dataclasses.dataclass(frozen=True, slots=True)
class DpSpec:
    """One DP of a variant."""

    dpid: int
    name: str
    dp_type: DpType
    role: Role
    initial: bool | int | str | bytes = 0
    writable: bool = False
    measures: str = ""
    labels: tuple[str, ...] = ()  # enum labels in wire order
    limits: tuple[int, int] | None = None  # accepted write range, inclusive


@dataclasses.dataclass(frozen=True, slots=True)
class ProtectionSpec:
    """Where a protection keeps its limit and what it sets when it fires."""

    kind: Protection
    fault_bit: int
    limit_dp: int
    record_id: int | None = None  # the alarm_set record id when limit_dp is an alarm_set
    scale: float = 1.0  # physical units per wire unit of the limit
    action_dp: int | None = None  # enum closed/alarm/trip; None: the record's enabled flag
    trip_event: int | None = None  # last-event value on a trip
    alarm_event: int | None = None  # last-event value on an alarm


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    """A device family: its DPs, protections and periodic report groups."""

    name: str
    models: str
    product_key: str
    dps: tuple[DpSpec, ...]
    protections: tuple[ProtectionSpec, ...]
    periodic: tuple[tuple[int, ...], ...]  # each tuple is pushed as one 0x07 frame
    events: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def spec(self, dpid: int) -> DpSpec | None:
        for dp in self.dps:
            if dp.dpid == dpid:
                return dp
        return None

    def dpids(self, role: Role) -> tuple[int, ...]:
        return tuple(dp.dpid for dp in self.dps if dp.role is role)


_ACTIONS = ("closed", "alarm", "trip")
_ON_OFF_MEMORY = ("off", "on", "memory")
_ONLINE = ("offline", "online")
# zigbee2mqtt's list for TOWSMR1; 15 and 16 are unnamed there: the twin uses them for leakage.
_LAST_EVENTS = (
    "normal",
    "trip_over_current",
    "trip_over_power",
    "trip_over_temperature",
    "trip_over_voltage",
    "trip_under_voltage",
    "alarm_over_current",
    "alarm_over_power",
    "alarm_over_temperature",
    "alarm_over_voltage",
    "alarm_under_voltage",
    "remote_on",
    "remote_off",
    "manual_on",
    "manual_off",
    "trip_leakage",
    "alarm_leakage",
    "factory_reset",
)


def _event(label: str) -> int:
    return _LAST_EVENTS.index(label)


FAMILY_A = Variant(
    name="family_a",
    models="AT-Q-SMR1-20, ZMB9-W-1P (standard Tuya breaker)",
    product_key="lih4vjeoyao4jeku",
    dps=(
        DpSpec(1, "total_energy", DpType.VALUE, Role.ENERGY, 1, measures="energy, 0.01 kWh"),
        DpSpec(6, "phase_a", DpType.RAW, Role.PHASE_A, b"", measures="V 0.1 V, I mA, P W"),
        DpSpec(9, "fault", DpType.BITMAP, Role.FAULT, 0, measures="fault bits"),
        DpSpec(11, "prepayment", DpType.BOOL, Role.SETTING, False, writable=True),
        DpSpec(15, "leakage_current", DpType.VALUE, Role.LEAKAGE, 0, measures="leakage, mA"),
        DpSpec(16, "switch", DpType.BOOL, Role.SWITCH, True, writable=True),
        DpSpec(
            17, "alarm_set_1", DpType.RAW, Role.ALARM_SET, bytes.fromhex("0400001E"), writable=True
        ),
        DpSpec(
            18,
            "alarm_set_2",
            DpType.RAW,
            Role.ALARM_SET,
            bytes.fromhex("0101003F030100FA040100AA"),
            writable=True,
        ),
        DpSpec(19, "breaker_id", DpType.STRING, Role.CONSTANT, "TWIN-A-000001"),
    ),
    protections=(
        ProtectionSpec(Protection.OVER_CURRENT, 8, limit_dp=18, record_id=1),
        ProtectionSpec(Protection.OVER_VOLTAGE, 10, limit_dp=18, record_id=3),
        ProtectionSpec(Protection.UNDER_VOLTAGE, 11, limit_dp=18, record_id=4),
        ProtectionSpec(Protection.LEAKAGE, 3, limit_dp=17, record_id=4),
    ),
    periodic=((6, 1), (15,)),
)


def _action(dpid: int, name: str, initial: int) -> DpSpec:
    return DpSpec(dpid, name, DpType.ENUM, Role.ACTION, initial, writable=True, labels=_ACTIONS)


def _threshold(dpid: int, name: str, initial: int, limits: tuple[int, int], unit: str) -> DpSpec:
    return DpSpec(
        dpid, name, DpType.VALUE, Role.THRESHOLD, initial, True, f"limit, {unit}", (), limits
    )


FAMILY_B = Variant(
    name="family_b",
    models="Tongou TO-SMR1 / TOWSMR1",
    product_key="tgq7smr1twinb0b1",  # the twin's own, so a capture shows it was no field device
    dps=(
        DpSpec(1, "total_energy", DpType.VALUE, Role.ENERGY, 0, measures="energy, 0.01 kWh"),
        DpSpec(6, "phase_a", DpType.RAW, Role.PHASE_A, b"", measures="V 0.1 V, I mA, P W"),
        DpSpec(15, "leakage_current", DpType.VALUE, Role.LEAKAGE, 0, measures="leakage, mA"),
        DpSpec(16, "switch", DpType.BOOL, Role.SWITCH, True, writable=True),
        _action(102, "over_voltage_action", 2),
        _action(103, "under_voltage_action", 2),
        _action(104, "over_current_action", 2),
        _action(105, "over_power_action", 0),
        _action(106, "reserved_action", 0),
        _action(107, "temperature_action", 1),
        _action(108, "leakage_action", 2),
        DpSpec(109, "online_state", DpType.ENUM, Role.ONLINE, 0, writable=True, labels=_ONLINE),
        DpSpec(110, "last_event", DpType.ENUM, Role.LAST_EVENT, 0, labels=_LAST_EVENTS),
        DpSpec(112, "auto_reclose", DpType.BOOL, Role.SETTING, False, writable=True),
        _threshold(114, "over_current_threshold", 40, (1, 63), "A"),
        _threshold(115, "over_voltage_threshold", 275, (245, 295), "V"),
        _threshold(116, "under_voltage_threshold", 175, (145, 220), "V"),
        _threshold(117, "leakage_threshold", 30, (30, 300), "mA"),
        _threshold(118, "temperature_threshold", 800, (-400, 1000), "0.1 °C"),
        _threshold(119, "over_power_threshold", 10000, (5, 25000), "W"),
        DpSpec(125, "phase_energy", DpType.VALUE, Role.ENERGY, 0, measures="energy, 0.01 kWh"),
        DpSpec(131, "temperature", DpType.VALUE, Role.TEMPERATURE, 0, measures="0.1 °C"),
        DpSpec(142, "power_on_state", DpType.ENUM, Role.SETTING, 2, True, labels=_ON_OFF_MEMORY),
    ),
    protections=(
        ProtectionSpec(
            Protection.OVER_CURRENT,
            8,
            114,
            None,
            1.0,
            104,
            _event("trip_over_current"),
            _event("alarm_over_current"),
        ),
        ProtectionSpec(
            Protection.OVER_VOLTAGE,
            10,
            115,
            None,
            1.0,
            102,
            _event("trip_over_voltage"),
            _event("alarm_over_voltage"),
        ),
        ProtectionSpec(
            Protection.UNDER_VOLTAGE,
            11,
            116,
            None,
            1.0,
            103,
            _event("trip_under_voltage"),
            _event("alarm_under_voltage"),
        ),
        ProtectionSpec(
            Protection.LEAKAGE,
            3,
            117,
            None,
            1.0,
            108,
            _event("trip_leakage"),
            _event("alarm_leakage"),
        ),
        ProtectionSpec(
            Protection.OVER_TEMPERATURE,
            4,
            118,
            None,
            0.1,
            107,
            _event("trip_over_temperature"),
            _event("alarm_over_temperature"),
        ),
        ProtectionSpec(
            Protection.OVER_POWER,
            6,
            119,
            None,
            1.0,
            105,
            _event("trip_over_power"),
            _event("alarm_over_power"),
        ),
    ),
    periodic=((6, 1, 125), (15, 131)),
    events=MappingProxyType(
        {label: _event(label) for label in ("remote_on", "remote_off", "manual_on", "manual_off")}
    ),
)

# variants in their own modules add themselves here (gateway.twin.__init__ imports those)
REGISTRY: dict[str, Variant] = {"family_a": FAMILY_A, "family_b": FAMILY_B}
VARIANTS: Mapping[str, Variant] = MappingProxyType(REGISTRY)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; ConfigError names the known ones otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise ConfigError([f"unknown twin variant {name!r} (known: {known})"]) from None
