"""The package layout is a contract: layers, their import boundaries, the front door, sizes."""

from __future__ import annotations

import ast
import builtins
import pathlib
import re

import pytest

import gateway

PACKAGE = pathlib.Path(gateway.__file__).parent
LAYERS = ("tuya", "modbus", "regmap", "unit", "twin")
ROOT_MODULES_MAX = 10
MODULE_LINES_MAX = 300
FUNCTION_LINES_MAX = 40

# Which gateway packages a layer may not import (the package root is off-limits to all).
FORBIDDEN = {
    "tuya": {"modbus", "regmap", "unit", "twin"},
    "modbus": {"tuya", "regmap", "unit", "twin"},
    "twin": {"modbus", "regmap", "unit"},
    "unit": {"twin"},
}
ROOT_NAMES = {"cli", "config", "service", "discover", "sniff", "logs", "tools"}
# What regmap may use of the layers below it: the codec's DP types and the Modbus tables.
REGMAP_MAY_IMPORT = (
    "gateway.regmap",
    "gateway.errors",
    "gateway.tuya.protocol",
    "gateway.modbus.tables",
)


def _modules() -> list[pathlib.Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imported(path: pathlib.Path) -> set[str]:
    """Every gateway module ``path`` imports, as dotted names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "gateway"}


def test_the_layers_exist_as_packages() -> None:
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_the_package_root_holds_at_most_ten_modules() -> None:
    root = [p.name for p in PACKAGE.glob("*.py")]
    assert len(root) <= ROOT_MODULES_MAX, root


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_only_what_it_may(layer: str) -> None:
    for path in (PACKAGE / layer).rglob("*.py"):
        for name in _imported(path):
            parts = name.split(".")
            second = parts[1] if len(parts) > 1 else ""
            assert second not in FORBIDDEN[layer], f"{path.name} imports {name}"
            assert second not in ROOT_NAMES, f"{path.name} imports {name}"


def test_the_twin_imports_only_the_tuya_codec_and_errors() -> None:
    for path in (PACKAGE / "twin").rglob("*.py"):
        for name in _imported(path):
            allowed = name.startswith(("gateway.tuya", "gateway.errors", "gateway.twin"))
            assert allowed, f"{path.name} imports {name}"


def test_regmap_imports_only_the_codec_and_the_tables() -> None:
    for path in (PACKAGE / "regmap").rglob("*.py"):
        for name in _imported(path):
            assert name.startswith(REGMAP_MAY_IMPORT), f"{path.name} imports {name}"


def test_no_package_imports_a_root_module() -> None:
    for path in PACKAGE.glob("*/**/*.py"):
        for name in _imported(path):
            parts = name.split(".")
            assert len(parts) < 2 or parts[1] not in ROOT_NAMES, f"{path} imports {name}"


def test_the_front_door_names() -> None:
    assert sorted(gateway.__all__) == sorted(
        ["GatewayService", "load_map", "McuLink", "GatewayError", "__version__"]
    )
    for name in gateway.__all__:
        assert getattr(gateway, name) is not None


def test_no_module_shadows_the_standard_library() -> None:
    import sys

    for path in _modules():
        assert path.stem not in sys.stdlib_module_names, path


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path: pathlib.Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MODULE_LINES_MAX, f"{path.name}: {lines} lines"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_function_size(path: pathlib.Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            assert lines <= FUNCTION_LINES_MAX, f"{path.name}:{node.lineno} {node.name}: {lines}"


def test_every_exception_is_in_the_drawn_tree() -> None:
    from gateway import errors

    assert errors.__doc__ is not None
    drawn = set(re.findall(r"\b([A-Z]\w*Error)\b", errors.__doc__)) - set(dir(builtins))
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.GatewayError)
    }
    assert drawn == defined
    assert defined <= set(errors.__all__)
    for path in _modules():
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(base) for base in node.bases}
                assert not bases & {"Exception", "BaseException"}, f"{path.name}: {node.name}"
                assert not node.name.endswith("Error"), f"{path.name}: {node.name}"
