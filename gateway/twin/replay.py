"""ReplayPeer: an MCU peer that plays the MCU side of a capture file back to a gateway."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.tuya.capture import CaptureRecord, read_capture
from gateway.tuya.protocol import Frame, FrameDecoder

__all__ = ["ReplayPeer"]

_LOGGER = logging.getLogger(__name__)


class ReplayPeer:
    """An MCU peer that answers each WiFi-side frame with the MCU frames recorded after it.

    The capture is cut into answer groups: the MCU frames between one WiFi frame and the
    next belong to that WiFi frame's command. Each command's groups are played in order and
    the last one repeats (heartbeats go on for ever). MCU frames recorded before the first
    WiFi frame are sent on connect.
    """

    def __init__(self, records: list[CaptureRecord]) -> None:
        self._opening: list[Frame] = []
        self._groups: dict[int, list[list[Frame]]] = {}
        current = self._opening
        for item in records:
            if item.direction == "tx":
                current = []
                self._groups.setdefault(item.frame.command, []).append(current)
            else:
                current.append(item.frame)
        self._played: dict[int, int] = {}
        self._send: Callable[[bytes], None] | None = None
        self._decoder = FrameDecoder()
        self.received: list[Frame] = []

    @classmethod
    def from_file(cls, path: str) -> ReplayPeer:
        return cls(list(read_capture(path)))

    @property
    def commands(self) -> list[int]:
        """The WiFi-side commands this capture can answer."""
        return sorted(self._groups)

    def connection_made(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._decoder = FrameDecoder()
        self._played.clear()
        self._write(self._opening)

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        for frame in self._decoder:
            self.received.append(frame)
            self._write(self._answer(frame.command))

    def connection_lost(self, send: Callable[[bytes], None] | None = None) -> None:
        """The line is gone; with ``send``, only if that is still the line in use."""
        if send is None or send == self._send:
            self._send = None

    def _answer(self, command: int) -> list[Frame]:
        groups = self._groups.get(command)
        if not groups:
            _LOGGER.debug("replay: nothing recorded for command 0x%02X", command)
            return []
        index = self._played.get(command, 0)
        self._played[command] = index + 1
        return groups[min(index, len(groups) - 1)]

    def _write(self, frames: list[Frame]) -> None:
        if self._send is not None and frames:
            self._send(b"".join(frame.encode() for frame in frames))
