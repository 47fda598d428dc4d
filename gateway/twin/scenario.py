"""Scenario files for ``simulate``: timed events on the twin's own clock, for PLC commissioning.

A scenario is YAML with one list, ``events``; each event has ``at`` (seconds after the twin
starts) and exactly one action, plus ``for`` where an action can end::

    events:
      - {at: 5, load: 12.5}             # load current, A (a step)
      - {at: 10, voltage: 190}          # mains voltage, V (sag or swell)
      - {at: 15, leakage: 25}           # leakage current, mA
      - {at: 20, trip: over_current}    # the breaker trips: fault bit set, switch open
      - {at: 30, lever: on}             # someone moves the lever by hand
      - {at: 40, reboot: true}          # the MCU restarts (the handshake starts over)
      - {at: 50, line: silent, for: 5}  # a line fault: silent, garbage or bad_checksum

Times are relative to :meth:`Scenario.start` on the event loop's clock, the clock the twin's
own reports and motor use. Every number must be finite and in its range (:data:`RANGES`).

The twin reads no files: ``simulate`` reads the scenario with the maps' bounded, tag-free YAML
reader (:func:`gateway.tools.load_scenario`) and hands the composed nodes to
:func:`events_from_yaml`, which checks every event and names its line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import logging
import math
from collections.abc import Callable
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.twin.families import Protection
from gateway.twin.mcu import McuTwin
from gateway.twin.options import non_negative

__all__ = [
    "RANGES",
    "Action",
    "Event",
    "LineFault",
    "Scenario",
    "add_cli_options",
    "events_from_yaml",
    "quick_events",
]

_LOGGER = logging.getLogger(__name__)
_PROTECTIONS = ", ".join(p.value for p in Protection)


class Action(enum.StrEnum):
    """What an event does."""

    LOAD = "load"
    VOLTAGE = "voltage"
    LEAKAGE = "leakage"
    TEMPERATURE = "temperature"
    TRIP = "trip"
    LEVER = "lever"
    REBOOT = "reboot"
    LINE = "line"


class LineFault(enum.StrEnum):
    """A fault on the UART line, until ``for`` runs out (or for good)."""

    SILENT = "silent"
    GARBAGE = "garbage"
    BAD_CHECKSUM = "bad_checksum"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One timed event."""

    at_s: float
    action: Action
    value: float | str | bool
    for_s: float | None = None

    def describe(self) -> str:
        until = f" for {self.for_s:g} s" if self.for_s is not None else ""
        return f"t={self.at_s:g} s: {self.action.value} {self.value}{until}"


MAX_TIME_S = 30 * 86_400.0  # a commissioning run of a month is plenty
_AT_S = 10.0  # --trip without --at
# The measured actions' ranges: wide enough for any fault a breaker must trip on.
RANGES: dict[Action, tuple[float, float]] = {
    Action.LOAD: (0.0, 1000.0),  # A
    Action.VOLTAGE: (0.0, 1000.0),  # V
    Action.LEAKAGE: (0.0, 10_000.0),  # mA
    Action.TEMPERATURE: (0.0, 200.0),  # °C
}


def _number(name: str, raw: Any, low: float, high: float, *, above: bool = False) -> float:
    """A finite number in [low, high] (or (low, high] when ``above``); ValueError otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError(f"{name}: expected a finite number, got {raw!r}")
    if raw < low or (above and raw == low) or raw > high:
        floor = f"> {low:g}" if above else f">= {low:g}"
        raise ValueError(f"{name}: expected a number {floor} and <= {high:g}, got {raw!r}")
    return float(raw)


def _value(action: Action, raw: Any) -> float | str | bool:
    """The checked value of one action; ValueError says what is expected."""
    if action in RANGES:
        return _number(action.value, raw, *RANGES[action])
    if action is Action.TRIP:
        if raw not in {p.value for p in Protection}:
            raise ValueError(f"trip: unknown protection {raw!r} (known: {_PROTECTIONS})")
        return str(raw)
    if action is Action.LEVER:
        if raw not in (True, False, "on", "off"):
            raise ValueError(f"lever: expected on or off, got {raw!r}")
        return raw in (True, "on")
    if action is Action.LINE:
        if raw not in set(LineFault):
            raise ValueError(f"line: expected one of {', '.join(LineFault)}, got {raw!r}")
        return str(raw)
    if raw is not True:
        raise ValueError(f"reboot: expected true, got {raw!r}")
    return True


def _event(item: Any) -> Event:
    if not isinstance(item, dict):
        raise ValueError(f"expected a mapping like {{at: 10, trip: over_current}}, got {item!r}")
    rest = dict(item)
    at = _number("at", rest.pop("at", None), 0.0, MAX_TIME_S)
    for_s = rest.pop("for", None)
    if for_s is not None:
        for_s = _number("for", for_s, 0.0, MAX_TIME_S, above=True)
    if len(rest) != 1:
        raise ValueError(f"expected exactly one action ({', '.join(Action)}), got {sorted(rest)}")
    ((key, raw),) = rest.items()
    if key not in set(Action):
        raise ValueError(f"unknown action {key!r} (known: {', '.join(Action)})")
    action = Action(key)
    return Event(at, action, _value(action, raw), for_s)


def _event_nodes(root: yaml.Node | None, filename: str) -> list[yaml.Node]:
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "events" and isinstance(value, yaml.SequenceNode):
                return list(value.value)
    line = root.start_mark.line + 1 if root is not None else 1
    raise ConfigError([f"{filename}:{line}: <top>: expected a mapping with an 'events' list"])


def _construct(node: yaml.Node) -> Any:
    """The Python value of a composed (tag-free, bounded) node; ValueError if it has none."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except (ValueError, OverflowError, TypeError, yaml.YAMLError) as err:
        raise ValueError(f"not a valid value: {str(err).splitlines()[0][:80]}") from None


