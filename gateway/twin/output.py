"""The MCU twin's UART output: frames leave in order through the fault injection."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import random
from collections.abc import Callable

from gateway.tuya.protocol import Frame

__all__ = ["BYTE_TIME_S", "TwinFaults", "TwinOutput"]

_LOGGER = logging.getLogger(__name__)

BYTE_TIME_S = 0.00104  # one byte at 9600 8N1: the gap between bytes when split_bytes is on
_TIMER_SLACK_S = 1e-4  # a loop timer may fire a hair before its due time
_GARBAGE_MAX = 8


@dataclasses.dataclass(slots=True)
class TwinFaults:
    """Fault injection, settable at run time; probabilities apply to every frame sent."""

    garbage: bool = False  # 1-8 bytes of noise before each frame
    bad_checksum: float = 0.0
    drop_replies: float = 0.0
    delay_s: float = 0.0  # added before each frame leaves
    silent: bool = False  # hung MCU: hears nothing, says nothing
    split_bytes: bool = False  # one byte per write, BYTE_TIME_S apart
    # the SDK's parser and 24-byte buffer (twin.sdk_uart): 25-31 data bytes wedge input until
    # a reboot, 32+ and version != 0x00 are skipped
    small_rx_buffer: bool = False


class TwinOutput:
    """Applies ``faults`` to each frame and writes the bytes in order, delayed or split."""

    def __init__(self, seed: int = 0) -> None:
        self.faults = TwinFaults()
        self.frames_sent = 0
        self.frames_dropped = 0
        self.checksums_corrupted = 0
        self.garbage_bytes_sent = 0
        self._rng = random.Random(seed)
        self._send: Callable[[bytes], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._tail_due = 0.0
        self._drain_handle: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self._send is not None

    def attached_to(self, send: Callable[[bytes], None]) -> bool:
        return self._send == send

    def attach(self, loop: asyncio.AbstractEventLoop, send: Callable[[bytes], None]) -> None:
        self.detach()
        self._loop = loop
        self._send = send

    def detach(self) -> None:
        self._send = None
        self._queue.clear()
        self._tail_due = 0.0
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None

    def send_frame(self, frame: Frame) -> None:
        faults = self.faults
        if self._send is None or faults.silent or self._chance(faults.drop_replies):
            self.frames_dropped += 1
            _LOGGER.debug("twin: dropped %s", frame.describe())
            return
        data = frame.encode()
        if self._chance(faults.bad_checksum):
            self.checksums_corrupted += 1
            data = data[:-1] + bytes(((data[-1] + 1) & 0xFF,))
        if faults.garbage:
            # no 0x55 in the noise: a phantom header would only delay the next frame
            size = self._rng.randint(1, _GARBAGE_MAX)
            data = bytes(self._rng.randint(0x56, 0xFF) for _ in range(size)) + data
            self.garbage_bytes_sent += size
        self.frames_sent += 1
        _LOGGER.debug("twin -> %s", frame.describe())
        self._enqueue(data)

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability

    def _enqueue(self, data: bytes) -> None:
        assert self._loop is not None
        due = max(self._loop.time() + self.faults.delay_s, self._tail_due)
        if self.faults.split_bytes:
            for i in range(len(data)):
                self._queue.append((due + i * BYTE_TIME_S, data[i : i + 1]))
            self._tail_due = due + len(data) * BYTE_TIME_S
        else:
            self._queue.append((due, data))
            self._tail_due = due
        self._drain()

    def _drain(self) -> None:
        assert self._loop is not None
        now = self._loop.time() + _TIMER_SLACK_S
        while self._queue and self._queue[0][0] <= now and self._send is not None:
            self._send(self._queue.popleft()[1])
        if self._queue and self._send is not None and self._drain_handle is None:
            self._drain_handle = self._loop.call_at(self._queue[0][0], self._on_timer)

    def _on_timer(self) -> None:
        self._drain_handle = None
        self._drain()
