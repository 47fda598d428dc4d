"""docs/ARCHITECTURE.md names only what exists: module paths and dotted ``gateway.`` names."""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

import gateway

PACKAGE = pathlib.Path(gateway.__file__).parent
ROOT = PACKAGE.parent
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()

DOTTED = sorted(set(re.findall(r"\bgateway(?:\.[A-Za-z_]\w*)+", DOC)) - {"gateway.yaml"})
PATHS = sorted(set(re.findall(r"[\w/]+\.py\b", DOC)))


def _resolves(dotted: str) -> bool:
    """A module, or a module and attributes of it (``gateway.twin.running_twin``)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_the_document_names_something() -> None:
    assert len(DOTTED) > 20
    assert len(PATHS) > 50


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_dotted_name_exists(dotted: str) -> None:
    assert _resolves(dotted), dotted


@pytest.mark.parametrize("path", PATHS)
def test_every_module_path_exists(path: str) -> None:
    assert (ROOT / path).is_file() or (PACKAGE / path).is_file(), path


def test_every_package_is_in_the_document() -> None:
    # Modules may come and go between rewrites of the document; packages may not.
    packages = [path.parent.name for path in PACKAGE.glob("*/__init__.py")]
    missing = [name for name in packages if f"`{name}`" not in DOC and f"{name}/" not in DOC]
    assert not missing, missing
