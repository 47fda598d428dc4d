"""McuLink: the asyncio link to the breaker's MCU, playing the Tuya WiFi module's role.

It opens the UART (a path, any pyserial URL, or ``sim://`` for the in-process twin), runs
the handshake (:mod:`gateway.tuya.handshake`), keeps the MCU alive with heartbeats, answers the
MCU's own requests (:mod:`gateway.tuya.answers`) and publishes every DP report to its
listeners. Writes are never queued: a write while not READY fails at once, and a write
whose confirmation window ended is never sent again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

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
from gateway.tuya.protocol import Command, DpValue, Frame, ProductInfo, decode_dps
from gateway.tuya.writes import DpWrite, WriteGate

if TYPE_CHECKING:
    from gateway.twin.mcu import McuTwin

__all__ = ["LinkConfig", "LinkState", "LinkStats", "LinkTimings", "McuLink"]

_LOGGER = logging.getLogger(__name__)


# A breaker that only reports while told it is watched should hear so right after a
# (re)handshake, not one keep-alive interval later.
_KEEPALIVE_READY_POLL_S = 1.0


class LinkState(enum.Enum):
    """Where the link is: STOPPED, CONNECTING, HANDSHAKE, READY or DOWN."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    HANDSHAKE = "handshake"
    READY = "ready"
    DOWN = "down"


@dataclasses.dataclass(frozen=True, slots=True)
class LinkConfig:
    """How to reach the MCU and how to talk to it."""

    url: str  # /dev/ttyUSB0, socket://h:p, rfc2217://..., sim://[variant]
    baudrate: int = 9600
    wifi_state: int = 4
    rssi_dbm: int = -55
    heartbeat_interval_s: float = 15.0
    heartbeat_timeout_s: float = 3.0
    heartbeats_missed_down: int = 3
    query_interval_s: float | None = None  # periodic query-all (0x08); None = off
    confirm_timeout_s: float = 3.0  # default DP write confirmation window
    command_gap_s: float = 0.010
    max_frame_data: int | None = 24  # the MCU's receive limit (tuya.max_frame_data)
    capture_path: str | None = None
    timings: LinkTimings = dataclasses.field(default_factory=LinkTimings)


