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
own reports and motor use.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import logging
from collections.abc import Callable
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.twin.families import Protection
from gateway.twin.mcu import McuTwin

__all__ = [
    "Action",
    "Event",
    "LineFault",
    "Scenario",
    "add_cli_options",
    "events_from_args",
    "load_scenario",
    "parse_scenario",
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


def _value(action: Action, raw: Any) -> float | str | bool:
    """The checked value of one action; ValueError says what is expected."""
    if action in (Action.LOAD, Action.VOLTAGE, Action.LEAKAGE, Action.TEMPERATURE):
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
            raise ValueError(f"{action.value}: expected a number >= 0, got {raw!r}")
        return float(raw)
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
    at, for_s = rest.pop("at", None), rest.pop("for", None)
    if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
        raise ValueError(f"at: expected seconds >= 0, got {at!r}")
    if for_s is not None and (not isinstance(for_s, int | float) or for_s <= 0):
        raise ValueError(f"for: expected seconds > 0, got {for_s!r}")
    if len(rest) != 1:
        raise ValueError(f"expected exactly one action ({', '.join(Action)}), got {sorted(rest)}")
    ((key, raw),) = rest.items()
    if key not in set(Action):
        raise ValueError(f"unknown action {key!r} (known: {', '.join(Action)})")
    action = Action(key)
    return Event(float(at), action, _value(action, raw), None if for_s is None else float(for_s))


def parse_scenario(text: str, filename: str = "<scenario>") -> tuple[Event, ...]:
    """The events of a scenario, by time; ConfigError lists every bad event with its line."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"{filename}: not YAML: {err}"]) from err
    data = yaml.safe_load(text) if root is not None else None
    if root is None or not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ConfigError([f"{filename}: expected a mapping with an 'events' list"])
    items = next(v for k, v in root.value if k.value == "events").value
    events, errors = [], []
    for index, (item, node) in enumerate(zip(data["events"], items, strict=True)):
        try:
            events.append(_event(item))
        except ValueError as err:
            errors.append(f"{filename}:{node.start_mark.line + 1}: events[{index}]: {err}")
    if errors:
        raise ConfigError(errors)
    return tuple(sorted(events, key=lambda e: e.at_s))


def load_scenario(path: str) -> tuple[Event, ...]:
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_scenario(handle.read(), path)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read the scenario: {err}"]) from err


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
    group.add_argument("--at", type=float, default=10.0, metavar="S", help="when --trip fires")


def events_from_args(args: argparse.Namespace) -> tuple[Event, ...]:
    """The scenario file's events plus the quick flags'."""
    events = load_scenario(args.scenario) if args.scenario else ()
    if args.trip:
        events += (Event(args.at, Action.TRIP, args.trip),)
    return tuple(sorted(events, key=lambda e: e.at_s))
