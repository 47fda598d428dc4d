"""McuTwin: the breaker's MCU seen from the UART, on the gateway's own codec (sans-IO-ish).

Feed it bytes with ``data_received``; it answers through the ``send`` callable given to
``connection_made`` and uses the running asyncio loop for the motor, periodic reports and
paced output. Like many field units it ignores DP commands until the WiFi module reports
state 4, drops frames whose version byte is not 0x00, and never NAKs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from gateway.tuya.protocol import (
    Command,
    DpValue,
    Frame,
    FrameDecoder,
    ProductInfo,
    decode_dps,
    decode_local_time,
)
from gateway.twin.families import Protection, Role, get_variant
from gateway.twin.output import TwinFaults, TwinOutput
from gateway.twin.physics import Threshold, TwinModel
from gateway.twin.sdk_uart import SdkReceiver

__all__ = ["McuTwin", "TwinFaults"]

_LOGGER = logging.getLogger(__name__)

HISTORY_LIMIT = 10_000  # frames and DP commands kept for assertions

VERSION_MCU = 0x03
WIFI_CLOUD = 4
FAST_REPORT_INTERVAL_S = 1.0
FAST_REPORT_DURATION_S = 60.0


class McuTwin:
    """The breaker's MCU: handshake replies, DP commands, physics, reports, faults."""

    def __init__(
        self,
        variant: str = "family_a",
        *,
        product_key: str | None = None,
        version: str = "1.0.0",
        seed: int = 0,
        report_interval_s: float = 5.0,
        motor_time_s: float = 0.8,
        require_wifi_state: bool = True,
        voltage_v: float = 230.0,
        current_a: float = 1.0,
        noise: float = 1.0,
    ) -> None:
        self.variant = get_variant(variant)
        self.product_key = product_key or self.variant.product_key
        self.version = version
        self.report_interval_s = report_interval_s
        self.motor_time_s = motor_time_s
        self.require_wifi_state = require_wifi_state
        self.output = TwinOutput(seed + 1)
        # Bounded so that a `simulate` process left running for days does not grow.
        self.received: deque[Frame] = deque(maxlen=HISTORY_LIMIT)
        self.dp_commands: deque[tuple[float, DpValue]] = deque(maxlen=HISTORY_LIMIT)
        self.commands_ignored = self.boots = self.report_ticks = 0
        self.local_time: datetime | None = None  # the gateway's answer to 0x1C
        self.rssi_dbm: int | None = None
        self.network_status: int | None = None
        self._model = TwinModel(
            self.variant, seed=seed, voltage_v=voltage_v, current_a=current_a, noise=noise
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._report_handle: asyncio.TimerHandle | None = None
        self._motor_handle: asyncio.TimerHandle | None = None
        self._motor_target = False
        self._fast_until = 0.0
        self._boot()

    def _boot(self) -> None:
        self.boots += 1
        self.wifi_state: int | None = None
        self.wedged = False
        self._first_heartbeat = True
        self._time_asked = False
        self._fast_until = 0.0
        self._decoder = FrameDecoder()
        self._sdk = SdkReceiver()

    # -- transport side ------------------------------------------------------------------
    def connection_made(self, send: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.output.attach(self._loop, send)
        self._schedule_report()

    def connection_lost(self, send: Callable[[bytes], None] | None = None) -> None:
        """The line is gone; with ``send``, only if that is still the line in use."""
        if send is not None and not self.output.attached_to(send):
            return
        self.output.detach()  # a moving motor finishes: the UART does not stop the breaker
        if self._report_handle is not None:
            self._report_handle.cancel()
            self._report_handle = None

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        seen = list(self._decoder)
        self.received.extend(seen)  # what the line carried, whether the MCU takes it or not
        if self.faults.small_rx_buffer:
            heard = self._sdk_frames(data)
        else:
            heard = [] if self.wedged else seen
        for frame in heard:
            if self.faults.silent:
                continue
            if frame.version != 0:
                _LOGGER.debug("twin: dropped frame with version %d", frame.version)
                continue
            try:
                self._handle(frame)
            except Exception:  # a twin bug must not kill the transport
                _LOGGER.exception("twin: failed on %s", frame.describe())

    def _sdk_frames(self, data: bytes) -> list[Frame]:
        """The frames the SDK's parser and 24-byte buffer take from ``data``."""
        if self.wedged:
            return []
        frames = self._sdk.feed(data)
        if self._sdk.wedged:
            _LOGGER.info("twin: a frame longer than the MCU buffer never completes: wedged")
            self.wedged = True
        return frames

    # -- test / demo API -----------------------------------------------------------------
    @property
    def faults(self) -> TwinFaults:
        return self.output.faults

    @property
    def switch_on(self) -> bool:
        return self._model.switch_on

    @property
    def voltage_v(self) -> float:
        return self._model.voltage_v

    @property
    def current_a(self) -> float:
        return self._model.current_a

    @property
    def leakage_ma(self) -> float:
        return self._model.leakage_ma

    @property
    def temperature_c(self) -> float:
        return self._model.temperature_c

    @property
    def energy_kwh(self) -> float:
        return self._model.energy_kwh

    @property
    def fault_bits(self) -> int:
        return self._model.fault_bits

    @property
    def last_event(self) -> int:
        return self._model.last_event

    @property
    def thresholds(self) -> Mapping[Protection, Threshold]:
        return self._model.thresholds()

    @property
    def fast_reporting(self) -> bool:
        return self._loop is not None and self._loop.time() < self._fast_until

    @property
    def motor_moving(self) -> bool:
        return self._motor_handle is not None

    def dp_value(self, dpid: int) -> DpValue | None:
        """What the twin would report for ``dpid`` now."""
        return self._model.dp(dpid)

    def set_voltage(self, volts: float) -> None:
        self._model.integrate()
        self._model.voltage_v = volts
        self._after_physics_change()

    def set_load(self, current_a: float) -> None:
        self._model.integrate()
        self._model.current_a = current_a
        self._after_physics_change()

    def set_leakage(self, milliamps: float) -> None:
        self._model.leakage_ma = milliamps
        self._after_physics_change()

    def set_temperature(self, celsius: float) -> None:
        self._model.temperature_c = celsius
        self._after_physics_change()

    def set_energy(self, kwh: float) -> None:
        self._model.set_energy(kwh)

    def flip_lever(self, on: bool) -> None:
        """Move the lever by hand: no motor, reported at once."""
        self._report(self._model.move_switch(on, "manual"))
        self._report(self._model.check_protections())

    def trip(self, bit: int) -> None:
        """Trip now with fault bit ``bit`` (bit order of the vectors file)."""
        self._cancel_motor()
        event = next((p.trip_event for p in self.variant.protections if p.fault_bit == bit), None)
        self._report(self._model.trip(bit, event))

    def reboot(self) -> None:
        """Restart the MCU: heartbeat answers 0x00 again and the handshake starts over."""
        _LOGGER.info("twin: reboot")
        self._cancel_motor()
        self._model.reboot()
        self._boot()
        self._schedule_report()

    def request(self, command: int, data: bytes = b"") -> None:
        """Send an MCU-side request (0x1C, 0x24, 0x2B, 0x22, 0x34, 0x04…) to the gateway."""
        self.output.send_frame(Frame(command, data, VERSION_MCU))

    # -- frame handling ------------------------------------------------------------------
    def _handle(self, frame: Frame) -> None:
        command = frame.command
        if command == Command.HEARTBEAT:
            self._reply(command, b"\x00" if self._first_heartbeat else b"\x01")
            self._first_heartbeat = False
        elif command == Command.PRODUCT_INFO:
            info = ProductInfo(self.product_key, self.version, 0, "")
            self._reply(command, info.encode())
        elif command == Command.WORKING_MODE:
            self._reply(command)
        elif command == Command.WIFI_STATE and len(frame.data) == 1:
            self._on_wifi_state(frame.data[0])
        elif command == Command.DP_QUERY:
            for spec in self.variant.dps:
                self._report([spec.dpid])
        elif command == Command.DP_COMMAND:
            self._on_dp_command(frame.data)
        else:
            self._on_answer(frame)

    def _on_answer(self, frame: Frame) -> None:
        """The gateway's answers to the MCU's own requests are only recorded."""
        if frame.command == Command.LOCAL_TIME:
            self.local_time = decode_local_time(frame.data)
        elif frame.command == Command.RSSI and len(frame.data) == 1:
            self.rssi_dbm = int.from_bytes(frame.data, "big", signed=True)
        elif frame.command == Command.NETWORK_STATUS and len(frame.data) == 1:
            self.network_status = frame.data[0]

    def _on_wifi_state(self, state: int) -> None:
        self.wifi_state = state
        self._reply(Command.WIFI_STATE)
        if state == WIFI_CLOUD and not self._time_asked:
            self._time_asked = True
            self.request(Command.LOCAL_TIME)

    @property
    def _online(self) -> bool:
        return not self.require_wifi_state or self.wifi_state == WIFI_CLOUD

    def _on_dp_command(self, data: bytes) -> None:
        parsed = decode_dps(data)
        now = self._loop.time() if self._loop else 0.0
        for dp in parsed.values:
            self.dp_commands.append((now, dp))
            if not self._online:
                self.commands_ignored += 1
                _LOGGER.debug("twin: ignored %s before WiFi state 4", dp.describe())
            else:
                self._apply(dp)

    def _apply(self, dp: DpValue) -> None:
        spec = self.variant.spec(dp.dpid)
        if spec is not None and spec.role is Role.SWITCH and spec.dp_type is dp.dp_type:
            self._start_motor(bool(dp.value))
            return
        stored = self._model.write(dp)
        if stored is None:
            self.commands_ignored += 1
            return
        if spec is not None and spec.role is Role.ONLINE:
            assert self._loop is not None
            online = stored.value == spec.labels.index("online")
            self._fast_until = self._loop.time() + FAST_REPORT_DURATION_S if online else 0.0
            self._schedule_report()
        self._report([dp.dpid])
        self._report(self._model.check_protections())

    def _start_motor(self, on: bool) -> None:
        if self._motor_handle is not None and self._motor_target == on:
            return  # already on its way: the move reports when done
        self._cancel_motor()
        if on == self._model.switch_on:
            self._report(self._model.variant.dpids(Role.SWITCH))
            return
        assert self._loop is not None
        self._motor_target = on
        self._motor_handle = self._loop.call_later(self.motor_time_s, self._motor_done, on)

    def _motor_done(self, on: bool) -> None:
        self._motor_handle = None
        self._report(self._model.move_switch(on, "remote"))
        self._report(self._model.check_protections())

    def _cancel_motor(self) -> None:
        if self._motor_handle is not None:
            self._motor_handle.cancel()
            self._motor_handle = None

    def _after_physics_change(self) -> None:
        self._report(self._model.check_protections())
        if not self._model.switch_on and self._model.auto_reclose_due():
            self._start_motor(True)

    # -- reporting -----------------------------------------------------------------------
    def _report(self, dpids: Iterable[int]) -> None:
        """One 0x07 frame per DP, as most MCUs send them."""
        for dpid in dpids:
            self._report_group((dpid,))

    def _report_group(self, dpids: tuple[int, ...]) -> None:
        values = [dp for dpid in dpids if (dp := self._model.dp(dpid)) is not None]
        if values:
            data = b"".join(dp.encode() for dp in values)
            self.output.send_frame(Frame(Command.DP_REPORT, data, VERSION_MCU))

    def _schedule_report(self) -> None:
        if self._report_handle is not None:
            self._report_handle.cancel()
            self._report_handle = None
        interval = FAST_REPORT_INTERVAL_S if self.fast_reporting else self.report_interval_s
        if self._loop is None or not self.output.connected or interval <= 0:
            return
        self._report_handle = self._loop.call_later(interval, self._periodic)

    def _periodic(self) -> None:
        self._report_handle = None
        self.report_ticks += 1
        self._model.integrate()
        if self._online:
            for group in self.variant.periodic:
                self._report_group(group)
        self._schedule_report()

    def _reply(self, command: int, data: bytes = b"") -> None:
        self.output.send_frame(Frame(command, data, VERSION_MCU))
