"""JSON-lines capture of TuyaMCU frames in both directions, and its reader.

One object per line::

    {"mono": 812.25, "wall": "2026-11-24T05:01:02.123456+00:00", "dir": "rx",
     "hex": "55aa0307...", "summary": "DP_REPORT v3 dp16 bool=True"}

``dir`` is ``rx`` for frames from the MCU and ``tx`` for frames the gateway sent. Files rotate
at a size limit to ``PATH.1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from gateway.errors import ConfigError
from gateway.tuya.protocol import Frame, FrameDecoder

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DIRECTIONS",
    "CaptureRecord",
    "CaptureWriter",
    "capture_size_mb",
    "read_capture",
]

DIRECTIONS = ("rx", "tx")
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # --capture-max-mb 50: a few days of a busy line


def capture_size_mb(text: str) -> float:
    """``--capture-max-mb``: a finite size above 0 (argparse type; exit 2 otherwise)."""
    try:
        size = float(text)
    except ValueError:
        size = math.nan
    if not 0 < size < math.inf:
        raise argparse.ArgumentTypeError(f"expected megabytes above 0, got {text!r}")
    return size


_TAIL = 64 * 1024  # a capture line is far shorter: its last newline is in here


@dataclasses.dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One captured frame: monotonic and wall time, direction, the frame and its summary."""

    mono: float
    wall: str
    direction: str
    frame: Frame
    summary: str


class CaptureWriter:
    """Appends one JSON line per frame, each in a single write so ``tail -f`` sees whole lines.

    At ``max_bytes`` the file moves to ``PATH.1`` (replacing the previous one) and a new file
    starts: a line is never split between files. A half line left by a crash or power loss is
    cut off when the file is opened again, so the capture stays readable.
    """

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.rotations = 0
        self._handle: BinaryIO | None = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._handle = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - closed by close()
        self._size = self._handle.seek(0, os.SEEK_END)
        if self._size:
            self._handle.seek(max(0, self._size - _TAIL))
            tail = self._handle.read()
            if not tail.endswith(b"\n"):
                self._size -= len(tail) - (tail.rfind(b"\n") + 1)
                self._handle.truncate(self._size)

    def record(self, direction: str, frame: Frame) -> None:
        if self._handle is None:
            return
        item = {
            "mono": time.monotonic(),
            "wall": datetime.now(UTC).isoformat(),
            "dir": direction,
            "hex": frame.encode().hex(),
            "summary": frame.describe(),
        }
        line = (json.dumps(item, separators=(",", ":")) + "\n").encode()
        if self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        assert self._handle is not None
        self._handle.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        assert self._handle is not None
        self._handle.close()
        os.replace(self.path, self.path + ".1")
        self.rotations += 1
        self._open()

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
    mono = float(item["mono"])
    if not math.isfinite(mono):
        raise ValueError(f"mono must be a finite number, got {item['mono']!r}")
    return CaptureRecord(
        mono=mono,
        wall=str(item.get("wall", "")),
        direction=direction,
        frame=frames[0],
        summary=str(item.get("summary", frames[0].describe())),
    )


def _open_regular(path: str) -> BinaryIO:
    """A regular file opened for reading; /dev/zero, a FIFO or a directory is a ConfigError."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before fstat can refuse it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read the capture: {err.strerror or err}"]) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError([f"{path}: cannot read the capture: not a regular file"])
    return os.fdopen(fd, "rb")


def read_capture(path: str) -> Iterator[CaptureRecord]:
    """The records of a capture file; a line that does not parse is a ConfigError.

    Memory stays bounded whatever the file holds: a line longer than any record is refused.
    """
    with _open_regular(path) as handle:
        for number, line in enumerate(iter(lambda: handle.readline(_TAIL + 1), b""), start=1):
            if len(line) > _TAIL:
                raise ConfigError([f"{path}:{number}: not a capture record: over {_TAIL} bytes"])
            if not line.strip():
                continue
            try:
                record = _parse_line(line.decode("utf-8"))
            except (ValueError, KeyError, TypeError, RecursionError) as err:
                raise ConfigError([f"{path}:{number}: not a capture record: {err}"]) from None
            yield record
