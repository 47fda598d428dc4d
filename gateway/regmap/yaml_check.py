"""Checking composed YAML nodes against a schema tree (:mod:`gateway.regmap.yaml_schema`).

Every problem is collected as ``file:line: path: message``; the nodes come from the bounded
composer of :mod:`gateway.regmap.yaml_read`, so a check walks a bounded number of nodes. Every
number must be finite: ``.nan`` and ``.inf`` are refused wherever a number is expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.regmap.yaml_read import compose_checked
from gateway.regmap.yaml_schema import (
    AnyOf,
    Bool,
    Checked,
    Int,
    ListOf,
    MapOf,
    Node,
    Num,
    Obj,
    Ref,
    Str,
    kind_of,
    not_one_of,
    required_keys,
    unknown_key,
)

__all__ = ["check_yaml"]

_MISSING = object()
_BAD = object()
_EXCERPT = 40  # characters of a bad value quoted in a message


class _Checker:
    def __init__(self, out: Checked, defs: Mapping[str, Node]) -> None:
        self.out = out
        self.defs = defs
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, path: str, message: str) -> object:
        line = node.start_mark.line + 1
        self.out.lines.setdefault(path, line)
        self.out.errors.append(f"{self.out.filename}:{line}: {path or '<top>'}: {message}")
        return _MISSING

    def check(self, spec: Node, node: yaml.Node, path: str) -> object:
        self.out.lines[path] = node.start_mark.line + 1
        while isinstance(spec, Ref):
            spec = self.defs[spec.name]
        if isinstance(spec, Obj | MapOf):
            return self._mapping(spec, node, path)
        if isinstance(spec, ListOf):
            return self._sequence(spec, node, path)
        if isinstance(spec, AnyOf):
            return self._any(spec, node, path)
        return self._scalar(spec, node, path)

    def value(self, node: yaml.ScalarNode) -> object:
        """The scalar's value; _BAD for text YAML resolves but Python cannot build."""
        try:
            return self.constructor.construct_object(node)
        except (ValueError, OverflowError, yaml.YAMLError):  # 2001-13-45, 5000-digit ints
            return _BAD

    def _scalar(self, spec: Str | Int | Num | Bool, node: yaml.Node, path: str) -> object:
        if not isinstance(node, yaml.ScalarNode):
            return self.fail(node, path, f"expected {kind_of(spec)}, got a {_yaml_kind(node)}")
        value = self.value(node)
        if value is _BAD:
            return self.fail(node, path, f"{_excerpt(node.value)} is not a valid value")
        if isinstance(spec, Str):
            return self._string(spec, value, node, path)
        if isinstance(spec, Bool):
            ok = isinstance(value, bool)
        elif isinstance(spec, Int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            return self.fail(node, path, f"expected {kind_of(spec)}, got {_excerpt(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            return self.fail(node, path, f"expected a finite number, got {node.value}")
        return self._bounds(spec, value, node, path)

    def _string(self, spec: Str, value: object, node: yaml.Node, path: str) -> object:
        if not isinstance(value, str):
            return self.fail(node, path, f"expected a string, got {_excerpt(value)}")
        if spec.enum is not None and value not in spec.enum:
            return self.fail(node, path, not_one_of(value, spec.enum))
        if spec.pattern is not None and not re.match(spec.pattern, value):
            return self.fail(node, path, f"{value!r} does not match {spec.pattern}")
        return value

    def _bounds(self, spec: Int | Num | Bool, value: Any, node: yaml.Node, path: str) -> object:
        if isinstance(spec, Bool):
            return value
        if spec.minimum is not None and value < spec.minimum:
            return self.fail(node, path, f"{value} is below the minimum {spec.minimum}")
        if isinstance(spec, Int) and spec.maximum is not None and value > spec.maximum:
            return self.fail(node, path, f"{value} is above the maximum {spec.maximum}")
        floor = spec.exclusive_minimum if isinstance(spec, Num) else None
        if floor is not None and value <= floor:
            return self.fail(node, path, f"{value} must be above {floor}")
        return value

    def _sequence(self, spec: ListOf, node: yaml.Node, path: str) -> object:
        if not isinstance(node, yaml.SequenceNode):
            return self.fail(node, path, f"expected a list, got a {_yaml_kind(node)}")
        if len(node.value) < spec.min_items:
            return self.fail(node, path, f"needs at least {spec.min_items} item(s)")
        if spec.max_items is not None and len(node.value) > spec.max_items:
            return self.fail(node, path, f"takes at most {spec.max_items} item(s)")
        items = [self.check(spec.item, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        # A broken item stays as None so later items keep their index in error paths.
        return [None if item is _MISSING else item for item in items]

    def _mapping(self, spec: Obj | MapOf, node: yaml.Node, path: str) -> object:
        if not isinstance(node, yaml.MappingNode):
            return self.fail(node, path, f"expected a mapping, got a {_yaml_kind(node)}")
        result: dict[str, object] = {}
        seen: set[str] = set()
        broken = False
        for key_node, value_node in node.value:
            key = self.value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.fail(key_node, path, f"keys must be strings, got {_excerpt(key_node)}")
                continue
            sub = f"{path}.{key}" if path else key
            if key in seen:
                self.fail(key_node, sub, "duplicate key")
                continue
            seen.add(key)
            if isinstance(spec, Obj) and key not in spec.keys:
                self.fail(key_node, sub, unknown_key(key, spec.keys))
                continue
            value = self.check(_value_spec(spec, key), value_node, sub)
            if value is _MISSING:
                self.out.broken.add(sub)
                broken |= isinstance(spec, Obj) and spec.keys[key].required
            else:
                result[key] = value
        if isinstance(spec, Obj):
            for name in required_keys(spec):
                if name not in seen:
                    self.fail(node, path, f"missing required key {name!r}")
                    broken = True
        return _MISSING if broken else result

    def _any(self, spec: AnyOf, node: yaml.Node, path: str) -> object:
        if isinstance(node, yaml.MappingNode):
            present = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
            for option in spec.options:
                if isinstance(option, Obj) and any(
                    k.required and name in present for name, k in option.keys.items()
                ):
                    return self.check(option, node, path)
            wanted = [n for o in spec.options if isinstance(o, Obj) for n in required_keys(o)]
            return self.fail(node, path, f"expected a mapping with one of {', '.join(wanted)}")
        if isinstance(node, yaml.ScalarNode):
            value = self.value(node)
            for option in spec.options:
                if _matches(option, value):
                    return self.check(option, node, path)
        kinds = dict.fromkeys(kind_of(o) for o in spec.options)
        return self.fail(node, path, f"expected {' or '.join(kinds)}, got a {_yaml_kind(node)}")


def _value_spec(spec: Obj | MapOf, key: str) -> Node:
    return spec.value if isinstance(spec, MapOf) else spec.keys[key].node


def _matches(spec: Node, value: object) -> bool:
    if isinstance(value, bool):
        return isinstance(spec, Bool)
    if isinstance(value, int | float):
        return isinstance(spec, Num | Int)
    return isinstance(value, str) and isinstance(spec, Str)


def _yaml_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    return "list" if isinstance(node, yaml.SequenceNode) else "scalar"


def _excerpt(value: object) -> str:
    if isinstance(value, yaml.Node):
        return f"a {_yaml_kind(value)}"
    text = repr(value)
    return text if len(text) <= _EXCERPT else f"{text[:_EXCERPT]}... ({len(text)} characters)"


def check_yaml(
    text: str, filename: str, schema: Node, defs: Mapping[str, Node] | None = None
) -> Checked:
    """Parse YAML text and check it against ``schema`` (``defs`` resolve :class:`Ref` s)."""
    out = Checked({}, {}, [], filename)
    try:
        root = compose_checked(text, filename)
    except ConfigError as err:
        out.errors.extend(err.errors)
        return out
    if root is None:
        out.errors.append(f"{filename}:1: <top>: the file is empty")
        return out
    data = _Checker(out, defs or {}).check(schema, root, "")
    if isinstance(data, dict):
        out.data = data
    return out
