"""Fast reads: address lookup built once, each point's encoding memoised on its inputs.

A point's encoding is a pure function of the cache entries of the datapoints it reads and of
whether each is stale (entries are immutable: every report makes a new one). So it is kept
with that key and rebuilt only when a report or a staleness flip changes the key; staleness
itself (link state, ``max_age_s``) is checked on every request, never memoised. Points that
read live status values, or a source this module does not know to be pure, are encoded on
every request.

A value that does not fit its point (its format, or the min/max the map declares) is clamped
and counted, or with ``saturate: exception`` answered with 0x04 SERVER_DEVICE_FAILURE: the
request is valid (so not 0x03, which would tell the client to fix its request) and the link
is fine (so not 0x0B); the gateway cannot produce a truthful value for it right now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.registers import Number, encode_value, nan_words
from gateway.regmap.specs import (
    ConstSource,
    DatapointSpec,
    DerivedSource,
    DpSource,
    PointSpec,
    RegisterMap,
    SaturationSource,
    Source,
    StatusSource,
)
from gateway.regmap.vocab import Format, Saturate, StalePolicy
from gateway.unit.cache import CacheSnapshot
from gateway.unit.values import StatusValues, read_source

__all__ = ["Encoding", "PointIndex", "PointSlot", "encode_point"]

Encoding = tuple[tuple[int, ...] | ExceptionCode, bool]  # words or exception, saturated

_MEMO_LIMIT = 4096  # distinct (table, address, count) requests remembered


def encode_point(
    point: PointSpec,
    datapoints: Mapping[str, DatapointSpec],
    snapshot: CacheSnapshot,
    status: StatusValues,
) -> Encoding:
    """The point's words (or why there are none) and whether the value saturated."""
    source = point.source
    if isinstance(source, SaturationSource):
        return _encode_saturation(point, source, datapoints, snapshot, status)
    if isinstance(source, StatusSource) and point.format is not Format.STRING:
        # encode_value takes the raw number: no exact fraction is built for a live value
        raw = status.get(source.name)
        return _encode_reading(point, raw, raw is None, False)
    reading = read_source(source, datapoints, snapshot, status)
    return _encode_reading(point, reading.value, reading.stale, reading.clamped)


def _encode_reading(
    point: PointSpec, value: Number | bool | str | None, stale: bool, clamped: bool
) -> Encoding:
    if stale or value is None:
        if point.stale is StalePolicy.NAN:
            return nan_words(point.format, point.word_order), False
        if point.stale is StalePolicy.ZERO:
            value = "" if point.format is Format.STRING else 0
        elif point.stale is StalePolicy.EXCEPTION or value is None:
            return ExceptionCode.GATEWAY_TARGET_NO_RESPONSE, False
    if point.table.is_bits:
        return (1 if value else 0,), False
    encoded = encode_value(
        value,
        point.format,
        scale=point.scale,
        word_order=point.word_order,
        registers=point.registers,
    )
    saturated = encoded.saturated or clamped
    if saturated and point.saturate is Saturate.EXCEPTION:
        return ExceptionCode.SERVER_DEVICE_FAILURE, True
    return encoded.words, saturated


def _encode_saturation(
    point: PointSpec,
    source: SaturationSource,
    datapoints: Mapping[str, DatapointSpec],
    snapshot: CacheSnapshot,
    status: StatusValues,
) -> Encoding:
    """1 while the watched point reads a clamped (or refused) value, else 0."""
    assert source.target is not None  # the loader resolves every watched point
    _, saturated = encode_point(source.target, datapoints, snapshot, status)
    if point.table.is_bits:
        return (int(saturated),), False
    return encode_value(int(saturated), point.format, word_order=point.word_order).words, False


@dataclasses.dataclass(slots=True, eq=False)
class PointSlot:
    """One point, what its encoding depends on, and its last encoding."""

    point: PointSpec
    inputs: tuple[tuple[int, float | None], ...] | None  # (dpid, max_age_s); None: no memo
    key: tuple[object, ...] | None = None
    encoding: Encoding | None = None

    def memo_key(self, snapshot: CacheSnapshot) -> tuple[object, ...]:
        """Each input's current entry and staleness: equal keys, equal encodings."""
        assert self.inputs is not None
        key: list[object] = []
        for dpid, max_age_s in self.inputs:
            key.append(snapshot.entries.get(dpid))
            key.append(snapshot.is_stale(dpid, max_age_s))
        return tuple(key)

    def encode(self, snapshot: CacheSnapshot, encode: Callable[[PointSpec], Encoding]) -> Encoding:
        """The memoised encoding if its inputs are unchanged, else a fresh one."""
        key = self.memo_key(snapshot)
        if self.encoding is None or key != self.key:
            self.encoding = encode(self.point)
            self.key = key
        return self.encoding


class PointIndex:
    """Which points cover an address range, looked up in a per-address dict."""

    def __init__(self, regmap: RegisterMap) -> None:
        self._owner: dict[Table, dict[int, PointSlot]] = {}
        for table in Table:
            owner: dict[int, PointSlot] = {}
            for point in regmap.points(table):
                slot = PointSlot(point, _inputs(point.source, regmap.datapoints))
                for address in range(point.address, point.end):
                    owner[address] = slot
            self._owner[table] = owner
        self._ranges: dict[tuple[Table, int, int], tuple[PointSlot, ...] | None] = {}

    def covering(self, table: Table, address: int, count: int) -> tuple[PointSlot, ...] | None:
        """The points covering ``address .. address+count-1`` in order; None at a gap."""
        request = (table, address, count)
        try:
            return self._ranges[request]
        except KeyError:
            pass
        found = self._walk(table, address, count)
        if len(self._ranges) >= _MEMO_LIMIT:
            self._ranges.clear()  # a client sweeping addresses must not grow this forever
        self._ranges[request] = found
        return found

    def _walk(self, table: Table, address: int, count: int) -> tuple[PointSlot, ...] | None:
        owner = self._owner[table]
        found: list[PointSlot] = []
        position = address
        while position < address + count:
            slot = owner.get(position)
            if slot is None:
                return None
            found.append(slot)
            position = slot.point.end
        return tuple(found)


def _inputs(
    source: Source, datapoints: Mapping[str, DatapointSpec]
) -> tuple[tuple[int, float | None], ...] | None:
    """The (dpid, max_age_s) a pure source reads; None if it reads status or is unknown."""
    if isinstance(source, ConstSource):
        return ()
    if isinstance(source, DpSource):
        spec = datapoints[source.datapoint]
        return ((spec.dpid, spec.max_age_s),)
    if isinstance(source, SaturationSource) and source.target is not None:
        return _inputs(source.target.source, datapoints)
    if isinstance(source, DerivedSource):
        found: list[tuple[int, float | None]] = []
        for arg in source.args:
            inputs = _inputs(arg, datapoints)
            if inputs is None:
                return None
            found.extend(i for i in inputs if i not in found)
        return tuple(found)
    return None
