"""A sans-IO line scanner for field tools: good frames, bad checksums and skipped bytes, in order.

A passive tap has no link and no decoder: the scanner follows the decoder's rules (resync at
the next ``55 AA``, a length over the limit is noise, an idle line ends a half frame) and
reports every byte exactly once: in a frame, in a bad-checksum frame, or in a skipped run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from gateway.tuya.protocol import (
    HEADER,
    MAX_DATA_LEN,
    BadChecksum,
    Frame,
    Skipped,
    checksum,
    hidden_frame,
)

__all__ = ["BadChecksum", "LineEvent", "LineScanner", "LineTotals", "Skipped"]

_HEADER_LEN = 6  # 55 AA ver cmd len_hi len_lo


LineEvent = Frame | Skipped | BadChecksum


@dataclasses.dataclass(slots=True)
class LineTotals:
    """What a line carried so far."""

    frames: int = 0
    bad_checksums: int = 0
    skipped_bytes: int = 0
    skipped_runs: int = 0

    def count(self, event: LineEvent) -> None:
        if isinstance(event, Frame):
            self.frames += 1
        elif isinstance(event, BadChecksum):
            self.bad_checksums += 1
        else:
            self.skipped_bytes += len(event.data)
            self.skipped_runs += 1


class LineScanner:
    """``feed(bytes)``, then ``events()``; ``idle()`` when the line goes quiet."""

    def __init__(self, max_data_len: int = MAX_DATA_LEN) -> None:
        self.max_data_len = max_data_len
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def events(self) -> Iterator[LineEvent]:
        """Every complete event; an incomplete frame stays buffered."""
        while (event := self._next()) is not None:
            yield event

    def idle(self) -> Iterator[LineEvent]:
        """The line went quiet: a half frame will never complete; rescan what follows it."""
        yield from self.events()
        while self._buffer:
            start = self._buffer.find(HEADER, 1)
            cut = len(self._buffer) if start == -1 else start
            yield self._take_skipped(cut, "incomplete frame")
            yield from self.events()

    def _take_skipped(self, count: int, why: str) -> Skipped:
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return Skipped(data, why)

    def _next(self) -> LineEvent | None:
        buf = self._buffer
        start = buf.find(HEADER)
        if start != 0:
            keep = 1 if buf.endswith(HEADER[:1]) else 0
            cut = len(buf) - keep if start == -1 else start
            return self._take_skipped(cut, "noise") if cut > 0 else None
        if len(buf) < _HEADER_LEN:
            return None
        length = (buf[4] << 8) | buf[5]
        if length > self.max_data_len:
            return self._take_skipped(self._next_header(len(buf)), f"length {length} too long")
        total = _HEADER_LEN + length + 1
        inner = hidden_frame(buf, min(total, len(buf)))
        if inner:  # a whole frame inside: the length was a phantom, as the decoder decides
            return self._take_skipped(inner, "phantom length")
        if len(buf) < total:
            return None
        if checksum(buf[: total - 1]) == buf[total - 1]:
            frame = Frame(command=buf[3], data=bytes(buf[_HEADER_LEN : total - 1]), version=buf[2])
            del buf[:total]
            return frame
        inner = self._next_header(total)
        if inner < total:  # a header inside: the length was noise, as the decoder decides
            return self._take_skipped(inner, "bad frame start")
        data = bytes(buf[:total])
        del buf[:total]
        return BadChecksum(data)

    def _next_header(self, default: int) -> int:
        found = self._buffer.find(HEADER, 1)
        return default if found == -1 else min(found, default)
