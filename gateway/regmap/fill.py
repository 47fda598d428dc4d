"""The ``fill`` section: a constant read-only point for every address of a range no point covers.

Meter profiles need it: a real meter answers the gaps between its documented registers, so a
block read over a whole documented range succeeds.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from gateway.modbus.tables import Table
from gateway.regmap.specs import ConstSource, PointSpec
from gateway.regmap.vocab import Format
from gateway.regmap.yaml_schema import Checked

__all__ = ["FILL_PREFIX", "fill_points"]

FILL_PREFIX = "fill_0x"  # the names of filled points; a map's own points may not use it


def fill_points(
    checked: Checked, key: str, table: Table, ranges: list[Any], points: list[PointSpec]
) -> list[PointSpec]:
    """A constant point for every address of the fill ranges that no point covers."""
    covered = {a for p in points for a in range(p.address, p.end)}
    filled: dict[int, PointSpec] = {}
    for index, item in enumerate(ranges):
        path = f"fill.{key}[{index}]"
        if item is None:
            continue
        value = item.get("value", 0)
        if item["from"] > item["to"]:
            checked.error(f"{path}.from", f"from {item['from']} is above to {item['to']}")
        if table.is_bits and value not in (0, 1):
            checked.error(f"{path}.value", f"{table.value}s hold 0 or 1, not {value}")
        for address in range(item["from"], item["to"] + 1):
            if address in covered or address in filled:
                continue
            filled[address] = PointSpec(
                table=table,
                name=f"{FILL_PREFIX}{address:04x}",
                address=address,
                count=1,
                source=ConstSource(Fraction(value)),
                format=Format.BOOL if table.is_bits else Format.UINT16,
                description=f"fill: reads {value}",
                line=checked.line(path),
            )
    return list(filled.values())
