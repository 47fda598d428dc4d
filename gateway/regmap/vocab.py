"""The words a map may use for a choice, as enums: one copy, from which the JSON Schema is made.

Each is a ``StrEnum`` because it appears in YAML (or, for :class:`SourceKind`, in messages and
docs), so a member also compares equal to its text.
"""

from __future__ import annotations

import enum
from fractions import Fraction

__all__ = [
    "DerivedOp",
    "Format",
    "Saturate",
    "SourceKind",
    "StalePolicy",
    "WordOrder",
    "to_fraction",
]


class Format(enum.StrEnum):
    """How a point's value is laid out in registers."""

    BOOL = "bool"
    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    UINT64 = "uint64"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


class WordOrder(enum.StrEnum):
    """Byte order of a multi-register value, from its big-endian bytes A B C D."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


class StalePolicy(enum.StrEnum):
    """What a read of a stale point answers."""

    EXCEPTION = "exception"
    LAST = "last"
    ZERO = "zero"
    NAN = "nan"


class Saturate(enum.StrEnum):
    """What a read of a value outside its format or declared range answers."""

    CLAMP = "clamp"
    EXCEPTION = "exception"


class SourceKind(enum.StrEnum):
    """Which part of a datapoint a source reads."""

    VALUE = "value"
    FIELD = "field"
    BIT = "bit"
    RECORD = "record"
    ENABLED = "enabled"


class DerivedOp(enum.StrEnum):
    """The operations a derived source may apply (the map's only arithmetic, no eval)."""

    MUL = "mul"
    SUM = "sum"
    SUB = "sub"
    DIV = "div"
    SQRT = "sqrt"
    ACOS_DEG = "acos_deg"


def to_fraction(value: int | float | str | Fraction) -> Fraction:
    """An exact fraction; floats go through their shortest repr so 0.1 stays 1/10."""
    if isinstance(value, float):
        return Fraction(repr(value))
    return Fraction(value)
