"""The maps shipped inside the package, and ``--map NAME`` resolution.

A map argument is a file path or the name of a shipped map (``sdm120``, ``tongou_tosmr1``,
``register_map`` = the family A default). An existing file always wins, so an edited
``register_map.yaml`` in the working directory is used instead of the shipped one.
"""

from __future__ import annotations

import os

__all__ = [
    "DEFAULT_MAP_NAME",
    "not_found_hint",
    "resolve_map",
    "shipped_names",
    "shipped_path",
]

DEFAULT_MAP_NAME = "register_map"
_SUFFIX = ".yaml"


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


def not_found_hint() -> str:
    """A hint for a map that is neither a file nor a shipped map's name."""
    return f" (not a file, nor a shipped map: {', '.join(shipped_names())})"
