"""The WiFi module's answers to the MCU's own requests.

The MCU asks for local time (0x1C), GMT time (0x0C), RSSI (0x24), network status (0x2B) and
the module's MAC (0x2D), sends sync reports (0x22) and extended-service frames (0x34),
resets WiFi (0x04/0x05), runs a WiFi test (0x0E) and announces features (0x37).
:func:`answer_mcu_request` decides the answers with no I/O; :class:`McuResponder` sends them,
walks the WiFi state back up after a reset, and logs once per command what it leaves
unanswered (:data:`UNANSWERED` says why), once per 0x34 sub-command what it refuses
(:data:`EXT_REFUSED`: answered ``sub 01``, failure). Every answer goes out with version 0x00.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime

from gateway.tuya.channel import FrameChannel
from gateway.tuya.link_config import LinkConfig
from gateway.tuya.protocol import (
    Command,
    DpValue,
    Frame,
    decode_dps,
    encode_gmt_time,
    encode_local_time,
    encode_module_mac,
)

__all__ = [
    "EXT_OPEN_TIME",
    "EXT_RECORD_REPORT",
    "EXT_REFUSED",
    "EXT_TIME_LEN",
    "EXT_WEATHER",
    "UNANSWERED",
    "WIFI_STATES_AFTER_RESET",
    "McuRequestOutcome",
    "McuResponder",
    "RequestContext",
    "answer_mcu_request",
    "unanswered_reason",
]

_LOGGER = logging.getLogger(__name__)

EXT_RECORD_REPORT = 0x0B  # 0x34 sub-command: DP records with the time they were recorded
EXT_QUERY_FEATURES = 0x04  # 0x34 sub-command: which extended services the module supports
EXT_OPEN_TIME = 0x01  # 0x34 sub-command: open the time service (sub 0x02 notices follow)
EXT_WEATHER = 0x03  # 0x34 sub-command: ask for weather data
# Sub-commands answered with failure (01): the MCU then asks 0x1C/0x0C for the time itself.
EXT_REFUSED: dict[int, str] = {
    EXT_OPEN_TIME: "answered failure: the gateway pushes no time notices (0x1C/0x0C are answered)",
    EXT_WEATHER: "answered failure: weather needs the Tuya cloud, which this gateway replaces",
}
# 0x0B data: sub-command, then this many time bytes (as OpenBeken parses it), then DP records
EXT_TIME_LEN = 8
_ACK_OK = 0x00
_ACK_FAILED = 0x01
WIFI_STATES_AFTER_RESET = (2, 3)  # connected to the router, then to the cloud (then configured)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestContext:
    """What the answers depend on: the module's WiFi state, RSSI, clock (aware) and MAC."""

    wifi_state: int
    rssi_dbm: int
    now: datetime | None
    mac: bytes = bytes(6)


@dataclasses.dataclass(frozen=True, slots=True)
class McuRequestOutcome:
    """Frames to send back, DP records the request carried, and whether WiFi was reset."""

    replies: tuple[Frame, ...] = ()
    reports: tuple[DpValue, ...] = ()
    errors: tuple[str, ...] = ()
    wifi_reset: bool = False
    refused: str = ""  # a request not (fully) served, and why: logged once per sub-command


