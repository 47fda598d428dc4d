"""The WiFi-module start-up sequence, as the Tuya spec and the best open firmwares run it.

1. heartbeat (0x00) every ``probe_interval_s`` until the MCU answers;
2. product info (0x01), then up to ``notice_wait_s`` for an optional 0x37 notice;
3. working mode (0x02): an empty reply means we report network state, so send WiFi state
   (0x03) and wait for its ack;
4. query all DPs (0x08) and collect reports until ``query_quiet_s`` of quiet.

An MCU reply with version byte 0x00 means the low-power protocol: stop for good. Our own
frames heard back (an echoing adapter) never count: the channel drops them, and a heartbeat
without the answer byte is no answer. A heartbeat answer 00 after an earlier answer means the
MCU rebooted: the handshake runs again, however late that answer came.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from gateway.errors import LowPowerProtocolError, McuTimeoutError
from gateway.tuya.channel import FrameChannel, LinkStats
from gateway.tuya.protocol import LINE_IDLE_S, VERSION_LOW_POWER, Command, Frame, ProductInfo

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "LINE_IDLE_S",
    "MODULE_NOTICE_WAIT_S",
    "PROBE_INTERVAL_S",
    "QUERY_MAX_S",
    "QUERY_QUIET_S",
    "REPLY_TIMEOUT_S",
    "WIFI_RESET_STEP_S",
    "LinkTimings",
    "check_version",
    "probe_mcu",
    "run_handshake",
    "watch_heartbeats",
]

_LOGGER = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0  # Tuya spec: heartbeat every 1 s until the MCU first answers
REPLY_TIMEOUT_S = 1.0  # for 0x01/0x02/0x03 replies; 9600 baud moves ~1 byte per ms
MODULE_NOTICE_WAIT_S = 0.3  # an MCU with new features announces them (0x37) right after 0x01
QUERY_QUIET_S = 0.5  # after 0x08, this much silence means every DP has been reported
QUERY_MAX_S = 10.0  # stop collecting even if an MCU never goes quiet
BACKOFF_MIN_S = 1.0  # wait before re-running a failed handshake, doubled on each failure
BACKOFF_MAX_S = 30.0
WIFI_RESET_STEP_S = 1.0  # pace of the 2 -> 3 -> configured WiFi states after an MCU reset


@dataclasses.dataclass(frozen=True, slots=True)
class LinkTimings:
    """Protocol timings; the defaults are the spec's, tests pass shorter ones."""

    probe_interval_s: float = PROBE_INTERVAL_S
    reply_timeout_s: float = REPLY_TIMEOUT_S
    notice_wait_s: float = MODULE_NOTICE_WAIT_S
    query_quiet_s: float = QUERY_QUIET_S
    query_max_s: float = QUERY_MAX_S
    line_idle_s: float = LINE_IDLE_S
    backoff_min_s: float = BACKOFF_MIN_S
    backoff_max_s: float = BACKOFF_MAX_S
    wifi_reset_step_s: float = WIFI_RESET_STEP_S


def check_version(frame: Frame) -> None:
    """Raise LowPowerProtocolError for an MCU reply sent with version 0x00."""
    if frame.version == VERSION_LOW_POWER:
        raise LowPowerProtocolError(
            f"the MCU answered {frame.describe()} with protocol version 0x00: it speaks"
            " Tuya's low-power (battery device) serial protocol, which this gateway does not"
            " implement; only MCUs that answer with version 0x03 are supported"
        )


async def probe_mcu(channel: FrameChannel, timings: LinkTimings) -> Frame:
    """Heartbeat every ``probe_interval_s`` until the MCU answers; returns its reply."""
    while True:
        try:
            reply = await channel.request(
                Frame(Command.HEARTBEAT), Command.HEARTBEAT, timings.probe_interval_s
            )
        except TimeoutError:
            continue
        if not reply.data:
            _LOGGER.debug("link: %s carries no answer byte: not an answer", reply.describe())
            await asyncio.sleep(timings.probe_interval_s)
            continue
        check_version(reply)
        channel.rebooted.clear()  # this answer starts the handshake: a later 00 is a reboot
        return reply


async def _ask(channel: FrameChannel, frame: Frame, timings: LinkTimings) -> Frame:
    reply = await channel.request(frame, frame.command, timings.reply_timeout_s)
    check_version(reply)
    return reply


async def run_handshake(
    channel: FrameChannel, wifi_state: int, timings: LinkTimings
) -> ProductInfo:
    """Steps 2-4 once the MCU answers heartbeats; McuTimeoutError if a step goes unanswered."""
    notice = channel.expect(Command.MODULE_NOTICE)  # it may come in the same read as 0x01
    try:
        info = ProductInfo.decode((await _ask(channel, Frame(Command.PRODUCT_INFO), timings)).data)
        _LOGGER.info("link: MCU product %s version %s", info.product_key, info.version)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timings.notice_wait_s):
                await asyncio.shield(notice)
    finally:
        channel.forget(notice)
    mode = await _ask(channel, Frame(Command.WORKING_MODE), timings)
    if mode.data:
        _LOGGER.info("link: MCU drives its own network LED (mode %s)", mode.data.hex(" "))
    else:
        await _ask(channel, Frame(Command.WIFI_STATE, bytes((wifi_state,))), timings)
    await collect_reports(channel, timings)
    return info


async def collect_reports(channel: FrameChannel, timings: LinkTimings) -> None:
    """Send query-all and return after ``query_quiet_s`` without a report."""
    loop = asyncio.get_running_loop()
    await channel.send_paced(Frame(Command.DP_QUERY))
    start = loop.time()
    while True:
        quiet_end = max(channel.last_report_at, start) + timings.query_quiet_s
        end = min(quiet_end, start + timings.query_max_s)
        if loop.time() >= end:
            return
        await asyncio.sleep(end - loop.time())


async def watch_heartbeats(
    channel: FrameChannel, interval_s: float, timeout_s: float, missed_down: int, stats: LinkStats
) -> bool:
    """Heartbeat while READY; False after ``missed_down`` misses in a row, True on MCU reboot.

    A reboot is any answer 00 the channel sees after the probe's, also one that came after its
    heartbeat's timeout: the MCU forgot the WiFi state, so the handshake must run again.
    """
    loop = asyncio.get_running_loop()
    missed = 0
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await channel.rebooted.wait()
        if channel.rebooted.is_set():
            _LOGGER.warning("link: the MCU rebooted; handshaking again")
            return True
        sent = loop.time()
        try:
            await channel.request(Frame(Command.HEARTBEAT), Command.HEARTBEAT, timeout_s)
        except McuTimeoutError:
            missed += 1
            _LOGGER.warning("link: heartbeat missed (%d of %d)", missed, missed_down)
            if missed >= missed_down:
                return False
            continue
        missed = 0
        stats.heartbeat_rtt_ms = (loop.time() - sent) * 1000.0  # an answer 00 ends the next wait
