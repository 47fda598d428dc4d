"""What the twin heard back from the WiFi module for its own requests."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from gateway.tuya.protocol import (
    Command,
    Frame,
    decode_gmt_time,
    decode_local_time,
    decode_module_mac,
)

__all__ = ["HeardAnswers"]


@dataclasses.dataclass(slots=True)
class HeardAnswers:
    """The last answer to each request: local time, GMT time, RSSI, network status, MAC."""

    local_time: datetime | None = None
    gmt_time: datetime | None = None
    rssi_dbm: int | None = None
    network_status: int | None = None
    module_mac: bytes | None = None

    def record(self, frame: Frame) -> None:
        """Keep ``frame`` if it answers one of the twin's requests."""
        command, data = frame.command, frame.data
        if command == Command.LOCAL_TIME:
            self.local_time = decode_local_time(data)
        elif command == Command.GMT_TIME:
            self.gmt_time = decode_gmt_time(data)
        elif command == Command.MODULE_MAC:
            self.module_mac = decode_module_mac(data)
        elif command == Command.RSSI and len(data) == 1:
            self.rssi_dbm = int.from_bytes(data, "big", signed=True)
        elif command == Command.NETWORK_STATUS and len(data) == 1:
            self.network_status = data[0]
