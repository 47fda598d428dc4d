"""JSON-lines capture of TuyaMCU frames in both directions, and its reader.

One object per line::

    {"mono": 812.25, "wall": "2026-11-24T05:01:02.123456+00:00", "dir": "rx",
     "hex": "55aa0307...", "summary": "DP_REPORT v3 dp16 bool=True"}

``dir`` is ``rx`` for frames from the MCU and ``tx`` for frames the gateway sent.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

from gateway.errors import ConfigError
from gateway.tuya.protocol import Frame, FrameDecoder

__all__ = ["DIRECTIONS", "CaptureRecord", "CaptureWriter", "read_capture"]

DIRECTIONS = ("rx", "tx")


@dataclasses.dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One captured frame: monotonic and wall time, direction, the frame and its summary."""

    mono: float
    wall: str
    direction: str
    frame: Frame
    summary: str


class CaptureWriter:
    """Appends one JSON line per frame; line-buffered so ``tail -f`` sees frames at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: TextIO | None = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed by close()

    def record(self, direction: str, frame: Frame) -> None:
        if self._handle is None:
            return
        line = {
            "mono": time.monotonic(),
            "wall": datetime.now(UTC).isoformat(),
            "dir": direction,
            "hex": frame.encode().hex(),
            "summary": frame.describe(),
        }
        self._handle.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _parse_line(text: str) -> CaptureRecord:
    item = json.loads(text)
    direction = str(item["dir"])
    if direction not in DIRECTIONS:
        raise ValueError(f"dir must be rx or tx, got {direction!r}")
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex(item["hex"]))
    frames = list(decoder)
    if len(frames) != 1 or decoder.buffered:
        raise ValueError(f"hex is not exactly one valid frame: {item['hex']!r}")
    return CaptureRecord(
        mono=float(item["mono"]),
        wall=str(item.get("wall", "")),
        direction=direction,
        frame=frames[0],
        summary=str(item.get("summary", frames[0].describe())),
    )


def read_capture(path: str) -> Iterator[CaptureRecord]:
    """The records of a capture file; a line that does not parse is a ConfigError."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = _parse_line(line)
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError([f"{path}:{number}: not a capture record: {err}"]) from err
            yield record
