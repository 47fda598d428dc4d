"""The twin's 0x07 reports: one frame per changed DP, periodic groups, fast reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from gateway.tuya.protocol import VERSION_MCU, Command, Frame
from gateway.twin.output import TwinOutput
from gateway.twin.physics import TwinModel

__all__ = ["FAST_REPORT_DURATION_S", "FAST_REPORT_INTERVAL_S", "TwinReporter"]

FAST_REPORT_INTERVAL_S = 1.0
FAST_REPORT_DURATION_S = 60.0


class TwinReporter:
    """Sends the model's DP values; pushes the variant's periodic groups on a timer."""

    def __init__(
        self,
        model: TwinModel,
        output: TwinOutput,
        interval_s: float,
        online: Callable[[], bool],
    ) -> None:
        self.interval_s = interval_s
        self.ticks = 0
        self._model = model
        self._output = output
        self._online = online
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fast_until = 0.0

    @property
    def fast(self) -> bool:
        return self._loop is not None and self._loop.time() < self._fast_until

    def set_fast(self, on: bool) -> None:
        """Report every FAST_REPORT_INTERVAL_S for FAST_REPORT_DURATION_S (or stop doing so)."""
        now = self._loop.time() if self._loop is not None else 0.0
        self._fast_until = now + FAST_REPORT_DURATION_S if on else 0.0
        self.schedule()

    def report(self, dpids: Iterable[int]) -> None:
        """One 0x07 frame per DP, as most MCUs send them."""
        for dpid in dpids:
            self.report_group((dpid,))

    def report_group(self, dpids: tuple[int, ...]) -> None:
        values = [dp for dpid in dpids if (dp := self._model.dp(dpid)) is not None]
        if values:
            data = b"".join(dp.encode() for dp in values)
            self._output.send_frame(Frame(Command.DP_REPORT, data, VERSION_MCU))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def reset(self) -> None:
        """After a reboot: normal reporting again."""
        self._fast_until = 0.0
        self.schedule()

    def schedule(self) -> None:
        self.stop()
        interval = FAST_REPORT_INTERVAL_S if self.fast else self.interval_s
        if self._loop is None or not self._output.connected or interval <= 0:
            return
        self._handle = self._loop.call_later(interval, self._periodic)

    def _periodic(self) -> None:
        self._handle = None
        self.ticks += 1
        self._model.integrate()
        if self._online():
            for group in self._model.variant.periodic:
                self.report_group(group)
        self.schedule()
