"""What a link is told (LinkConfig) and where it is (LinkState)."""

from __future__ import annotations

import dataclasses
import enum

from gateway.tuya.capture import DEFAULT_MAX_BYTES
from gateway.tuya.handshake import LinkTimings
from gateway.tuya.payloads import derived_mac

__all__ = ["LinkConfig", "LinkState"]


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
    # While READY. Tuya's spec asks for 15 s; a breaker's link must notice a silent or
    # rebooted MCU within 5 s, and an MCU answers a heartbeat in a few byte times.
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 1.0
    heartbeats_missed_down: int = 2
    query_interval_s: float | None = None  # periodic query-all (0x08); None = off
    confirm_timeout_s: float = 3.0  # default DP write confirmation window
    command_gap_s: float = 0.010
    max_frame_data: int | None = 24  # the MCU's receive limit (tuya.max_frame_data)
    capture_path: str | None = None
    capture_max_bytes: int = DEFAULT_MAX_BYTES
    timings: LinkTimings = dataclasses.field(default_factory=LinkTimings)
    module_mac: bytes | None = None  # answered to 0x2D; None: derived from the URL

    @property
    def mac(self) -> bytes:
        """The MAC the module reports: ``module_mac``, else a stable one made from the URL."""
        return self.module_mac or derived_mac(self.url)

    @property
    def silence_noticed_s(self) -> float:
        """The longest an MCU that stops answering can go unnoticed while READY."""
        return self.heartbeats_missed_down * (self.heartbeat_interval_s + self.heartbeat_timeout_s)

    @property
    def reboot_noticed_s(self) -> float:
        """The longest a rebooted MCU that answers at once can go unnoticed while READY."""
        return self.heartbeat_interval_s + self.heartbeat_timeout_s
