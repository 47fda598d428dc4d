"""The shipped maps as a catalogue: which map fits the product key a breaker reports.

``--map auto`` and ``discover`` use it. The default map comes first, then the others by file
name, so a family's own map wins over the meter profiles (SDM120, SDM630) that list the same
keys because they fit the same breakers.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from types import MappingProxyType

from gateway.errors import ConfigError
from gateway.regmap.load import load_map
from gateway.regmap.shipped import DEFAULT_MAP_NAME, shipped_names, shipped_path
from gateway.regmap.specs import DeviceSpec, RegisterMap, TuyaSpec

__all__ = [
    "AUTO",
    "MapChoice",
    "choose_map",
    "describe_choice",
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


def pending_map() -> RegisterMap:
    """The placeholder an auto unit holds until its map is chosen: no points, default link."""
    device = DeviceSpec(AUTO, description="chosen from the product key at the handshake")
    return RegisterMap(AUTO, device, TuyaSpec(query_interval_s=30), MappingProxyType({}), {})
