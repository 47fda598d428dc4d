"""A tiny schema language for YAML documents, with line numbers and a JSON Schema rendering.

YAML is composed into nodes (which keep their marks) and checked against a tree of
:class:`Obj`, :class:`MapOf`, :class:`ListOf`, :class:`AnyOf` and scalar nodes; every problem
is collected as ``file:line: path: message`` instead of stopping at the first. The checked
result is plain Python data plus a ``path -> line`` table for later semantic checks. The same
tree renders as JSON Schema (draft 2020-12), so the loader and editors agree.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = [
    "NAME_PATTERN",
    "AnyOf",
    "Bool",
    "Checked",
    "Int",
    "Key",
    "ListOf",
    "MapOf",
    "Node",
    "Num",
    "Obj",
    "Ref",
    "Str",
    "check_yaml",
    "json_schema",
    "not_one_of",
    "obj",
    "unknown_key",
    "unknown_name",
]

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


@dataclasses.dataclass(frozen=True)
class Str:
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    description: str = ""
    label: str = ""  # how error messages name this kind of text


@dataclasses.dataclass(frozen=True)
class Int:
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Num:
    minimum: float | None = None
    exclusive_minimum: float | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Bool:
    description: str = ""


@dataclasses.dataclass(frozen=True)
class ListOf:
    item: Node
    min_items: int = 0
    max_items: int | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class MapOf:
    value: Node
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Key:
    node: Node
    required: bool = False


@dataclasses.dataclass(frozen=True)
class Obj:
    keys: Mapping[str, Key]
    description: str = ""


@dataclasses.dataclass(frozen=True)
class AnyOf:
    """Alternatives told apart by YAML kind; mappings by which option's required key is present."""

    options: tuple[Node, ...]
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Ref:
    name: str


Node = Str | Int | Num | Bool | ListOf | MapOf | Obj | AnyOf | Ref


def obj(doc: str, /, **keys: Node | Key) -> Obj:
    """An object node; plain nodes are optional keys, :class:`Key` marks required ones."""
    return Obj({k: v if isinstance(v, Key) else Key(v) for k, v in keys.items()}, doc)


@dataclasses.dataclass
class Checked:
    """The checked document, each path's line, and every problem found."""

    data: dict[str, Any]
    lines: dict[str, int]
    errors: list[str]
    filename: str
    broken: set[str] = dataclasses.field(default_factory=set)  # paths whose value was rejected

    def line(self, path: str) -> int:
        while path and path not in self.lines:
            path = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
        return self.lines.get(path, 1)

    def is_broken(self, path: str) -> bool:
        """Whether ``path`` was rejected already (so references to it add no second error)."""
        return path in self.broken

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.filename}:{self.line(path)}: {path}: {message}")


