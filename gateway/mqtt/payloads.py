"""Point values as MQTT payloads and command payloads back to register words. Pure code.

On/off points (coils, discrete inputs, ``bool`` registers) read ``ON``/``OFF`` (Home
Assistant's defaults); numbers are plain decimals, exact to the point's resolution; text is
text. A command's payload must be what discovery announces: ``ON``/``OFF`` or a decimal.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from fractions import Fraction

from gateway.errors import WriteRejectedError
from gateway.regmap.registers import encode_value
from gateway.regmap.specs import DatapointSpec, DerivedSource, DpSource, PointSpec, Source

__all__ = [
    "OFF",
    "ON",
    "CommandPayloadError",
    "command_words",
    "format_value",
    "is_on_off",
    "source_dpids",
]

ON = "ON"
OFF = "OFF"
_MAX_EXPONENT = 30
_DECIMALS = 6  # derived values (ratios, square roots) are rounded to this many places


# A command payload that is not a value of its point: refused, as a bad Modbus value is.
CommandPayloadError = WriteRejectedError


def is_on_off(point: PointSpec) -> bool:
    """Whether the point is shown as ON/OFF."""
    return point.table.is_bits or point.format == "bool"


def format_value(point: PointSpec, value: Fraction | str) -> str:
    """The payload that shows ``value`` of ``point``."""
    if isinstance(value, str):
        return value
    if is_on_off(point):
        return ON if value else OFF
    return _decimal_text(value)


def _decimal_text(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    rounded = round(value, _DECIMALS)
    with decimal.localcontext() as context:
        context.prec = 40
        number = decimal.Decimal(rounded.numerator) / decimal.Decimal(rounded.denominator)
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "") else text


def command_words(point: PointSpec, payload: bytes) -> list[int]:
    """The register words (or bits) a command payload writes; CommandPayloadError if none."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandPayloadError("payload is not UTF-8 text") from None
    if is_on_off(point):
        if text not in (ON, OFF):
            raise CommandPayloadError(f"expected {ON} or {OFF}, got {text[:32]!r}")
        return [1 if text == ON else 0]
    if point.format == "string":
        raise CommandPayloadError("text points are read-only")
    value = _parse_number(text)
    if point.format not in ("float32", "float64") and (value * point.scale).denominator != 1:
        raise CommandPayloadError(f"{text} is finer than the point's step {1 / point.scale:g}")
    encoded = encode_value(value, point.format, scale=point.scale, word_order=point.word_order)
    if encoded.saturated:
        raise CommandPayloadError(f"{text} does not fit {point.format}")
    return list(encoded.words)


def _parse_number(text: str) -> Fraction:
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        number = decimal.Decimal("NaN")
    exponent = number.as_tuple().exponent
    # a finite decimal of sane size only: 1e999999999 would take minutes to make exact
    if not number.is_finite() or not isinstance(exponent, int) or abs(exponent) > _MAX_EXPONENT:
        raise CommandPayloadError(f"expected a number, got {text[:32]!r}")
    return Fraction(number)


def source_dpids(source: Source, datapoints: Mapping[str, DatapointSpec]) -> tuple[int, ...]:
    """The datapoints a source reads."""
    if isinstance(source, DpSource):
        return (datapoints[source.datapoint].dpid,)
    if isinstance(source, DerivedSource):
        return tuple(d for arg in source.args for d in source_dpids(arg, datapoints))
    return ()
