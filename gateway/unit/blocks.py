"""Block reads: a request's answer kept whole while none of its inputs can have changed.

Every report makes a new entries mapping and a link state change a new state, so a block
whose points read only datapoints and constants is answered again as long as the snapshot
holds the same mapping and state and no input has crossed its ``max_age_s`` since (the
block knows the earliest moment one can). Then a read costs a few comparisons, whatever the
map's size. Points that show live status values are encoded on every request, each from one
status lookup; an unchanged value (a string, a counter at rest) reuses its last words.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.specs import PointSpec, RegisterMap, StatusSource
from gateway.tuya.link import LinkState
from gateway.unit.cache import CacheSnapshot, DpEntry
from gateway.unit.reads import Encoding, PointIndex, PointSlot, encode_point
from gateway.unit.values import StatusValues

__all__ = ["Answer", "Block", "BlockReader"]

Answer = tuple[list[int] | ExceptionCode, tuple[PointSpec, ...]]  # words, saturated points
Status = Callable[[CacheSnapshot], StatusValues]

_MEMO_LIMIT = 4096  # distinct (table, address, count) requests remembered
_EDGE_MARGIN_S = 1e-6  # a memo ends this much before an input may turn stale (float rounding)
_SHOWN_LIVE: Encoding = ((), False)  # the place of a live point, encoded on every request


@dataclasses.dataclass(slots=True, eq=False)
class _Live:
    """A point shown from live status: its last value and words."""

    slot: PointSlot
    name: str | None  # the status value it shows, if it shows one as it is
    last: tuple[type, object] | None = None
    encoding: Encoding | None = None

    def encode(
        self, regmap: RegisterMap, snapshot: CacheSnapshot, status: StatusValues
    ) -> Encoding:
        point = self.slot.point
        if self.name is None:
            return encode_point(point, regmap.datapoints, snapshot, status)
        raw = status.get(self.name)
        key = (type(raw), raw)
        if self.encoding is None or key != self.last:
            self.encoding = encode_point(point, regmap.datapoints, snapshot, status)
            self.last = key
        return self.encoding


@dataclasses.dataclass(slots=True, eq=False)
class Block:
    """The points of one request, and its last answer with what that answer depended on."""

    slots: tuple[PointSlot | _Live, ...]
    skip: int
    count: int
    entries: Mapping[int, DpEntry] | None = None
    link_state: LinkState | None = None
    since: float = math.inf
    until: float = -math.inf
    encodings: list[Encoding] = dataclasses.field(default_factory=list)
    answer: Answer | None = None  # kept when no point is live
    template: list[int] | None = None  # the other points' words, when none failed or clipped
    live_at: tuple[tuple[int, _Live], ...] = ()  # where each live point's words go

    def read(self, regmap: RegisterMap, snapshot: CacheSnapshot, status: Status) -> Answer:
        """Words (or the first point's exception) and the points that saturated."""
        if not (
            snapshot.entries is self.entries
            and snapshot.link_state is self.link_state
            and self.since <= snapshot.taken_at <= self.until
        ):
            self._refresh(regmap, snapshot)
        elif self.answer is not None:
            words, saturated = self.answer
            return (words if isinstance(words, ExceptionCode) else list(words)), saturated
        if self.template is not None and self.live_at:
            return self._splice(regmap, snapshot, status(snapshot))
        answer = self._assemble(regmap, snapshot, status)
        if not self.live_at:
            self.answer = answer
        return answer

    def _refresh(self, regmap: RegisterMap, snapshot: CacheSnapshot) -> None:
        def encode(point: PointSpec) -> Encoding:
            return encode_point(point, regmap.datapoints, snapshot, {})

        self.encodings = [
            _SHOWN_LIVE if isinstance(s, _Live) else s.encode(snapshot, encode) for s in self.slots
        ]
        self.entries, self.link_state = snapshot.entries, snapshot.link_state
        self.since, self.until = snapshot.taken_at, _fresh_until(self.slots, snapshot)
        self.answer, self.template, live_at, offset = None, [], [], 0
        for slot, (encoded, clipped) in zip(self.slots, self.encodings, strict=True):
            point = slot.slot.point if isinstance(slot, _Live) else slot.point
            if isinstance(slot, _Live):
                live_at.append((offset, slot))
                encoded = (0,) * (point.end - point.address)
            elif clipped or isinstance(encoded, ExceptionCode):
                self.template = None  # rare: the slow path keeps the exact order of effects
            if self.template is not None and not isinstance(encoded, ExceptionCode):
                self.template.extend(encoded)
            offset += point.end - point.address
        self.live_at = tuple(live_at)

    def _splice(self, regmap: RegisterMap, snapshot: CacheSnapshot, values: StatusValues) -> Answer:
        assert self.template is not None
        words = self.template.copy()
        saturated: list[PointSpec] = []
        for offset, live in self.live_at:
            encoded, clipped = live.encode(regmap, snapshot, values)
            if isinstance(encoded, ExceptionCode):
                return encoded, tuple(saturated)
            if clipped:
                saturated.append(live.slot.point)
            words[offset : offset + len(encoded)] = encoded
        return words[self.skip : self.skip + self.count], tuple(saturated)

    def _assemble(self, regmap: RegisterMap, snapshot: CacheSnapshot, status: Status) -> Answer:
        words: list[int] = []
        saturated: list[PointSpec] = []
        values: StatusValues | None = None
        for slot, encoding in zip(self.slots, self.encodings, strict=True):
            if isinstance(slot, _Live):
                if values is None:
                    values = status(snapshot)  # built once, only when a point shows one
                encoding = slot.encode(regmap, snapshot, values)
            encoded, clipped = encoding
            if isinstance(encoded, ExceptionCode):
                return encoded, tuple(saturated)
            if clipped:
                saturated.append(slot.slot.point if isinstance(slot, _Live) else slot.point)
            words.extend(encoded)
        return words[self.skip : self.skip + self.count], tuple(saturated)


def _fresh_until(slots: tuple[PointSlot | _Live, ...], snapshot: CacheSnapshot) -> float:
    """The latest time the block's memo holds: before the first fresh input may turn stale."""
    until = math.inf
    if not snapshot.link_ready:
        return until  # every input stays stale until the link state changes
    for slot in slots:
        for dpid, max_age_s in () if isinstance(slot, _Live) else slot.inputs or ():
            entry = snapshot.entries.get(dpid)
            if entry is None or max_age_s is None or snapshot.is_stale(dpid, max_age_s):
                continue  # never reported, never ages, or already stale: stays so
            until = min(until, entry.timestamp + max_age_s - _EDGE_MARGIN_S)
    return until


class BlockReader:
    """Requests to :class:`Block` objects, made on first use and kept."""

    def __init__(self, regmap: RegisterMap) -> None:
        self._regmap = regmap
        self._index = PointIndex(regmap)
        self._blocks: dict[tuple[Table, int, int], Block | None] = {}
        self._live: dict[int, _Live] = {}

    def read(
        self, table: Table, address: int, count: int, snapshot: CacheSnapshot, status: Status
    ) -> Answer | None:
        """The answer for one request; None when an address in it has no point."""
        request = (table, address, count)
        try:
            block = self._blocks[request]
        except KeyError:
            block = self._make(table, address, count)
        if block is None:
            return None
        return block.read(self._regmap, snapshot, status)

    def _make(self, table: Table, address: int, count: int) -> Block | None:
        slots = self._index.covering(table, address, count)
        block = None
        if slots is not None:
            parts = tuple(s if s.inputs is not None else self._live_slot(s) for s in slots)
            block = Block(parts, address - slots[0].point.address, count)
        if len(self._blocks) >= _MEMO_LIMIT:
            self._blocks.clear()  # a client sweeping addresses must not grow this forever
        self._blocks[table, address, count] = block
        return block

    def _live_slot(self, slot: PointSlot) -> _Live:
        live = self._live.get(id(slot))
        if live is None:
            source = slot.point.source
            live = _Live(slot, source.name if isinstance(source, StatusSource) else None)
            self._live[id(slot)] = live
        return live
