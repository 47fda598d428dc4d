"""The gateway's exception tree.

Every error the gateway raises on purpose derives from one root, so callers can
catch ``GatewayError`` and know nothing unexpected slipped through::

    GatewayError
    ├── ConfigError                 a map or config file is invalid (all problems listed)
    ├── ProtocolError               a value cannot be encoded as TuyaMCU (local fault)
    │   └── DpRecordError           a DP record has the wrong size for its type
    ├── LinkError                   the UART link to the MCU failed
    │   ├── LinkNotReadyError       the handshake is not complete: nothing was sent
    │   ├── LinkClosedError         the link was stopped while waiting
    │   ├── McuTimeoutError         the MCU did not answer in time (also a TimeoutError)
    │   └── LowPowerProtocolError   the MCU speaks the low-power protocol, not ours
    └── WriteError                  a datapoint write was refused or not confirmed
        ├── WriteRejectedError      the value failed validation; nothing was sent
        ├── WriteMismatchError      the MCU confirmed a different value
        ├── BusyError               the motor's DP is busy or was operated too recently; not sent
        ├── WriteNotSentError       the write's window ran out, or it was dropped, before sending
        ├── FrameTooLongError       the command needs a frame the MCU cannot receive; not sent
        └── NoRecordListError       the record list to modify has not been reported; not sent
"""

from __future__ import annotations

__all__ = [
    "BusyError",
    "ConfigError",
    "DpRecordError",
    "FrameTooLongError",
    "GatewayError",
    "LinkClosedError",
    "LinkError",
    "LinkNotReadyError",
    "LowPowerProtocolError",
    "McuTimeoutError",
    "NoRecordListError",
    "ProtocolError",
    "WriteError",
    "WriteMismatchError",
    "WriteNotSentError",
    "WriteRejectedError",
]


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A map or configuration file is invalid; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class ProtocolError(GatewayError, ValueError):
    """A value cannot be represented in the TuyaMCU protocol."""


class DpRecordError(ProtocolError):
    """A DP record's payload does not fit its type."""


class LinkError(GatewayError):
    """The link to the MCU failed."""


class LinkNotReadyError(LinkError):
    """The link is not READY; the request was refused and never sent."""


class LinkClosedError(LinkError):
    """The link was stopped while a request was waiting."""


class McuTimeoutError(LinkError, TimeoutError):
    """The MCU did not answer within its window."""


class LowPowerProtocolError(LinkError):
    """The MCU answered with version 0x00: it speaks the low-power protocol."""


class WriteError(GatewayError):
    """A datapoint write was refused or not confirmed."""


class WriteRejectedError(WriteError):
    """The value failed validation before anything was sent."""


class WriteMismatchError(WriteError):
    """The MCU reported a value other than the one written."""

    def __init__(self, message: str, reported: object) -> None:
        super().__init__(message)
        self.reported = reported


class BusyError(WriteError):
    """A motor write would have to wait, or the motor was operated too recently; not sent."""


class WriteNotSentError(WriteError):
    """The write was not sent: its window ran out while it waited, or it was dropped."""


class FrameTooLongError(WriteError):
    """The command needs a frame with more data bytes than the MCU can receive; not sent."""


class NoRecordListError(WriteError):
    """A write modifies a record list the MCU has not reported yet; not sent."""
