"""The frozen specs a loaded register map is made of (see :mod:`gateway.regmap.load`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from gateway.modbus.tables import Table
from gateway.regmap.vocab import DerivedOp, Format, Saturate, SourceKind, StalePolicy, WordOrder
from gateway.tuya.protocol import DpType, DpValue

__all__ = [
    "ConstSource",
    "DatapointSpec",
    "DerivedSource",
    "DeviceSpec",
    "DpSource",
    "EnergySpec",
    "FieldSpec",
    "KeepAlive",
    "PointSpec",
    "RecordSpec",
    "RegisterMap",
    "SaturationSource",
    "Source",
    "StatusSource",
    "TuyaSpec",
]


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """A big-endian integer inside a raw datapoint."""

    name: str
    offset: int
    size: int
    scale: int = 0
    unit: str = ""
    signed: bool = False
    min: Fraction | None = None
    max: Fraction | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RecordSpec:
    """One ``[id, enabled, u16 value]`` record of an alarm_set list."""

    name: str
    rid: int
    scale: int = 0
    unit: str = ""
    min: Fraction | None = None
    max: Fraction | None = None
    step: Fraction | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DatapointSpec:
    """A named Tuya datapoint and its codec."""

    name: str
    dpid: int
    dp_type: DpType
    writable: bool = False
    motor: bool = False
    scale: int = 0
    unit: str = ""
    signed: bool = True
    min: Fraction | None = None
    max: Fraction | None = None
    step: Fraction | None = None
    labels: tuple[str, ...] = ()
    bits: Mapping[str, int] = dataclasses.field(default_factory=_empty)
    size: int | None = None
    fields: Mapping[str, FieldSpec] = dataclasses.field(default_factory=_empty)
    records: Mapping[str, RecordSpec] = dataclasses.field(default_factory=_empty)
    write_only_changed_records: bool = False
    confirm_timeout_s: float | None = None
    max_age_s: float | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class DpSource:
    """A datapoint, or a member of it (a field, bit, record or record's enabled flag)."""

    datapoint: str
    kind: SourceKind = SourceKind.VALUE
    member: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StatusSource:
    """A live gateway status value."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class SaturationSource:
    """1 while the point named ``point`` reads a value it had to clamp, else 0."""

    point: str
    target: PointSpec | None = None  # set once every point is loaded


@dataclasses.dataclass(frozen=True, slots=True)
class ConstSource:
    value: Fraction


@dataclasses.dataclass(frozen=True, slots=True)
class DerivedSource:
    """``op`` over ``args``, bounded to [min, max]; div has a value for x/0."""

    op: DerivedOp
    args: tuple[Source, ...]
    min: Fraction | None = None
    max: Fraction | None = None
    on_zero: Fraction | None = None


Source = DpSource | StatusSource | ConstSource | DerivedSource | SaturationSource


@dataclasses.dataclass(frozen=True, slots=True)
class PointSpec:
    """One Modbus point: where it lives, where its value comes from, how it is encoded."""

    table: Table
    name: str
    address: int
    count: int
    source: Source
    format: Format
    word_order: WordOrder = WordOrder.ABCD
    scale: int = 1
    stale: StalePolicy = StalePolicy.EXCEPTION
    saturate: Saturate = Saturate.CLAMP
    writable: bool = False
    registers: int | None = None
    description: str = ""
    unit: str = ""
    line: int = 0

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count


@dataclasses.dataclass(frozen=True, slots=True)
class KeepAlive:
    """A datapoint write repeated every ``interval_s`` while the link is READY."""

    datapoint: str
    dp: DpValue
    interval_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class TuyaSpec:
    """Link settings that belong to the device variant."""

    baudrate: int = 9600
    wifi_state: int = 4
    query_interval_s: float | None = None
    confirm_timeout_s: float = 3.0
    max_frame_data: int = 24  # the MCU SDK's WIFI_DATA_PROCESS_LMT
    keepalive: tuple[KeepAlive, ...] = ()
    heartbeat_interval_s: float | None = None
    heartbeat_timeout_s: float | None = None
    heartbeats_missed_down: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSpec:
    """The device variant; ``identification`` maps FC43 object ids to text."""

    name: str
    vendor: str = ""
    model: str = ""
    product_key: str | None = None
    description: str = ""
    identification: Mapping[int, str] = dataclasses.field(default_factory=_empty)
    product_keys: tuple[str, ...] = ()  # every key the map is known for (product_key first)


@dataclasses.dataclass(frozen=True, slots=True)
class EnergySpec:
    """The MCU's energy counter behind ``status.lifetime_energy``, and the breaker's rating."""

    datapoint: str
    max_power_w: Fraction


@dataclasses.dataclass(frozen=True, slots=True)
class RegisterMap:
    """A loaded, validated map."""

    path: str
    device: DeviceSpec
    tuya: TuyaSpec
    datapoints: Mapping[str, DatapointSpec]
    tables: Mapping[Table, tuple[PointSpec, ...]]
    energy: EnergySpec | None = None

    def points(self, table: Table) -> tuple[PointSpec, ...]:
        """The table's points sorted by address."""
        return self.tables.get(table, ())

    def point(self, name: str) -> PointSpec:
        for points in self.tables.values():
            for point in points:
                if point.name == name:
                    return point
        raise KeyError(name)

    def datapoint_by_id(self, dpid: int) -> DatapointSpec | None:
        return next((dp for dp in self.datapoints.values() if dp.dpid == dpid), None)
