"""A sans-IO line scanner for field tools: good frames, bad checksums and skipped bytes, in order.

A passive tap has no link: the scanner runs the link's decoder and reports every byte exactly
once, in order: in a frame, in a bad-checksum frame, or in a skipped run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from gateway.tuya.protocol import MAX_DATA_LEN, BadChecksum, Frame, FrameDecoder, Skipped

__all__ = ["BadChecksum", "LineEvent", "LineScanner", "LineTotals", "Skipped"]

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
    """``feed(bytes)``, then ``events()``; ``idle()`` when the line goes quiet.

    The link's own :class:`FrameDecoder` decides; its ``on_drop`` hands over what it drops,
    in order with the frames.
    """

    def __init__(self, max_data_len: int = MAX_DATA_LEN) -> None:
        self._dropped: list[LineEvent] = []
        self._decoder = FrameDecoder(max_data_len, on_drop=self._dropped.append)

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def events(self) -> Iterator[LineEvent]:
        """Every complete event; an incomplete frame stays buffered."""
        return self._in_order(self._decoder)

    def idle(self) -> Iterator[LineEvent]:
        """The line went quiet: a half frame will never complete; rescan what follows it."""
        return self._in_order(self._decoder.idle())

    def _in_order(self, frames: Iterator[Frame]) -> Iterator[LineEvent]:
        for frame in frames:
            yield from self._drops()
            yield frame
        yield from self._drops()

    def _drops(self) -> Iterator[LineEvent]:
        while self._dropped:
            yield self._dropped.pop(0)
