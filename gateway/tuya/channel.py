"""The link's frame pipe: an asyncio Protocol around the decoder, with pacing, a tap and stats.

It knows nothing of the handshake: it decodes frames, hands each to its owner, resolves
waiters registered with :meth:`FrameChannel.expect`, and writes frames.

The link waits with ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11
``wait_for`` swallows a cancellation that arrives as its future completes, and a heartbeat
loop that misses its cancellation keeps ``McuLink.stop()`` waiting forever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import cast

from gateway.errors import LinkClosedError, McuTimeoutError
from gateway.tuya.protocol import Command, Dropped, Frame, FrameDecoder

__all__ = ["ECHO_WINDOW_S", "FrameChannel", "LinkStats"]

_LOGGER = logging.getLogger(__name__)

# A received frame byte for byte one we sent this recently is the line's echo (an adapter or
# a half-duplex bus hearing itself), never the MCU: MCU frames carry version 0x03, ours 0x00.
ECHO_WINDOW_S = 0.5


@dataclasses.dataclass(slots=True)
class LinkStats:
    """Live counters of one link, kept across reconnects."""

    frames_received: int = 0
    frames_sent: int = 0
    checksum_errors: int = 0
    bytes_skipped: int = 0
    oversize_frames: int = 0
    dp_errors: int = 0
    mcu_reboots: int = 0  # heartbeat answers 0x00 (first after boot) after an earlier answer
    heartbeat_answers: int = 0
    heartbeat_rtt_ms: float | None = None
    handshakes: int = 0
    late_confirmations: int = 0  # DP reports confirming a write after its window ended
    echoes_ignored: int = 0  # our own frames heard back (see ECHO_WINDOW_S)


class FrameChannel(asyncio.Protocol):
    """One open transport to the MCU: frames in, frames out."""

    def __init__(
        self,
        stats: LinkStats,
        on_frame: Callable[[Frame], None],
        *,
        gap_s: float,
        line_idle_s: float,
        tap: Callable[[str, Frame], None] | None = None,
        on_drop: Callable[[Dropped], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._stats = stats
        self._on_frame = on_frame
        self._gap_s = gap_s
        self._line_idle_s = line_idle_s
        self._tap = tap  # sees every frame: 'rx' or 'tx'
        self._decoder = FrameDecoder(on_drop=on_drop)  # sees what it drops, in order
        self._counted = (0, 0, 0)
        self._transport: asyncio.BaseTransport | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._waiters: dict[int, list[asyncio.Future[Frame]]] = {}
        self._sent: deque[tuple[float, bytes]] = deque(maxlen=8)  # for echoes: (when, bytes)
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self.rebooted = asyncio.Event()  # a heartbeat answer 00 after an earlier answer
        self.last_tx = -math.inf
        self.last_report_at = -math.inf

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._cancel_idle()
        if exc is not None:
            _LOGGER.warning("link: connection lost: %s", exc)
        if not self.lost.done():
            self.lost.set_result(None)
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(LinkClosedError("the connection to the MCU was lost"))
        self._waiters.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._decoder.feed(data)
            self._dispatch(self._decoder)  # one at a time: on_drop keeps its place between frames
        except Exception:  # a bug upstream must never kill the transport
            _LOGGER.exception("link: failed on received bytes %s", data.hex(" "))
        self._cancel_idle()
        if self._decoder.buffered:
            self._idle_handle = self._loop.call_later(self._line_idle_s, self._line_idle)

    # -- sending -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, frame: Frame) -> None:
        """Write one frame now; LinkClosedError if the transport is gone."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise LinkClosedError(f"cannot send {frame.describe()}: the connection is closed")
        raw = frame.encode()
        cast(asyncio.WriteTransport, transport).write(raw)  # uvloop: no subclass
        self.last_tx = self._loop.time()
        self._sent.append((self.last_tx, raw))
        self._stats.frames_sent += 1
        if self._tap is not None:
            self._tap("tx", frame)
        _LOGGER.debug("link -> %s", frame.describe())

    async def pace(self) -> None:
        """Wait until the minimum gap since the last frame sent has passed."""
        wait = self.last_tx + self._gap_s - self._loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def send_paced(self, frame: Frame) -> None:
        await self.pace()
        self.send(frame)

    def expect(self, command: int) -> asyncio.Future[Frame]:
        """A future for the next frame with ``command`` from the MCU; register before sending."""
        future: asyncio.Future[Frame] = self._loop.create_future()
        self._waiters.setdefault(command, []).append(future)
        return future

    def forget(self, future: asyncio.Future[Frame]) -> None:
        for futures in self._waiters.values():
            if future in futures:
                futures.remove(future)
        future.cancel()

    async def request(self, frame: Frame, reply: int, timeout_s: float) -> Frame:
        """Send ``frame`` and return the MCU's ``reply`` frame; McuTimeoutError after timeout_s."""
        future = self.expect(reply)
        try:
            await self.send_paced(frame)
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError as err:
            raise McuTimeoutError(
                f"no 0x{reply:02X} reply to {frame.describe()} within {timeout_s:g} s"
            ) from err
        finally:
            self.forget(future)

    def close(self) -> None:
        self._cancel_idle()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    # -- receiving -----------------------------------------------------------------------
    def _line_idle(self) -> None:
        self._idle_handle = None
        try:
            self._dispatch(self._decoder.idle())
        except Exception:
            _LOGGER.exception("link: failed while flushing an idle line")

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _dispatch(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            self._count_decoder()
            if self._is_echo(frame):
                continue
            self._stats.frames_received += 1
            if self._tap is not None:
                self._tap("rx", frame)
            _LOGGER.debug("link <- %s", frame.describe())
            if frame.command == Command.DP_REPORT:
                self.last_report_at = self._loop.time()
            elif frame.command == Command.HEARTBEAT:
                self._count_heartbeat(frame)
            for future in self._waiters.pop(frame.command, []):
                if not future.done():
                    future.set_result(frame)
            try:
                self._on_frame(frame)
            except Exception:
                _LOGGER.exception("link: failed to handle %s", frame.describe())
        self._count_decoder()

    def _is_echo(self, frame: Frame) -> bool:
        """True (and counted) for a frame we sent within ``ECHO_WINDOW_S``, heard back."""
        raw = frame.encode()
        since = self._loop.time() - ECHO_WINDOW_S
        for entry in self._sent:
            if entry[1] == raw and entry[0] >= since:
                self._sent.remove(entry)  # one echo per frame sent
                self._stats.echoes_ignored += 1
                _LOGGER.debug("link: ignored the echo of our own %s", frame.describe())
                return True
        return False

    def _count_heartbeat(self, frame: Frame) -> None:
        if not frame.data:
            return  # a heartbeat request's shape, not an answer
        if frame.data[:1] == b"\x00" and self._stats.heartbeat_answers:
            self._stats.mcu_reboots += 1
            self.rebooted.set()
            _LOGGER.warning("link: the MCU answered as after a boot: it rebooted")
        self._stats.heartbeat_answers += 1

    def _count_decoder(self) -> None:
        dec = self._decoder
        now = (dec.checksum_errors, dec.bytes_skipped, dec.oversize_frames)
        self._stats.checksum_errors += now[0] - self._counted[0]
        self._stats.bytes_skipped += now[1] - self._counted[1]
        self._stats.oversize_frames += now[2] - self._counted[2]
        self._counted = now
