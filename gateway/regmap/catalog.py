"""The shipped maps as a catalogue: which map fits the product key a breaker reports.

``--map auto`` and ``discover`` use it. The default map comes first, then the others by file
name, so a family's own map wins over the meter profiles (SDM120, SDM630) that list the same
keys because they fit the same breakers.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType

from gateway.errors import ConfigError
from gateway.regmap.load import load_map
from gateway.regmap.shipped import DEFAULT_MAP_NAME, shipped_names, shipped_path
from gateway.regmap.specs import DeviceSpec, RegisterMap, TuyaSpec

__all__ = [
    "AUTO",
    "MapChoice",
    "ShippedMap",
    "choose_map",
    "describe_choice",
    "format_maps",
    "load_maps",
    "map_listing",
    "maps_command",
    "pending_map",
    "shipped_maps",
]

AUTO = "auto"


@dataclasses.dataclass(frozen=True, slots=True)
class MapChoice:
    """The map for a product key (None: no shipped map knows it), and the others that fit."""

    product_key: str | None
    map: RegisterMap | None
    also: tuple[str, ...] = ()


def _shipped_paths() -> list[Path]:
    """The package's maps, the default map first."""
    default = shipped_path(DEFAULT_MAP_NAME)
    others = [shipped_path(name) for name in shipped_names() if name != DEFAULT_MAP_NAME]
    return [Path(p) for p in (default, *others) if p is not None]


@functools.cache
def shipped_maps() -> tuple[RegisterMap, ...]:
    """Every shipped map that loads, in catalogue order."""
    loaded = []
    for path in _shipped_paths():
        try:
            loaded.append(load_map(path))
        except ConfigError:
            continue  # a broken shipped map is check's business, not the catalogue's
    return tuple(loaded)


def choose_map(product_key: str | None) -> MapChoice:
    """The first shipped map that lists ``product_key``, and the names of the others."""
    fits = [m for m in shipped_maps() if product_key and product_key in m.device.product_keys]
    if not fits:
        return MapChoice(product_key, None)
    return MapChoice(product_key, fits[0], tuple(m.path for m in fits[1:]))


def describe_choice(product_key: str | None) -> str:
    """One line naming the shipped map for ``product_key`` (``discover`` prints it)."""
    choice = choose_map(product_key)
    if choice.map is None:
        return "shipped map: none lists this product key (write one from the draft)"
    also = f" (also fits: {', '.join(choice.also)})" if choice.also else ""
    return f"shipped map: {choice.map.path} ({choice.map.device.name}){also}"


def load_maps(paths: Iterable[str]) -> dict[str, RegisterMap]:
    """Every distinct map, loaded once (``auto``: its placeholder); ConfigError lists all."""
    maps: dict[str, RegisterMap] = {}
    errors: list[str] = []
    for path in paths:
        if path in maps:
            continue
        if path == AUTO:
            maps[AUTO] = pending_map()
            continue
        try:
            maps[path] = load_map(path)
        except ConfigError as err:
            errors.extend(err.errors)
    if errors:
        raise ConfigError(errors)
    return maps


def pending_map() -> RegisterMap:
    """The placeholder an auto unit holds until its map is chosen: no points, default link."""
    device = DeviceSpec(AUTO, description="chosen from the product key at the handshake")
    return RegisterMap(AUTO, device, TuyaSpec(query_interval_s=30), MappingProxyType({}), {})


_FAMILY = "family_"  # the breaker maps' device names, as the twin's variants are called


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


def map_listing() -> list[ShippedMap]:
    """Every shipped map with its device family and product keys, by name."""
    loaded = {name: _shipped(name) for name in shipped_names()}
    found = []
    for name, (path, device) in loaded.items():
        found.append(
            ShippedMap(
                name=name,
                family=_family(device, (d for _, d in loaded.values())),
                vendor=device.vendor,
                model=device.model,
                product_keys=device.product_keys,
                description=device.description,
                path=path,
            )
        )
    return found


def _shipped(name: str) -> tuple[str, DeviceSpec]:
    path = shipped_path(name)
    assert path is not None  # listed names have files
    return path, load_map(path).device


def _family(device: DeviceSpec, shipped: Iterable[DeviceSpec]) -> str:
    """The breaker family (``family_a``...) whose map lists one of the device's product keys.

    A meter profile (sdm120...) serves a breaker family's MCU under another register layout.
    """
    keys = set(device.product_keys)
    for other in shipped:
        if other.name.startswith(_FAMILY) and keys & set(other.product_keys):
            return other.name
    return device.name


def format_maps(maps: list[ShippedMap]) -> str:
    """The ``maps`` command's table: name, device family, product keys, description."""
    rows = [("name", "device family", "product keys", "description")]
    for item in maps:
        default = " (default)" if item.name == DEFAULT_MAP_NAME else ""
        model = f"{item.vendor} {item.model}".strip()
        family = f"{item.family}: {model}" if model else item.family
        keys = ", ".join(item.product_keys) or "-"
        rows.append((item.name + default, family, keys, item.description))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[3]])
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def maps_command(_args: object) -> int:
    """``tuya-modbus-gateway maps``: print the shipped maps."""
    sys.stdout.write(format_maps(map_listing()))
    return 0