def _local_time(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    return McuRequestOutcome(replies=(Frame(Command.LOCAL_TIME, encode_local_time(ctx.now)),))


def _gmt_time(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    return McuRequestOutcome(replies=(Frame(Command.GMT_TIME, encode_gmt_time(ctx.now)),))


def _module_mac(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    return McuRequestOutcome(replies=(Frame(Command.MODULE_MAC, encode_module_mac(ctx.mac)),))


def _rssi(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    value = max(-128, min(127, ctx.rssi_dbm))
    return McuRequestOutcome(replies=(Frame(Command.RSSI, value.to_bytes(1, "big", signed=True)),))


def _network_status(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    return McuRequestOutcome(replies=(Frame(Command.NETWORK_STATUS, bytes((ctx.wifi_state,))),))


def _sync_report(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    parsed = decode_dps(frame.data)
    return McuRequestOutcome(
        replies=(Frame(Command.DP_SYNC_ACK, b"\x01"),),
        reports=parsed.values,
        errors=parsed.errors,
    )


def _extended_service(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    sub = frame.data[0] if frame.data else None
    if sub == EXT_QUERY_FEATURES:
        return McuRequestOutcome(replies=(Frame(Command.EXTENDED_SERVICE, bytes((sub, _ACK_OK))),))
    if sub is not None and sub in EXT_REFUSED:
        failed = Frame(Command.EXTENDED_SERVICE, bytes((sub, _ACK_FAILED)))
        return McuRequestOutcome(replies=(failed,), refused=EXT_REFUSED[sub])
    if sub != EXT_RECORD_REPORT:
        return McuRequestOutcome(refused="left unanswered: not a sub-command the module serves")
    reply = (Frame(Command.EXTENDED_SERVICE, bytes((EXT_RECORD_REPORT, _ACK_OK))),)
    stamp = frame.data[1 : 1 + EXT_TIME_LEN]
    if len(stamp) < EXT_TIME_LEN:
        error = f"0x34 record report: {len(stamp)} time bytes, expected {EXT_TIME_LEN}"
        return McuRequestOutcome(replies=reply, errors=(error,))
    parsed = decode_dps(frame.data[1 + EXT_TIME_LEN :])
    _LOGGER.debug(
        "link: record report stamped %s: %d record(s)", stamp.hex(" "), len(parsed.values)
    )
    return McuRequestOutcome(replies=reply, reports=parsed.values, errors=parsed.errors)


def _wifi_reset(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    return McuRequestOutcome(replies=(Frame(frame.command),), wifi_reset=True)


def _wifi_test(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    # [result 1 = router found, signal strength 0..100 %], from the configured RSSI
    strength = max(0, min(100, 2 * (ctx.rssi_dbm + 100)))
    return McuRequestOutcome(replies=(Frame(Command.WIFI_TEST, bytes((1, strength))),))


def _module_notice(frame: Frame, ctx: RequestContext) -> McuRequestOutcome:
    sub = frame.data[0] if frame.data else 0
    return McuRequestOutcome(replies=(Frame(Command.MODULE_NOTICE, bytes((sub, _ACK_OK))),))


_Handler = Callable[[Frame, RequestContext], McuRequestOutcome]
_HANDLERS: dict[int, _Handler] = {
    Command.LOCAL_TIME: _local_time,
    Command.GMT_TIME: _gmt_time,
    Command.MODULE_MAC: _module_mac,
    Command.RSSI: _rssi,
    Command.NETWORK_STATUS: _network_status,
    Command.DP_SYNC_REPORT: _sync_report,
    Command.EXTENDED_SERVICE: _extended_service,
    Command.WIFI_RESET: _wifi_reset,
    Command.WIFI_SELECT: _wifi_reset,
    Command.WIFI_TEST: _wifi_test,
    Command.MODULE_NOTICE: _module_notice,
}


# The MCU's replies to the module's own commands: nothing to answer, nothing to log.
_REPLIES = frozenset(
    (Command.HEARTBEAT, Command.PRODUCT_INFO, Command.WORKING_MODE, Command.WIFI_STATE)
)
_CLOUD = "needs the Tuya cloud, which this gateway replaces"
# Requests in Tuya's MCU SDK v2.5.6 that a module may leave unanswered here, and why.
UNANSWERED: dict[int, str] = {
    0x0A: "firmware upgrades are never started by this gateway",
    0x0B: "firmware upgrades are never started by this gateway",
    0x0D: "production test mode is not offered",
    0x20: f"weather service {_CLOUD}",
    0x21: f"weather data {_CLOUD}",
    0x25: "heartbeats never stop: they are how the gateway sees the MCU is alive",
    0x28: f"stream data {_CLOUD}",
    0x2C: "router connection test: the gateway has no WiFi radio",
    0x2E: "infrared modules only",
    0x2F: "infrared modules only",
    0x30: f"map streams {_CLOUD}",
    0x31: "file downloads are never started by this gateway",
    0x32: "file downloads are never started by this gateway",
    0x35: "Bluetooth test: the gateway has no Bluetooth radio",
    **{command: "voice modules only" for command in range(0x60, 0x66)},
}


def unanswered_reason(command: int) -> str | None:
    """Why an MCU frame gets no answer, or None for the MCU's replies to our commands."""
    if command in _REPLIES or command in _HANDLERS or command == Command.DP_REPORT:
        return None
    return UNANSWERED.get(command, "not a request of Tuya's MCU SDK v2.5.6")


def answer_mcu_request(frame: Frame, ctx: RequestContext) -> McuRequestOutcome | None:
    """The answer to an MCU request, or None when ``frame`` is not one."""
    handler = _HANDLERS.get(frame.command)
    return None if handler is None else handler(frame, ctx)


Publish = Callable[[tuple[DpValue, ...], tuple[str, ...]], None]


class McuResponder:
    """Answers the MCU's requests on a channel and keeps the WiFi state it was told."""

    def __init__(self, config: LinkConfig, publish: Publish) -> None:
        self.configured_wifi_state = config.wifi_state
        self.wifi_state = config.wifi_state
        self._rssi_dbm = config.rssi_dbm
        self._mac = config.mac
        self._reset_step_s = config.timings.wifi_reset_step_s
        self._unanswered_logged: set[bytes] = set()  # command, and a 0x34's sub-command
        self._publish = publish
        self._reset_task: asyncio.Task[None] | None = None

    def handle(self, channel: FrameChannel, frame: Frame) -> None:
        """Answer ``frame`` if it is an MCU request; records it carries go to ``publish``."""
        now = datetime.now().astimezone()
        outcome = answer_mcu_request(
            frame, RequestContext(self.wifi_state, self._rssi_dbm, now, self._mac)
        )
        if outcome is None:
            self._log_unanswered(frame)
            return
        if outcome.refused:
            self._log_refused(frame, outcome.refused)
        for reply in outcome.replies:
            if channel.is_open:
                channel.send(reply)
        self._publish(outcome.reports, outcome.errors)
        if outcome.wifi_reset:
            self.cancel()
            self._reset_task = asyncio.ensure_future(self._after_reset(channel))

    def _log_unanswered(self, frame: Frame) -> None:
        reason = unanswered_reason(frame.command)
        if reason is None or not self._first(bytes((frame.command,))):
            return
        _LOGGER.warning(
            "link: MCU request 0x%02X left unanswered (logged once): %s; frame %s",
            frame.command,
            reason,
            frame.encode().hex(" "),
        )

    def _log_refused(self, frame: Frame, why: str) -> None:
        if self._first(bytes((frame.command,)) + frame.data[:1]):
            _LOGGER.warning(
                "link: MCU request 0x%02X sub-command %s %s (logged once); frame %s",
                frame.command,
                frame.data[:1].hex() or "(none)",
                why,
                frame.encode().hex(" "),
            )

    def _first(self, key: bytes) -> bool:
        """True the first time ``key`` (a command, and a sub-command) is seen."""
        if key in self._unanswered_logged:
            return False
        self._unanswered_logged.add(key)
        return True

    def cancel(self) -> None:
        """Forget any WiFi reset in progress; the state is the configured one again."""
        if self._reset_task is not None:
            self._reset_task.cancel()
            self._reset_task = None
        self.wifi_state = self.configured_wifi_state

    async def _after_reset(self, channel: FrameChannel) -> None:
        """Walk the WiFi state back up, as a module reconnecting after a reset would."""
        for state in (*WIFI_STATES_AFTER_RESET, self.configured_wifi_state):
            if not channel.is_open:
                return
            self.wifi_state = state
            await channel.send_paced(Frame(Command.WIFI_STATE, bytes((state,))))
            if state != self.configured_wifi_state:
                await asyncio.sleep(self._reset_step_s)
