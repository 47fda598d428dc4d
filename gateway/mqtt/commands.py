"""MQTT commands, through the very write path Modbus writes take (``UnitBackend.write``).

Before a command reaches that path it is refused, never kept, when it was retained (a broker
replaying it after a restart must not switch a breaker), when its MQTT v5 message-expiry
interval ran out while it waited here, when the unit's link is down, or when its payload is
not a value of its point. Range and step checks, the switch interval, confirmation by the
MCU's report and "never queued" are the backend's, exactly as for Modbus.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from gateway.modbus.tables import ExceptionCode
from gateway.mqtt.payloads import CommandPayloadError, command_words, format_value
from gateway.regmap.specs import PointSpec, RegisterMap
from gateway.security.audit import AuditEvent, AuditLog
from gateway.unit.backend import UnitBackend
from gateway.unit.cache import DatapointCache
from gateway.unit.values import read_source

__all__ = [
    "OK",
    "AuditHook",
    "Command",
    "CommandOutcome",
    "audit_into",
    "execute",
    "refusal",
    "refused_early",
]

_LOGGER = logging.getLogger(__name__)
OK = "ok"
_REASONS = {
    ExceptionCode.ILLEGAL_FUNCTION: "writes are off (read-only gateway)",
    ExceptionCode.ILLEGAL_DATA_ADDRESS: "not writable",
    ExceptionCode.ILLEGAL_DATA_VALUE: "out of range or off step",
    ExceptionCode.SERVER_DEVICE_FAILURE: "the MCU confirmed a different value",
    ExceptionCode.SERVER_DEVICE_BUSY: "busy: switch interval or another write in flight",
    ExceptionCode.GATEWAY_TARGET_NO_RESPONSE: "no confirmation from the MCU",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """One message on a ``…/set`` topic, as received."""

    unit: int
    point: str
    payload: bytes
    retained: bool = False
    expiry_s: float | None = None  # MQTT v5 message-expiry interval left when it arrived
    waited_s: float = 0.0  # time between its arrival and now


@dataclasses.dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What happened to a command: what the result topic and the audit log get."""

    client: str
    unit: int
    point: str
    payload: str
    result: str
    duration_s: float
    old: str | None = None  # the point's value when the command arrived


AuditHook = Callable[[CommandOutcome], None]


def _refused(reason: str) -> str:
    return f"refused: {reason}"


def _writable_point(regmap: RegisterMap, name: str) -> PointSpec | None:
    try:
        point = regmap.point(name)
    except KeyError:
        return None
    return point if point.writable else None


def _shown(regmap: RegisterMap, cache: DatapointCache, name: str) -> str | None:
    """A point's current value as MQTT shows it; None if unknown."""
    try:
        point = regmap.point(name)
    except KeyError:
        return None
    value = read_source(point.source, regmap.datapoints, cache.snapshot(), {}).value
    return None if value is None else format_value(point, value)


def refusal(command: Command, regmap: RegisterMap, cache: DatapointCache) -> str | None:
    """Why ``command`` is refused before the write path, or None to go ahead."""
    if command.retained:
        return _refused("retained commands are never executed")
    if command.expiry_s is not None and command.waited_s >= command.expiry_s:
        return _refused("expired")
    point = _writable_point(regmap, command.point)
    if point is None:
        return _refused(f"no writable point {command.point!r}")
    if not cache.snapshot().link_ready:
        return _refused("link down")
    try:
        command_words(point, command.payload)
    except CommandPayloadError as err:
        return _refused(str(err))
    return None


async def execute(
    command: Command, regmap: RegisterMap, cache: DatapointCache, backend: UnitBackend, client: str
) -> CommandOutcome:
    """Check ``command``, write it through the backend, and say how it went."""
    started = time.monotonic()
    old = _shown(regmap, cache, command.point)
    result = refusal(command, regmap, cache)
    if result is None:
        point = regmap.point(command.point)
        words = command_words(point, command.payload)
        code = await backend.write(point.table, point.address, words, client)
        result = OK if code is None else _refused(_REASONS.get(code, f"exception 0x{code:02X}"))
    return _outcome(command, client, result, time.monotonic() - started, old)


def refused_early(command: Command, reason: str, client: str) -> CommandOutcome:
    """The outcome of a command refused before any unit looked at it (``refused: reason``)."""
    return _outcome(command, client, _refused(reason), 0.0, None)


def _outcome(
    command: Command, client: str, result: str, duration_s: float, old: str | None
) -> CommandOutcome:
    """The outcome of ``command``, logged."""
    outcome = CommandOutcome(
        client,
        command.unit,
        command.point,
        command.payload[:64].decode("utf-8", "replace"),
        result,
        duration_s,
        old,
    )
    log = _LOGGER.info if result == OK else _LOGGER.warning
    log(
        "mqtt command by %s, unit %d, point %s: %s -> %r: %s",
        client,
        outcome.unit,
        outcome.point,
        old,
        outcome.payload,
        result,
    )
    return outcome


def audit_into(log: Callable[[], AuditLog | None]) -> AuditHook:
    """An audit hook that writes each command's outcome into the audit log, when there is one."""

    def record(outcome: CommandOutcome) -> None:
        audit = log()
        if audit is None:
            return
        event = AuditEvent(
            source="mqtt",
            client=outcome.client,
            unit=outcome.unit,
            point=outcome.point,
            old=outcome.old,
            new=outcome.payload,
            result=outcome.result,
            confirm_ms=round(1000 * outcome.duration_s, 1),
        )
        audit.record(event)

    return record
