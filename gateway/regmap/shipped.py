"""The maps shipped inside the package, and ``--map NAME`` resolution.

A map argument is a file path or the name of a shipped map (``sdm120``, ``tongou_tosmr1``,
``register_map`` = the family A default). An existing file always wins, so an edited
``register_map.yaml`` in the working directory is used instead of the shipped one.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from gateway.regmap.load import load_map

__all__ = [
    "DEFAULT_MAP_NAME",
    "ShippedMap",
    "format_maps",
    "maps_command",
    "not_found_hint",
    "resolve_map",
    "shipped_maps",
    "shipped_path",
]

DEFAULT_MAP_NAME = "register_map"
_SUFFIX = ".yaml"


@dataclasses.dataclass(frozen=True, slots=True)
class ShippedMap:
    """One shipped map as ``maps`` lists it."""

    name: str
    family: str
    vendor: str
    model: str
    product_keys: tuple[str, ...]
    description: str
    path: str


def _maps_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "maps")


def shipped_names() -> list[str]:
    """The names of the shipped maps, sorted."""
    return sorted(f.removesuffix(_SUFFIX) for f in os.listdir(_maps_dir()) if f.endswith(_SUFFIX))


def shipped_path(name: str) -> str | None:
    """The file of the shipped map ``name`` (``.yaml`` optional), or None."""
    stem = name.removesuffix(_SUFFIX)
    return os.path.join(_maps_dir(), stem + _SUFFIX) if stem in shipped_names() else None


def resolve_map(spec: str, base_dir: str | None = None) -> str:
    """The file to load for ``spec``: an existing file, else a shipped map's, else ``spec``."""
    path = spec if base_dir is None or os.path.isabs(spec) else os.path.join(base_dir, spec)
    if os.path.exists(path) or os.sep in spec or "/" in spec:
        return os.path.normpath(path) if base_dir is not None else path
    return shipped_path(spec) or path


def shipped_maps() -> list[ShippedMap]:
    """Every shipped map with its device family and product keys, by name."""
    found = []
    for name in shipped_names():
        path = os.path.join(_maps_dir(), name + _SUFFIX)
        device = load_map(path).device
        found.append(
            ShippedMap(
                name=name,
                family=device.name,
                vendor=device.vendor,
                model=device.model,
                product_keys=device.product_keys,
                description=device.description,
                path=path,
            )
        )
    return found


def format_maps(maps: list[ShippedMap]) -> str:
    """The ``maps`` command's table: name, device family, product keys, description."""
    rows = [("name", "device family", "product keys", "description")]
    for item in maps:
        default = " (default)" if item.name == DEFAULT_MAP_NAME else ""
        family = f"{item.vendor} {item.model}".strip() or item.family
        keys = ", ".join(item.product_keys) or "-"
        rows.append((item.name + default, family, keys, item.description))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[3]])
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def not_found_hint() -> str:
    """A hint for a map that is neither a file nor a shipped map's name."""
    return f" (not a file, nor a shipped map: {', '.join(shipped_names())})"


def maps_command(_args: object) -> int:
    """``tuya-modbus-gateway maps``: print the shipped maps."""
    sys.stdout.write(format_maps(shipped_maps()))
    return 0
