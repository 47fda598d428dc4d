"""The gateway's status values a map can serve (``status.NAME``): one table, name, kind, range.

The map checker accepts exactly these names; :mod:`gateway.unit.status` produces exactly
these values (a test holds the two together). The range is what the scale check of an
integer point uses; a counter has no upper bound.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType

__all__ = ["STATUS_VALUES", "StatusKind", "StatusValue"]


class StatusKind(enum.StrEnum):
    """What a status value is: a 0/1 flag, a number, or text."""

    FLAG = "flag"
    NUMBER = "number"
    TEXT = "text"


@dataclasses.dataclass(frozen=True, slots=True)
class StatusValue:
    """One status value: its name, kind, range (None: unbounded) and meaning."""

    name: str
    kind: StatusKind
    low: Fraction | None
    high: Fraction | None
    description: str


def _table(*rows: tuple[str, StatusKind, int | None, int | None, str]) -> dict[str, StatusValue]:
    return {
        name: StatusValue(
            name,
            kind,
            None if low is None else Fraction(low),
            None if high is None else Fraction(high),
            text,
        )
        for name, kind, low, high, text in rows
    }


_FLAG, _NUMBER, _TEXT = StatusKind.FLAG, StatusKind.NUMBER, StatusKind.TEXT
STATUS_VALUES: Mapping[str, StatusValue] = MappingProxyType(
    _table(
        ("link_online", _FLAG, 0, 1, "1 while the link to the MCU is READY"),
        ("handshake_state", _NUMBER, 0, 4, "0 stopped, 1 connecting, 2 handshake, 3 ready, 4 down"),
        ("data_age_s", _NUMBER, 0, None, "seconds since the newest report of any datapoint"),
        ("mcu_reboots", _NUMBER, 0, None, "MCU restarts seen"),
        ("frames_received", _NUMBER, 0, None, "TuyaMCU frames received"),
        ("frames_sent", _NUMBER, 0, None, "TuyaMCU frames sent"),
        ("checksum_errors", _NUMBER, 0, None, "TuyaMCU frames dropped for a bad checksum"),
        ("heartbeat_rtt_ms", _NUMBER, 0, None, "round trip of the last heartbeat, ms"),
        ("product_key", _TEXT, None, None, "the product key the MCU reported"),
        ("modbus_requests", _NUMBER, 0, None, "Modbus requests this unit answered"),
        ("modbus_exceptions", _NUMBER, 0, None, "of which with an exception"),
        ("register_saturations", _NUMBER, 0, None, "reads of a value clamped to fit"),
        ("writes_confirmed", _NUMBER, 0, None, "datapoint writes the MCU confirmed"),
        ("writes_failed", _NUMBER, 0, None, "datapoint writes refused or not confirmed"),
        ("lifetime_energy", _NUMBER, 0, None, "kWh since the gateway first saw the breaker"),
        ("late_confirmations", _NUMBER, 0, None, "MCU confirmations after a write's window"),
        ("broadcast_writes_refused", _NUMBER, 0, None, "broadcast motor writes refused"),
        ("refused_connections", _NUMBER, 0, None, "connections the listeners refused"),
        ("refused_writes", _NUMBER, 0, None, "this unit's writes refused by role or allowlist"),
    )
)
