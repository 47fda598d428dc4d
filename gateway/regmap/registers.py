"""Values <-> Modbus registers: formats, word orders, integer scale, saturation. Pure code.

A multi-register value is laid out from its big-endian bytes ``A B C D …``: ``ABCD`` keeps them,
``CDAB`` reverses the order of the 16-bit words, ``BADC`` swaps the bytes inside each word and
``DCBA`` does both (plain little-endian). Reads that do not fit a format saturate at its limit
and say so (the caller counts it); they are never wrapped. Writes that do not fit are rejected.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from gateway.errors import WriteRejectedError
from gateway.regmap.vocab import Format, WordOrder, to_fraction

__all__ = [
    "FLOAT_FORMATS",
    "FORMATS",
    "INTEGER_FORMATS",
    "WORD_ORDERS",
    "Encoded",
    "Number",
    "decode_value",
    "encode_value",
    "integer_range",
    "nan_words",
    "register_count",
]

Number = int | float | Fraction

# name -> (registers, signed); bool is one register (or one bit in the bit tables)
_INTEGERS: dict[str, tuple[int, bool]] = {
    Format.BOOL: (1, False),
    Format.UINT16: (1, False),
    Format.INT16: (1, True),
    Format.UINT32: (2, False),
    Format.INT32: (2, True),
    Format.UINT64: (4, False),
    Format.INT64: (4, True),
}
_FLOATS: dict[str, tuple[int, str]] = {Format.FLOAT32: (2, ">f"), Format.FLOAT64: (4, ">d")}
FORMATS = tuple(Format)
INTEGER_FORMATS = tuple(name for name in _INTEGERS if name is not Format.BOOL)
FLOAT_FORMATS = tuple(_FLOATS)
WORD_ORDERS = tuple(WordOrder)
_SWAPPED_BYTES = (WordOrder.BADC, WordOrder.DCBA)
_REVERSED_WORDS = (WordOrder.CDAB, WordOrder.DCBA)
_FLOAT32_MAX = struct.unpack(">f", bytes.fromhex("7f7fffff"))[0]


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """Register words, and whether the value had to be clipped to fit."""

    words: tuple[int, ...]
    saturated: bool = False


def register_count(fmt: str, registers: int | None = None) -> int:
    if fmt == Format.STRING:
        if registers is None:
            raise ValueError("a string needs its length in registers")
        return registers
    if fmt in _FLOATS:
        return _FLOATS[fmt][0]
    return _INTEGERS[fmt][0]


def integer_range(fmt: str) -> tuple[int, int]:
    """The smallest and largest integer a bool or integer format holds."""
    count, signed = _INTEGERS[fmt]
    bits = 1 if fmt == Format.BOOL else 16 * count
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _to_words(data: bytes, word_order: str) -> tuple[int, ...]:
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if word_order in _SWAPPED_BYTES:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if word_order in _REVERSED_WORDS:
        words.reverse()
    return tuple(words)


def _from_words(words: Sequence[int], word_order: str) -> bytes:
    ordered = list(words)
    if word_order in _REVERSED_WORDS:
        ordered.reverse()
    if word_order in _SWAPPED_BYTES:
        ordered = [((w & 0xFF) << 8) | (w >> 8) for w in ordered]
    return b"".join(w.to_bytes(2, "big") for w in ordered)


def encode_value(
    value: Number | bool | str,
    fmt: str,
    *,
    scale: int = 1,
    word_order: str = WordOrder.ABCD,
    registers: int | None = None,
) -> Encoded:
    """Register words for ``value × scale`` in ``fmt``, saturated (and flagged) if it overflows."""
    if fmt == Format.STRING:
        return _encode_string(str(value), register_count(fmt, registers))
    if isinstance(value, str):
        raise TypeError(f"{fmt} cannot hold the text {value!r}")
    if fmt in _FLOATS:
        return _encode_float(float(value) * scale, fmt, word_order)
    if isinstance(value, float) and math.isnan(value):
        return Encoded(_to_words(bytes(2 * register_count(fmt)), word_order), True)
    lo, hi = integer_range(fmt)
    if isinstance(value, float) and math.isinf(value):
        scaled = hi if value > 0 else lo
    else:
        scaled = _scaled(value, scale)
    clipped = min(max(scaled, lo), hi)
    count, signed = _INTEGERS[fmt]
    data = clipped.to_bytes(2 * count, "big", signed=signed)
    return Encoded(_to_words(data, word_order), clipped != scaled)


def _scaled(value: Number | bool, scale: int) -> int:
    """``round(to_fraction(value) * scale)`` (half to even) in integers: no Fraction is built."""
    if isinstance(value, int):
        return value * scale
    if isinstance(value, float):
        numerator, denominator = Decimal(repr(value)).as_integer_ratio()  # to_fraction's ratio
    else:
        numerator, denominator = value.numerator, value.denominator
    whole, rest = divmod(numerator * scale, denominator)
    twice = 2 * rest
    if twice > denominator or (twice == denominator and whole & 1):
        whole += 1
    return whole


def _encode_float(value: float, fmt: str, word_order: str) -> Encoded:
    saturated = False
    if fmt == Format.FLOAT32 and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        value, saturated = math.copysign(_FLOAT32_MAX, value), True
    return Encoded(_to_words(struct.pack(_FLOATS[fmt][1], value), word_order), saturated)


def _encode_string(text: str, count: int) -> Encoded:
    data = text.encode("utf-8")
    size = 2 * count
    clipped = data[:size]
    while clipped and _cut_inside_character(data, len(clipped)):
        clipped = clipped[:-1]
    return Encoded(
        _to_words(clipped.ljust(size, b"\x00"), WordOrder.ABCD), len(clipped) < len(data)
    )


def _cut_inside_character(data: bytes, end: int) -> bool:
    return end < len(data) and (data[end] & 0xC0) == 0x80


def nan_words(fmt: str, word_order: str = WordOrder.ABCD) -> tuple[int, ...]:
    """A quiet NaN in a float format, laid out in ``word_order``."""
    return _to_words(struct.pack(_FLOATS[fmt][1], math.nan), word_order)


def decode_value(
    words: Sequence[int], fmt: str, *, scale: int = 1, word_order: str = WordOrder.ABCD
) -> Fraction:
    """The value a write of ``words`` means (``register / scale``); WriteRejectedError if none."""
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise WriteRejectedError(f"register values must be 0..65535, got {list(words)}")
    if fmt == Format.STRING:
        raise WriteRejectedError("string points are read-only")
    if len(words) != register_count(fmt):
        raise WriteRejectedError(f"{fmt} takes {register_count(fmt)} register(s), got {len(words)}")
    data = _from_words(words, word_order)
    if fmt in _FLOATS:
        return _float_fraction(struct.unpack(_FLOATS[fmt][1], data)[0], fmt) / scale
    signed = _INTEGERS[fmt][1]
    raw = int.from_bytes(data, "big", signed=signed)
    if fmt == Format.BOOL and raw not in (0, 1):
        raise WriteRejectedError(f"a bool register takes 0 or 1, got {raw}")
    return Fraction(raw, scale)


def _float_fraction(value: float, fmt: str) -> Fraction:
    if not math.isfinite(value):
        raise WriteRejectedError(f"{value} is not a number that can be written")
    if fmt == Format.FLOAT64:
        return to_fraction(value)
    # The shortest decimal that rounds to the same float32: 230.1f means 230.1, not 230.099998.
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if struct.pack(">f", float(text)) == packed:
                return Fraction(text)
        except OverflowError:  # near the float32 limit a short decimal rounds past it
            continue
    return Fraction(value)
