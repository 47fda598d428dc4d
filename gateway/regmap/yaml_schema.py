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
    "json_schema",
    "kind_of",
    "not_one_of",
    "obj",
    "required_keys",
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
    return Obj({str(k): v if isinstance(v, Key) else Key(v) for k, v in keys.items()}, doc)


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


def required_keys(spec: Obj) -> list[str]:
    """The names of the keys ``spec`` requires."""
    return [name for name, k in spec.keys.items() if k.required]


def kind_of(spec: Node) -> str:
    """How messages name what ``spec`` expects: ``an integer``, ``a mapping``…"""
    if isinstance(spec, Obj) and spec.keys and all(k.required for k in spec.keys.values()):
        return "a mapping"
    if isinstance(spec, Str) and spec.label:
        return spec.label
    kinds = {Str: "a string", Int: "an integer", Num: "a number", Bool: "true or false"}
    kinds |= {ListOf: "a list", MapOf: "a mapping", Obj: "a mapping", AnyOf: "a source"}
    return kinds.get(type(spec), "a value")


def not_one_of(value: object, choices: tuple[str, ...] | list[str]) -> str:
    """``'flaot32' is not one of …`` with a close match suggested."""
    choices = [str(choice) for choice in choices]  # StrEnum members read as their text
    text = f"{value!r} is not one of {', '.join(choices)}"
    close = difflib.get_close_matches(str(value), choices, n=1)
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
        if required := required_keys(spec):
            schema["required"] = required
    else:
        schema = {"anyOf": [json_schema(option) for option in spec.options]}
    if getattr(spec, "description", ""):
        schema["description"] = spec.description
    return schema