def events_from_yaml(root: yaml.Node | None, filename: str) -> tuple[Event, ...]:
    """The events of a composed scenario, by time; ConfigError lists each bad event's line."""
    events, errors = [], []
    for index, node in enumerate(_event_nodes(root, filename)):
        try:
            events.append(_event(_construct(node)))
        except ValueError as err:
            errors.append(f"{filename}:{node.start_mark.line + 1}: events[{index}]: {err}")
    if errors:
        raise ConfigError(errors)
    return tuple(sorted(events, key=lambda e: e.at_s))


class Scenario:
    """Plays events on a twin: ``start()`` schedules them, ``stop()`` cancels what is left."""

    def __init__(self, twin: McuTwin, events: tuple[Event, ...]) -> None:
        for event in events:  # a trip the variant cannot do fails now, not at its time
            if event.action is Action.TRIP:
                _fault_bit(twin, Protection(event.value))
        self.twin = twin
        self.events = events
        self.played: list[Event] = []
        self._handles: list[asyncio.TimerHandle] = []
        self._before: dict[Event, float] = {}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for event in self.events:
            self._handles.append(loop.call_at(t0 + event.at_s, self._play, event))
            if event.for_s is not None:
                end = t0 + event.at_s + event.for_s
                self._handles.append(loop.call_at(end, self._end, event))

    def stop(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()

    def _play(self, event: Event) -> None:
        _LOGGER.info("scenario %s", event.describe())
        self.played.append(event)
        if event.for_s is not None and event.action in _MEASURED:
            self._before[event] = getattr(self.twin, _MEASURED[event.action])
        self._apply(event.action, event.value)

    def _end(self, event: Event) -> None:
        _LOGGER.info("scenario t=%g s: %s ends", event.at_s + (event.for_s or 0), event.action)
        if event.action is Action.LINE:
            self._line(LineFault(str(event.value)), on=False)
        elif event.action is Action.LEVER:
            self._apply(event.action, not event.value)
        elif event in self._before:
            self._apply(event.action, self._before.pop(event))

    def _apply(self, action: Action, value: float | str | bool) -> None:
        twin = self.twin
        setters: dict[Action, Callable[[float], None]] = {
            Action.LOAD: twin.set_load,
            Action.VOLTAGE: twin.set_voltage,
            Action.LEAKAGE: twin.set_leakage,
            Action.TEMPERATURE: twin.set_temperature,
        }
        if action in setters:
            setters[action](float(value))
        elif action is Action.TRIP:
            twin.trip(_fault_bit(twin, Protection(value)))
        elif action is Action.LEVER:
            twin.flip_lever(bool(value))
        elif action is Action.REBOOT:
            twin.reboot()
        else:
            self._line(LineFault(str(value)), on=True)

    def _line(self, fault: LineFault, *, on: bool) -> None:
        faults = self.twin.faults
        if fault is LineFault.SILENT:
            faults.silent = on
        elif fault is LineFault.GARBAGE:
            faults.garbage = on
        else:
            faults.bad_checksum = 1.0 if on else 0.0


# The twin property a physical event changes: its value returns when ``for`` runs out.
_MEASURED = {
    Action.LOAD: "current_a",
    Action.VOLTAGE: "voltage_v",
    Action.LEAKAGE: "leakage_ma",
    Action.TEMPERATURE: "temperature_c",
}


def _fault_bit(twin: McuTwin, kind: Protection) -> int:
    for spec in twin.variant.protections:
        if spec.kind is kind:
            return spec.fault_bit
    known = ", ".join(spec.kind.value for spec in twin.variant.protections)
    raise ConfigError([f"{twin.variant.name} has no {kind.value} protection (it has: {known})"])


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """``simulate``'s scenario options."""
    group = parser.add_argument_group("scenario (times in seconds after the twin starts)")
    group.add_argument("--scenario", metavar="FILE", help="timed events (YAML)")
    group.add_argument("--trip", choices=[p.value for p in Protection], help="trip once")
    group.add_argument(
        "--at", type=non_negative, metavar="S", help=f"when --trip fires (default {_AT_S:g})"
    )


def quick_events(args: argparse.Namespace) -> tuple[Event, ...]:
    """The quick flags' events; ConfigError for ``--at`` without ``--trip``."""
    if args.at is not None and not args.trip:
        raise ConfigError(["--at S says when --trip fires: give --trip too"])
    if not args.trip:
        return ()
    at_s = _AT_S if args.at is None else args.at
    if at_s > MAX_TIME_S:
        raise ConfigError([f"--at: expected seconds <= {MAX_TIME_S:g}, got {at_s:g}"])
    return (Event(at_s, Action.TRIP, args.trip),)
