"""McuTwin: the breaker's MCU seen from the UART, on the gateway's own codec (sans-IO-ish).

Feed it bytes with ``data_received``; it answers through the ``send`` callable given to
``connection_made`` and uses the running asyncio loop for the motor, periodic reports and
paced output. Like many field units it ignores DP commands until the WiFi module reports
state 4, drops frames whose version byte is not 0x00, and never NAKs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from gateway.tuya.protocol import (
    VERSION_GATEWAY,
    VERSION_MCU,
    Command,
    DpValue,
    Frame,
    FrameDecoder,
    ProductInfo,
    decode_dps,
)
from gateway.twin.families import Protection, Role, get_variant
from gateway.twin.heard import HeardAnswers
from gateway.twin.motor import TwinMotor
from gateway.twin.options import TwinOptions
from gateway.twin.output import TwinFaults, TwinOutput
from gateway.twin.physics import Threshold, TwinModel
from gateway.twin.reports import TwinReporter
from gateway.twin.sdk_uart import SdkReceiver

__all__ = ["McuTwin", "TwinFaults"]

_LOGGER = logging.getLogger(__name__)

HISTORY_LIMIT = 10_000  # frames and DP commands kept for assertions

WIFI_CLOUD = 4


class McuTwin:
    """The breaker's MCU: handshake replies, DP commands, physics, reports, faults."""

    def __init__(self, options: TwinOptions | None = None) -> None:
        opts = TwinOptions() if options is None else options
        self.options = opts
        self.variant = get_variant(opts.variant)
        self.product_key = opts.product_key or self.variant.product_key
        self.version = opts.version
        self.require_wifi_state = opts.require_wifi_state
        self.output = TwinOutput(opts.seed + 1)
        for fault in dataclasses.fields(TwinFaults):  # TwinOptions names each fault alike
            if hasattr(opts, fault.name):
                setattr(self.output.faults, fault.name, getattr(opts, fault.name))
        # Bounded so that a `simulate` process left running for days does not grow.
        self.received: deque[Frame] = deque(maxlen=HISTORY_LIMIT)
        self.dp_commands: deque[tuple[float, DpValue]] = deque(maxlen=HISTORY_LIMIT)
        self.commands_ignored = self.boots = 0
        self.heard = HeardAnswers()  # the gateway's answers to the twin's own requests
        self._model = TwinModel(self.variant, opts)
        if opts.energy_kwh is not None:
            self._model.set_energy(opts.energy_kwh)
        self.reporter = TwinReporter(
            self._model, self.output, opts.report_interval_s, lambda: self._online
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.motor = TwinMotor(opts.motor_time_s, self._motor_done)
        self._boot()

    def _boot(self) -> None:
        self.boots += 1
        self.wifi_state: int | None = None
        self.wedged = False
        self._first_heartbeat = True
        self._time_asked = False
        self._decoder = FrameDecoder()
        self._sdk = SdkReceiver()

    # -- transport side ------------------------------------------------------------------
    def connection_made(self, send: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.output.attach(self._loop, send)
        self.reporter.start(self._loop)

    def connection_lost(self, send: Callable[[bytes], None] | None = None) -> None:
        """The line is gone; with ``send``, only if that is still the line in use."""
        if send is not None and not self.output.attached_to(send):
            return
        self.output.detach()  # a moving motor finishes: the UART does not stop the breaker
        self.reporter.stop()

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        seen = list(self._decoder)
        self.received.extend(seen)  # what the line carried, whether the MCU takes it or not
        if self.faults.small_rx_buffer and not self.wedged:
            heard = self._sdk.feed(data)  # the SDK's parser and its 24-byte buffer
            if self._sdk.wedged:
                _LOGGER.info("twin: a frame longer than the MCU buffer never completes: wedged")
                self.wedged = True
        else:
            heard = [] if self.wedged else seen
        for frame in heard:
            if self.faults.silent:
                continue
            if frame.version != VERSION_GATEWAY:
                _LOGGER.debug("twin: dropped frame with version %d", frame.version)
                continue
            try:
                self._handle(frame)
            except Exception:  # a twin bug must not kill the transport
                _LOGGER.exception("twin: failed on %s", frame.describe())

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
        return self.reporter.fast

    @property
    def report_ticks(self) -> int:
        return self.reporter.ticks

    @property
    def motor_moving(self) -> bool:
        return self.motor.moving

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
        self.motor.cancel()
        event = next((p.trip_event for p in self.variant.protections if p.fault_bit == bit), None)
        self._report(self._model.trip(bit, event))

    def reboot(self) -> None:
        """Restart the MCU: heartbeat answers 0x00 again and the handshake starts over."""
        _LOGGER.info("twin: reboot")
        self.motor.cancel()
        self._model.reboot()
        self._boot()
        self.reporter.reset()

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
            self.heard.record(frame)  # answers to the twin's own requests

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
            self.reporter.set_fast(stored.value == spec.labels.index("online"))
        self._report([dp.dpid])
        self._report(self._model.check_protections())

    def _start_motor(self, on: bool) -> None:
        if self.motor.heading_to(on):
            return  # already on its way: the move reports when done
        self.motor.cancel()
        if on == self._model.switch_on:
            self._report(self._model.variant.dpids(Role.SWITCH))
            return
        self.motor.start(on)

    def _motor_done(self, on: bool) -> None:
        self._report(self._model.move_switch(on, "remote"))
        self._report(self._model.check_protections())

    def _after_physics_change(self) -> None:
        self._report(self._model.check_protections())
        if not self._model.switch_on and self._model.auto_reclose_due():
            self._start_motor(True)

    # -- reporting -----------------------------------------------------------------------
    def _report(self, dpids: Iterable[int]) -> None:
        self.reporter.report(dpids)

    def _reply(self, command: int, data: bytes = b"") -> None:
        self.output.send_frame(Frame(command, data, VERSION_MCU))