_MISSING = object()


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

    def _scalar(self, spec: Str | Int | Num | Bool, node: yaml.Node, path: str) -> object:
        if not isinstance(node, yaml.ScalarNode):
            return self.fail(node, path, f"expected {_kind(spec)}, got a {_yaml_kind(node)}")
        value = self.constructor.construct_object(node)
        if isinstance(spec, Str):
            return self._string(spec, value, node, path)
        if isinstance(spec, Bool):
            ok = isinstance(value, bool)
        elif isinstance(spec, Int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            return self.fail(node, path, f"expected {_kind(spec)}, got {value!r}")
        return self._bounds(spec, value, node, path)

    def _string(self, spec: Str, value: object, node: yaml.Node, path: str) -> object:
        if not isinstance(value, str):
            return self.fail(node, path, f"expected a string, got {value!r}")
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
            key = self.constructor.construct_object(key_node)
            sub = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                self.fail(key_node, path, f"keys must be strings, got {key!r}")
                continue
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
            for name in _required(spec):
                if name not in seen:
                    self.fail(node, path, f"missing required key {name!r}")
                    broken = True
        return _MISSING if broken else result

    def _any(self, spec: AnyOf, node: yaml.Node, path: str) -> object:
        if isinstance(node, yaml.MappingNode):
            present = {self.constructor.construct_object(k) for k, _ in node.value}
            for option in spec.options:
                if isinstance(option, Obj) and any(
                    k.required and name in present for name, k in option.keys.items()
                ):
                    return self.check(option, node, path)
            wanted = [n for o in spec.options if isinstance(o, Obj) for n in _required(o)]
            return self.fail(node, path, f"expected a mapping with one of {', '.join(wanted)}")
        if isinstance(node, yaml.ScalarNode):
            value = self.constructor.construct_object(node)
            for option in spec.options:
                if _matches(option, value):
                    return self.check(option, node, path)
        kinds = dict.fromkeys(_kind(o) for o in spec.options)
        return self.fail(node, path, f"expected {' or '.join(kinds)}, got a {_yaml_kind(node)}")


def _value_spec(spec: Obj | MapOf, key: str) -> Node:
    return spec.value if isinstance(spec, MapOf) else spec.keys[key].node


def _required(spec: Obj) -> list[str]:
    return [name for name, k in spec.keys.items() if k.required]


def _matches(spec: Node, value: object) -> bool:
    if isinstance(value, bool):
        return isinstance(spec, Bool)
    if isinstance(value, int | float):
        return isinstance(spec, Num | Int)
    return isinstance(value, str) and isinstance(spec, Str)


def _kind(spec: Node) -> str:
    if isinstance(spec, Obj) and spec.keys and all(k.required for k in spec.keys.values()):
        return "a mapping"
    if isinstance(spec, Str) and spec.label:
        return spec.label
    kinds = {Str: "a string", Int: "an integer", Num: "a number", Bool: "true or false"}
    kinds |= {ListOf: "a list", MapOf: "a mapping", Obj: "a mapping", AnyOf: "a source"}
    return kinds.get(type(spec), "a value")


def _yaml_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    return "list" if isinstance(node, yaml.SequenceNode) else "scalar"


def not_one_of(value: object, choices: tuple[str, ...] | list[str]) -> str:
    """``'flaot32' is not one of …`` with a close match suggested."""
    text = f"{value!r} is not one of {', '.join(choices)}"
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f"{text} (did you mean {close[0]!r}?)" if close else text


def unknown_name(
    what: str, value: str, choices: tuple[str, ...] | list[str], owner: str = ""
) -> str:
    """``unknown bit 'x' of 'fault': expected one of a, b (did you mean 'y'?)``."""
    close = difflib.get_close_matches(value, list(choices), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    of = f" of {owner!r}" if owner else ""
    return f"unknown {what} {value!r}{of}: expected one of {', '.join(choices) or '(none)'}{hint}"


def unknown_key(key: str, known: Mapping[str, Key]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    return f"unknown key {key!r}{hint}"


def check_yaml(
    text: str, filename: str, schema: Node, defs: Mapping[str, Node] | None = None
) -> Checked:
    """Parse YAML text and check it against ``schema`` (``defs`` resolve :class:`Ref` s)."""
    out = Checked({}, {}, [], filename)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        out.errors.append(f"{filename}:{line}: <top>: invalid YAML: {detail}")
        return out
    if root is None:
        out.errors.append(f"{filename}:1: <top>: the map is empty")
        return out
    data = _Checker(out, defs or {}).check(schema, root, "")
    if isinstance(data, dict):
        out.data = data
    return out


def _given(schema: dict[str, Any], **keywords: Any) -> dict[str, Any]:
    """``schema`` with every keyword whose value is not None."""
    schema.update((key, value) for key, value in keywords.items() if value is not None)
    return schema


def json_schema(spec: Node) -> dict[str, Any]:
    """The JSON Schema of one node; :class:`Ref` s point into ``#/$defs``."""
    if isinstance(spec, Ref):
        return {"$ref": f"#/$defs/{spec.name}"}
    schema: dict[str, Any]
    if isinstance(spec, Str):
        enum = list(spec.enum) if spec.enum is not None else None
        schema = _given({"type": "string"}, enum=enum, pattern=spec.pattern)
    elif isinstance(spec, Int):
        schema = _given({"type": "integer"}, minimum=spec.minimum, maximum=spec.maximum)
    elif isinstance(spec, Num):
        schema = _given(
            {"type": "number"}, minimum=spec.minimum, exclusiveMinimum=spec.exclusive_minimum
        )
    elif isinstance(spec, Bool):
        schema = {"type": "boolean"}
    elif isinstance(spec, ListOf):
        schema = {"type": "array", "items": json_schema(spec.item)}
        if spec.min_items:
            schema["minItems"] = spec.min_items
        if spec.max_items is not None:
            schema["maxItems"] = spec.max_items
    elif isinstance(spec, MapOf):
        schema = {"type": "object", "additionalProperties": json_schema(spec.value)}
        schema["propertyNames"] = {"pattern": NAME_PATTERN}
    elif isinstance(spec, Obj):
        schema = {"type": "object", "additionalProperties": False}
        schema["properties"] = {name: json_schema(k.node) for name, k in spec.keys.items()}
        if required := _required(spec):
            schema["required"] = required
    else:
        schema = {"anyOf": [json_schema(option) for option in spec.options]}
    if getattr(spec, "description", ""):
        schema["description"] = spec.description
    return schema