class McuLink:
    """The link to one MCU; ``start()`` runs it in the background, reconnecting."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.state = LinkState.STOPPED
        self.product_info: ProductInfo | None = None
        self.stats = LinkStats()
        self.twin: McuTwin | None = None
        self.fatal_error: GatewayError | None = None  # why the link stopped for good
        self._report_listeners: list[Callable[[DpValue], None]] = []
        self._state_listeners: list[Callable[[LinkState], None]] = []
        self._traffic_listeners: list[Callable[[str, Frame], None]] = []
        self._channel: FrameChannel | None = None
        self._capture: CaptureWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._keepalives: list[tuple[DpValue, float]] = []
        self._responder = McuResponder(
            config.wifi_state, config.rssi_dbm, config.timings.wifi_reset_step_s, self._publish
        )
        self._writes = WriteGate(self._pace, self._send_if_ready, self.stats, config.max_frame_data)

    # -- listeners -----------------------------------------------------------------------
    def add_report_listener(self, cb: Callable[[DpValue], None]) -> Callable[[], None]:
        self._report_listeners.append(cb)
        return lambda: self._report_listeners.remove(cb) if cb in self._report_listeners else None

    def add_state_listener(self, cb: Callable[[LinkState], None]) -> Callable[[], None]:
        self._state_listeners.append(cb)
        return lambda: self._state_listeners.remove(cb) if cb in self._state_listeners else None

    def add_traffic_listener(self, cb: Callable[[str, Frame], None]) -> Callable[[], None]:
        """Call ``cb(direction, frame)`` for every frame, 'rx' from the MCU or 'tx' to it."""
        self._traffic_listeners.append(cb)
        return lambda: self._traffic_listeners.remove(cb) if cb in self._traffic_listeners else None

    def _on_traffic(self, direction: str, frame: Frame) -> None:
        if self._capture is not None:
            self._capture.record(direction, frame)
        for listener in list(self._traffic_listeners):
            try:
                listener(direction, frame)
            except Exception:  # a listener's bug must not break the link
                _LOGGER.exception("link: traffic listener failed on %s", frame.describe())

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._runner is not None and not self._runner.done():
            return
        await self.stop()  # after a fatal error: drop what is left of the last run
        self.fatal_error = None
        if self.config.capture_path:
            self._capture = CaptureWriter(self.config.capture_path)
        self._set_state(LinkState.CONNECTING)
        self._runner = self._spawn(self._run())
        for dp, interval in self._keepalives:
            self._spawn(self._keepalive(dp, interval))

    async def stop(self) -> None:
        """Stop the link; waiting writes fail with LinkClosedError at once."""
        self._set_state(LinkState.STOPPED)
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
        if state is self.state:
            return
        _LOGGER.info("link %s: %s -> %s", self.config.url, self.state.name, state.name)
        self.state = state
        if state is not LinkState.READY:
            self._writes.fail_all(
                f"the link went {state.name} while waiting for the MCU's confirmation;"
                " the command was sent and will not be sent again"
            )
        for cb in list(self._state_listeners):
            try:
                cb(state)
            except Exception:
                _LOGGER.exception("link: state listener failed")

    # -- connection loop -----------------------------------------------------------------
    async def _run(self) -> None:
        timings = self.config.timings
        backoff = timings.backoff_min_s
        while True:
            try:
                channel = await self._open()
            except OSError as err:
                _LOGGER.warning("link %s: cannot open: %s", self.config.url, err)
            except (ConfigError, ValueError) as err:
                self._fatal(err if isinstance(err, GatewayError) else ConfigError([str(err)]))
                return
            else:
                handshakes = self.stats.handshakes
                try:
                    await self._serve(channel)
                except LowPowerProtocolError as err:
                    self._fatal(err)
                    return
                finally:
                    await self._close(channel)
                if self.stats.handshakes != handshakes:
                    backoff = timings.backoff_min_s
            if self.state is not LinkState.CONNECTING:
                self._set_state(LinkState.DOWN)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, timings.backoff_max_s)

    def _fatal(self, err: GatewayError) -> None:
        _LOGGER.error("link %s: stopped: %s", self.config.url, err)
        self.fatal_error = err
        self._set_state(LinkState.STOPPED)

    async def _open(self) -> FrameChannel:
        cfg = self.config
        channel = FrameChannel(
            self.stats,
            self._on_frame,
            gap_s=cfg.command_gap_s,
            line_idle_s=cfg.timings.line_idle_s,
            tap=self._on_traffic,
        )
        if cfg.url.startswith("sim://"):
            from gateway.twin.endpoints import open_sim_link  # the twin is only needed for sim://

            _transport, self.twin = await open_sim_link(cfg.url, channel)
        else:
            import serial_asyncio_fast  # not needed for sim://

            loop = asyncio.get_running_loop()
            await serial_asyncio_fast.create_serial_connection(
                loop, lambda: channel, cfg.url, baudrate=cfg.baudrate
            )
        self._channel = channel
        return channel

    async def _close(self, channel: FrameChannel) -> None:
        self._channel = None
        self._responder.cancel()
        channel.close()
        await asyncio.wait([channel.lost], timeout=1.0)

    async def _serve(self, channel: FrameChannel) -> None:
        """Run sessions on one open transport until it is lost."""
        session = asyncio.ensure_future(self._sessions(channel))
        try:
            await asyncio.wait([session, channel.lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not session.done():
                session.cancel()
                await asyncio.wait([session])
        if not session.cancelled() and session.exception() is not None:
            exc = session.exception()
            if isinstance(exc, LowPowerProtocolError):
                raise exc
            if not isinstance(exc, LinkClosedError):
                _LOGGER.error("link: session failed", exc_info=exc)

    async def _sessions(self, channel: FrameChannel) -> None:
        """Handshake, supervise, and start over after DOWN (with backoff) or an MCU reboot."""
        timings = self.config.timings
        backoff = timings.backoff_min_s
        while True:
            try:
                await self._handshake(channel)
            except McuTimeoutError as err:
                _LOGGER.warning("link %s: handshake failed: %s", self.config.url, err)
                self._set_state(LinkState.DOWN)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, timings.backoff_max_s)
                continue
            backoff = timings.backoff_min_s
            if await self._supervise(channel):
                self._set_state(LinkState.HANDSHAKE)  # the MCU rebooted: at once, no backoff
                continue
            self._set_state(LinkState.DOWN)
            await asyncio.sleep(backoff)

    async def _handshake(self, channel: FrameChannel) -> None:
        timings = self.config.timings
        await probe_mcu(channel, timings)
        self._set_state(LinkState.HANDSHAKE)
        self._responder.cancel()
        self.product_info = await run_handshake(channel, self.config.wifi_state, timings)
        self.stats.handshakes += 1
        self._set_state(LinkState.READY)

    async def _supervise(self, channel: FrameChannel) -> bool:
        """Heartbeats (and periodic query-all) while READY; True if the MCU rebooted."""
        cfg = self.config
        query = None
        if cfg.query_interval_s:
            query = asyncio.ensure_future(self._query_loop(cfg.query_interval_s))
        try:
            return await watch_heartbeats(
                channel,
                cfg.heartbeat_interval_s,
                cfg.heartbeat_timeout_s,
                cfg.heartbeats_missed_down,
                self.stats,
            )
        finally:
            if query is not None:
                query.cancel()
                await asyncio.wait([query])

    async def _query_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.query_all()
            except GatewayError as err:
                _LOGGER.debug("link: periodic query skipped: %s", err)

    # -- incoming frames -----------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        if frame.command == Command.DP_REPORT:
            parsed = decode_dps(frame.data)
            self._publish(parsed.values, parsed.errors)
        elif self._channel is not None:
            self._responder.handle(self._channel, frame)

    def _publish(self, values: tuple[DpValue, ...], errors: tuple[str, ...]) -> None:
        for error in errors:
            self.stats.dp_errors += 1
            _LOGGER.warning("link: rejected DP record: %s", error)
        for dp in values:
            self._writes.offer(dp)
            for cb in list(self._report_listeners):
                try:
                    cb(dp)
                except Exception:
                    _LOGGER.exception("link: report listener failed on %s", dp.describe())

    # -- commands ------------------------------------------------------------------------
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
        channel = self._ready_channel("query all")
        await channel.pace()
        self._ready_channel("query all").send(Frame(Command.DP_QUERY))

    def add_keepalive(self, dp: DpValue, interval_s: float) -> None:
        """Write ``dp`` every ``interval_s`` while READY, without waiting for confirmation."""
        self._keepalives.append((dp, interval_s))
        if self._runner is not None and not self._runner.done():
            self._spawn(self._keepalive(dp, interval_s))

    async def _keepalive(self, dp: DpValue, interval_s: float) -> None:
        """Write ``dp`` as soon as the link is READY, then every ``interval_s`` while READY."""
        while True:
            if self.state is not LinkState.READY:
                await asyncio.sleep(min(interval_s, _KEEPALIVE_READY_POLL_S))
                continue
            try:
                await self._writes.send_unconfirmed(dp)
            except GatewayError as err:
                _LOGGER.debug("link: keepalive %s skipped: %s", dp.describe(), err)
            await asyncio.sleep(interval_s)
