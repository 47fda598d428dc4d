"""Reading YAML files safely: a bounded read, then a bounded, tag-free composition into nodes.

Maps and gateway files are written by people and by tools; a broken or hostile one must end
in a ``file:line`` message in bounded time and memory, never in a traceback, a hang or an
exhausted machine. So the file must be a regular file of at most :data:`MAX_FILE_BYTES`
(``/dev/zero`` or a FIFO is refused without reading it), and the nodes are composed here
without recursion: at most :data:`MAX_DEPTH` levels of nesting, at most :data:`MAX_NODES`
nodes once every alias is expanded (an alias bomb of a few hundred bytes is refused while it
is composed), no alias to a node that is still open (a cycle), and no tags at all.
"""

from __future__ import annotations

import os
import stat
from typing import Any

import yaml

from gateway.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "compose", "compose_checked", "read_text"]

MAX_FILE_BYTES = 1 << 20  # the largest shipped map is 10 kB
MAX_DEPTH = 50  # the deepest shipped map nests 9 levels; the checker recurses once a level
MAX_NODES = 100_000  # after alias expansion; the largest shipped map has about 2,000


def read_text(path: str, what: str = "the file") -> str:
    """The text of a regular UTF-8 file of at most MAX_FILE_BYTES; ConfigError otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ConfigError([f"{path}: cannot read {what}: {err.strerror or err}"]) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # checked before fdopen, which refuses a directory
        os.close(fd)
        raise ConfigError([f"{path}:1: <top>: {what} is not a regular file"])
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError([_too_big(path, what, info.st_size)])
        data = handle.read(MAX_FILE_BYTES + 1)  # the file may grow after fstat
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([_too_big(path, what, len(data))])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: <top>: {what} is not UTF-8 text"]) from None


def _too_big(path: str, what: str, size: int) -> str:
    return f"{path}:1: <top>: {what} has {size} bytes, more than the limit of {MAX_FILE_BYTES}"


class _Composer:
    """Events to nodes with an explicit stack, counting depth and expanded size."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.stack: list[yaml.CollectionNode] = []
        self.pending_key: list[yaml.Node | None] = []
        self.sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, closed nodes only
        self.open_sizes: list[int] = []
        self.anchors: dict[str, yaml.Node] = {}
        self.total = 0
        self.root: yaml.Node | None = None
        self.documents = 0

    def fail(self, event: Any, message: str) -> ConfigError:
        return ConfigError([f"{self.filename}:{event.start_mark.line + 1}: <top>: {message}"])

    def event(self, event: Any, resolver: Any) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.fail(event, "one YAML document expected, found another")
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event)
        elif isinstance(event, yaml.ScalarEvent):
            self.scalar(event, resolver)
        elif isinstance(event, yaml.CollectionStartEvent):
            self.open(event, resolver)
        elif isinstance(event, yaml.CollectionEndEvent):
            self.close(event)

    def scalar(self, event: Any, resolver: Any) -> None:
        self.no_tag(event)
        tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        self.anchor(event, node)
        self.count(event, 1)
        self.add(node, 1)

    def no_tag(self, event: Any) -> None:
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            raise self.fail(event, f"tags are not allowed here, found {tag!r}")

    def anchor(self, event: Any, node: yaml.Node) -> None:
        if event.anchor is None:
            return
        if event.anchor in self.anchors:
            raise self.fail(event, f"anchor &{event.anchor} is defined twice")
        self.anchors[event.anchor] = node

    def alias(self, event: Any) -> None:
        node = self.anchors.get(str(event.anchor))
        if node is None:
            raise self.fail(event, f"alias *{event.anchor} names no anchor before it")
        size = self.sizes.get(id(node))
        if size is None:
            raise self.fail(event, f"alias *{event.anchor} refers to a node that contains it")
        self.count(event, size)
        self.add(node, size)

    def open(self, event: Any, resolver: Any) -> None:
        self.no_tag(event)
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(event, f"nested deeper than {MAX_DEPTH} levels")
        kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
        tag = resolver.resolve(kind, None, event.implicit)
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        self.anchor(event, node)
        self.count(event, 1)
        self.stack.append(node)
        self.pending_key.append(None)
        self.open_sizes.append(1)

    def close(self, event: Any) -> None:
        node = self.stack.pop()
        self.pending_key.pop()
        node.end_mark = event.end_mark
        size = self.open_sizes.pop()
        self.sizes[id(node)] = size
        self.add(node, size)  # counted already, node by node

    def count(self, event: Any, size: int) -> None:
        self.total += size
        if self.total > MAX_NODES:
            raise self.fail(event, f"more than {MAX_NODES} nodes once aliases are expanded")

    def add(self, node: yaml.Node, size: int) -> None:
        if isinstance(node, yaml.ScalarNode):
            self.sizes[id(node)] = 1
        if not self.stack:
            self.root = node
            return
        self.open_sizes[-1] += size
        parent = self.stack[-1]
        if isinstance(parent, yaml.SequenceNode):
            parent.value.append(node)
        elif self.pending_key[-1] is None:
            self.pending_key[-1] = node
        else:
            parent.value.append((self.pending_key[-1], node))
            self.pending_key[-1] = None


def compose(text: str, filename: str) -> yaml.Node | None:
    """The document's root node (None if empty); ConfigError past a limit, yaml.YAMLError if bad."""
    loader: Any = yaml.SafeLoader(text)  # not the C parser: its messages differ
    composer = _Composer(filename)
    try:
        while loader.check_event():
            composer.event(loader.get_event(), loader)
    finally:
        loader.dispose()
    return composer.root


def compose_checked(text: str, filename: str) -> yaml.Node | None:
    """:func:`compose`, with invalid YAML a ConfigError ``file:line: <top>: invalid YAML: ...``."""
    try:
        return compose(text, filename)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(err, "problem", None) or str(err)
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError([f"{filename}:{line}: <top>: invalid YAML: {detail}"]) from None
