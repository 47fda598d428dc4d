"""TwinOptions: everything that builds a twin, from a ``sim://`` URL or the ``simulate`` command.

``sim://``, ``sim://family_b`` and ``sim://family_a?report_interval=1&seed=3`` name a twin;
query keys are the :class:`TwinOptions` fields (a trailing ``_s``/``_v``/``_a`` may be left
off: ``report_interval``, ``motor_time``, ``voltage``, ``current``, ``delay``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gateway.errors import ConfigError
from gateway.twin.families import VARIANTS

__all__ = [
    "TwinOptions",
    "add_twin_arguments",
    "non_negative",
    "parse_sim_url",
    "probability",
    "twin_options_from_args",
]


@dataclasses.dataclass(frozen=True, slots=True)
class TwinOptions:
    """The twin's variant, physics and fault injection (the fault names are TwinFaults')."""

    variant: str = "family_a"
    product_key: str | None = None
    version: str = "1.0.0"
    seed: int = 0
    report_interval_s: float = 5.0
    motor_time_s: float = 0.8
    require_wifi_state: bool = True
    voltage_v: float = 230.0
    current_a: float = 1.0
    noise: float = 1.0
    garbage: bool = False
    bad_checksum: float = 0.0
    drop_replies: float = 0.0
    delay_s: float = 0.0
    split_bytes: bool = False
    small_rx_buffer: bool = False
    energy_kwh: float | None = None  # the energy counter's first value; None: the variant's


_TYPES = {f.name: f.type for f in dataclasses.fields(TwinOptions)}


def _convert(name: str, text: str) -> object:
    kind = _TYPES[name]
    if kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if kind == "int":
        return int(text)
    if kind in ("float", "float | None"):
        if not math.isfinite(value := float(text)):
            raise ValueError(f"expected a finite number, got {text!r}")
        return value
    return text


def _float_in(text: str, low: float, high: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0 (seconds, amperes, volts)."""
    return _float_in(text, 0.0, math.inf, "a finite number >= 0")


def probability(text: str) -> float:
    """argparse type: a probability, 0 to 1."""
    return _float_in(text, 0.0, 1.0, "a probability from 0 to 1")


def parse_sim_url(url: str) -> TwinOptions:
    """The options a ``sim://`` URL asks for; ConfigError lists every problem at once."""
    parts = urlsplit(url)
    errors: list[str] = []
    if parts.scheme != "sim":
        errors.append(f"{url}: not a sim:// URL")
    values: dict[str, Any] = {"variant": parts.netloc or parts.path.strip("/") or "family_a"}
    if values["variant"] not in VARIANTS:
        errors.append(
            f"{url}: unknown variant {values['variant']!r} (known: {', '.join(VARIANTS)})"
        )
    names = set(_TYPES) - {"variant"}
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        name = next(
            (n for n in (key, f"{key}_s", f"{key}_v", f"{key}_a", f"{key}_kwh") if n in names), None
        )
        if name is None:
            errors.append(f"{url}: unknown option {key!r} (known: {', '.join(sorted(names))})")
            continue
        try:
            values[name] = _convert(name, text)
        except ValueError as err:
            errors.append(f"{url}: option {key}: {err}")
    if errors:
        raise ConfigError(errors)
    return TwinOptions(**values)


def add_twin_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` command's twin options."""
    parser.add_argument("--variant", default="family_a", choices=sorted(VARIANTS))
    parser.add_argument("--product-key", help="product key the twin reports")
    parser.add_argument("--load", type=non_negative, default=1.0, metavar="A", help="load, A")
    parser.add_argument("--voltage", type=non_negative, default=230.0, metavar="V", help="mains, V")
    parser.add_argument("--report-interval", type=non_negative, default=5.0, metavar="S")
    parser.add_argument("--motor-time", type=non_negative, default=0.8, metavar="S")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-wifi-gate", action="store_true", help="accept DP commands before WiFi state 4"
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--garbage", action="store_true", help="noise bytes before each frame")
    faults.add_argument("--bad-checksum", type=probability, default=0.0, metavar="P")
    faults.add_argument("--drop-replies", type=probability, default=0.0, metavar="P")
    faults.add_argument("--delay", type=non_negative, default=0.0, metavar="S")
    faults.add_argument("--split-bytes", action="store_true", help="one byte per write")


def twin_options_from_args(args: argparse.Namespace) -> TwinOptions:
    """The TwinOptions the ``simulate`` arguments of :func:`add_twin_arguments` ask for."""
    return TwinOptions(
        variant=args.variant,
        product_key=args.product_key,
        seed=args.seed,
        report_interval_s=args.report_interval,
        motor_time_s=args.motor_time,
        require_wifi_state=not args.no_wifi_gate,
        voltage_v=args.voltage,
        current_a=args.load,
        garbage=args.garbage,
        bad_checksum=args.bad_checksum,
        drop_replies=args.drop_replies,
        delay_s=args.delay,
        split_bytes=args.split_bytes,
    )
