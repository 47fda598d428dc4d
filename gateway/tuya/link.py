"""McuLink: the asyncio link to the breaker's MCU, playing the Tuya WiFi module's role.

It opens the UART (a path, a pyserial URL, or a scheme from :mod:`gateway.tuya.openers`), runs
the handshake, keeps the MCU alive with heartbeats, answers the MCU's own requests and publishes
every DP report. Writes go through the one gate (:mod:`gateway.tuya.writes`): never queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from gateway.errors import (
    ConfigError,
    GatewayError,
    LinkClosedError,
    LinkNotReadyError,
    LowPowerProtocolError,
    McuTimeoutError,
)
from gateway.tuya.answers import McuResponder
from gateway.tuya.capture import CaptureWriter
from gateway.tuya.channel import FrameChannel, LinkStats
from gateway.tuya.handshake import LinkTimings, probe_mcu, run_handshake, watch_heartbeats
from gateway.tuya.link_config import LinkConfig, LinkState
from gateway.tuya.listeners import LinkEvents
from gateway.tuya.openers import open_transport
from gateway.tuya.periodic import keep_alive, query_every
from gateway.tuya.protocol import Command, DpValue, Frame, ProductInfo, decode_dps
from gateway.tuya.rejects import RejectedRecords
from gateway.tuya.writes import DpWrite, WriteGate

__all__ = ["LinkConfig", "LinkState", "LinkStats", "LinkTimings", "McuLink"]

_LOGGER = logging.getLogger(__name__)


class McuLink(LinkEvents):
    """The link to one MCU; ``start()`` runs it in the background, reconnecting."""

    def __init__(self, config: LinkConfig) -> None:
        super().__init__()  # the listener lists
        self.config = config
        self.state = LinkState.STOPPED
        self.product_info: ProductInfo | None = None
        self.stats = LinkStats()
        self.fatal_error: GatewayError | None = None  # why the link stopped for good
        self._stopping = False
        self._rejected = RejectedRecords(self.stats, config.url)
        self._channel: FrameChannel | None = None
        self._capture: CaptureWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._keepalives: list[tuple[DpValue, float]] = []
        self._responder = McuResponder(config, self._publish)
        self._writes = WriteGate(self._pace, self._send_if_ready, self.stats, config.max_frame_data)

    def _on_traffic(self, direction: str, frame: Frame) -> None:
        if self._capture is not None:
            self._capture.record(direction, frame)
        self._traffic.notify(direction, frame)

    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._runner is not None and not self._runner.done():
            return
        await self.stop()  # after a fatal error: drop what is left of the last run
        self._stopping = False
        self.fatal_error = None
        if self.config.capture_path:
            self._capture = CaptureWriter(self.config.capture_path, self.config.capture_max_bytes)
        self._set_state(LinkState.CONNECTING)
        self._runner = self._spawn(self._run())
        if self.config.query_interval_s:
            self._spawn(query_every(self.query_all, self.config.query_interval_s))
        for dp, interval in self._keepalives:
            self._spawn_keepalive(dp, interval)

    async def stop(self) -> None:
        """Stop the link; waiting writes fail with LinkClosedError at once."""
        self._set_state(LinkState.STOPPED)
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._capture is not None:
            self._capture.close()
            self._capture = None

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109 - the contract's name
        """Return once READY; McuTimeoutError after ``timeout``, or why the link stopped."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_state(state: LinkState) -> None:
            if not done.done() and state in (LinkState.READY, LinkState.STOPPED):
                done.set_result(None)

        remove = self.add_state_listener(on_state)
        try:
            on_state(self.state)
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError as err:
            raise McuTimeoutError(
                f"link not READY within {timeout:g} s (state {self.state.name})"
            ) from err
        finally:
            remove()
        if self.state is LinkState.STOPPED:
            raise self.fatal_error or LinkClosedError("the link is stopped")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_state(self, state: LinkState) -> None:
        if state is self.state or (self._stopping and state is not LinkState.STOPPED):
            return  # a task that has not yet seen its cancellation must not revive the link
        _LOGGER.info("link %s: %s -> %s", self.config.url, self.state.name, state.name)
        self.state = state
        if state is not LinkState.READY:
            self._writes.fail_all(
                f"the link went {state.name} while waiting for the MCU's confirmation;"
                " the command was sent and will not be sent again"
            )
        self._states.notify(state)

    async def _run(self) -> None:
        """Open, handshake, supervise; after a failure wait (doubling), then again."""
        timings = self.config.timings
        delay = timings.backoff_min_s
        channel: FrameChannel | None = None
        try:
            while True:
                if channel is None or channel.lost.done():
                    channel = await self._reopen(channel)
                handshakes = self.stats.handshakes
                if channel is not None and await self._session(channel):
                    self._set_state(LinkState.HANDSHAKE)  # the MCU rebooted: at once, no wait
                    continue
                if self.stats.handshakes != handshakes:
                    delay = timings.backoff_min_s
                if self.state is not LinkState.CONNECTING:
                    self._set_state(LinkState.DOWN)
                await asyncio.sleep(delay)
                delay = min(delay * 2, timings.backoff_max_s)
        except (ConfigError, LowPowerProtocolError) as err:
            self._fatal(err)
        finally:
            if channel is not None:
                await self._close(channel)

    def _fatal(self, err: GatewayError) -> None:
        _LOGGER.error("link %s: stopped: %s", self.config.url, err)
        self.fatal_error = err
        self._set_state(LinkState.STOPPED)

    async def _reopen(self, old: FrameChannel | None) -> FrameChannel | None:
        """A newly opened channel (the old one closed first); None if it cannot open now."""
        if old is not None:
            await self._close(old)
        cfg = self.config
        channel = FrameChannel(
            self.stats,
            self._on_frame,
            gap_s=cfg.command_gap_s,
            line_idle_s=cfg.timings.line_idle_s,
            tap=self._on_traffic,
            on_drop=self._drops.notify,
        )
        try:
            await open_transport(cfg.url, channel, cfg.baudrate)
        except OSError as err:
            _LOGGER.warning("link %s: cannot open: %s", cfg.url, err)
            return None
        except ValueError as err:  # pyserial's word for a URL it cannot parse
            raise ConfigError([str(err)]) from err
        self._channel = channel
        return channel

    async def _close(self, channel: FrameChannel) -> None:
        self._channel = None
        self._responder.cancel()
        channel.close()
        await asyncio.wait([channel.lost], timeout=1.0)

    async def _session(self, channel: FrameChannel) -> bool:
        """Handshake and supervise until either fails or the channel is lost; True on reboot."""
        session = asyncio.ensure_future(self._handshake_and_supervise(channel))
        waiting: list[asyncio.Future[Any]] = [session, channel.lost]
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not session.done():
                session.cancel()
                await asyncio.wait([session])
        if session.cancelled():
            return False
        exc = session.exception()
        if isinstance(exc, LowPowerProtocolError):
            raise exc
        if isinstance(exc, McuTimeoutError):
            _LOGGER.warning("link %s: handshake failed: %s", self.config.url, exc)
        elif exc is not None and not isinstance(exc, LinkClosedError):
            _LOGGER.error("link: session failed", exc_info=exc)
        return exc is None and session.result()

    async def _handshake_and_supervise(self, channel: FrameChannel) -> bool:
        cfg = self.config
        await probe_mcu(channel, cfg.timings)
        self._set_state(LinkState.HANDSHAKE)
        self._responder.cancel()
        self.product_info = await run_handshake(channel, cfg.wifi_state, cfg.timings)
        self.stats.handshakes += 1
        self._set_state(LinkState.READY)
        return await watch_heartbeats(
            channel,
            cfg.heartbeat_interval_s,
            cfg.heartbeat_timeout_s,
            cfg.heartbeats_missed_down,
            self.stats,
        )

    def _on_frame(self, frame: Frame) -> None:
        if frame.command == Command.DP_REPORT:
            parsed = decode_dps(frame.data)
            self._publish(parsed.values, parsed.errors)
        elif self._channel is not None:
            self._responder.handle(self._channel, frame)

    def _publish(self, values: tuple[DpValue, ...], errors: tuple[str, ...]) -> None:
        self._rejected.note(errors)
        for dp in values:
            self._writes.offer(dp)
            self._reports.notify(dp)

    def _ready_channel(self, what: str) -> FrameChannel:
        channel = self._channel
        if self.state is not LinkState.READY or channel is None or not channel.is_open:
            raise LinkNotReadyError(f"{what} refused: the link is {self.state.name}, not READY")
        return channel

    @property
    def writes(self) -> WriteGate:
        """The one gate every DP write goes through."""
        return self._writes

    async def write_dp(
        self,
        dp: DpValue,
        timeout: float | None = None,  # noqa: ASYNC109 - a confirmation window, not a scope
    ) -> DpValue:
        """Send one 0x06 with ``dp`` and return the MCU's report of it (see WriteGate)."""
        window = self.config.confirm_timeout_s if timeout is None else timeout
        self._ready_channel(f"write {dp.describe()}")
        arrived = asyncio.get_running_loop().time()
        async with self._writes.turn(arrived, window) as turn:
            return await turn.send(DpWrite(dp, window))

    async def _pace(self) -> None:
        if self._channel is not None:
            await self._channel.pace()

    def _send_if_ready(self, frame: Frame) -> None:
        self._ready_channel(frame.describe()).send(frame)

    async def query_all(self) -> None:
        """Ask the MCU for every DP (0x08); the reports reach the listeners."""
        await self._ready_channel("query all").pace()
        self._ready_channel("query all").send(Frame(Command.DP_QUERY))

    def add_keepalive(self, dp: DpValue, interval_s: float) -> None:
        """Write ``dp`` every ``interval_s`` while READY, without waiting for confirmation."""
        self._keepalives.append((dp, interval_s))
        if self._runner is not None and not self._runner.done():
            self._spawn_keepalive(dp, interval_s)

    def _spawn_keepalive(self, dp: DpValue, interval_s: float) -> None:
        self._spawn(keep_alive(self.is_ready, self._writes.send_unconfirmed, dp, interval_s))

    def is_ready(self) -> bool:
        return self.state is LinkState.READY
