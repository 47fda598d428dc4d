"""Why a Modbus write was refused or failed, as the write path knows it.

The unit writer records the outcome where it catches the gate's verdict; whoever serves the
unit (the logging wrapper) collects it with :func:`recording` around the one ``write`` call.
The record travels in a context variable, so concurrent writes never see each other's.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Iterator

from gateway.errors import (
    BusyError,
    FrameTooLongError,
    GatewayError,
    LinkClosedError,
    LinkNotReadyError,
    McuTimeoutError,
    NoRecordListError,
    WriteMismatchError,
    WriteNotSentError,
    WriteRejectedError,
)

__all__ = ["FAILED", "WriteOutcome", "note", "outcome_of", "record", "recording"]


class WriteOutcome(enum.StrEnum):
    """Why a Modbus write did not happen, or did not end well."""

    READ_ONLY = "read-only"
    NOT_WRITABLE = "not writable"
    NO_POINT = "no writable point there"
    RANGE = "out of range"
    BUSY = "busy"
    LINK_DOWN = "link down"
    NOT_SENT = "not sent: its window ran out or it was dropped"
    NO_RECORD_LIST = "the record list was never reported: not sent"
    FRAME_TOO_LONG = "frame too long for the MCU: not sent"
    UNCONFIRMED = "not confirmed in time"
    SENT_UNKNOWN = "sent, outcome unknown"
    MISMATCH = "the MCU reported another value"
    NOT_SERVING = "not served: --map auto has no map for this MCU (yet)"


# Sent: the write "failed"; every other outcome "refused" it before anything was sent.
FAILED = frozenset((WriteOutcome.UNCONFIRMED, WriteOutcome.SENT_UNKNOWN, WriteOutcome.MISMATCH))

_BY_ERROR: dict[type[GatewayError], WriteOutcome] = {
    BusyError: WriteOutcome.BUSY,
    WriteRejectedError: WriteOutcome.RANGE,
    NoRecordListError: WriteOutcome.NO_RECORD_LIST,
    FrameTooLongError: WriteOutcome.FRAME_TOO_LONG,
    WriteNotSentError: WriteOutcome.NOT_SENT,
    LinkNotReadyError: WriteOutcome.LINK_DOWN,
    LinkClosedError: WriteOutcome.SENT_UNKNOWN,  # the link went down after sending
    McuTimeoutError: WriteOutcome.UNCONFIRMED,
    WriteMismatchError: WriteOutcome.MISMATCH,
}

_RECORDED: contextvars.ContextVar[list[WriteOutcome] | None] = contextvars.ContextVar(
    "gateway_write_outcome", default=None
)


def outcome_of(err: GatewayError, *, motor: bool = False) -> WriteOutcome | None:
    """The outcome a refusal or failure ``err`` of the write path means (None: not known)."""
    if motor and isinstance(err, McuTimeoutError):
        return WriteOutcome.SENT_UNKNOWN  # a motor DP is never resent: it may still move
    for cls in type(err).__mro__:
        if cls in _BY_ERROR:
            return _BY_ERROR[cls]
    return None


def record(err: GatewayError, *, motor: bool = False) -> None:
    """Note why the write running now was refused or failed (kept by :func:`recording`)."""
    outcome = outcome_of(err, motor=motor)
    if outcome is not None:
        note(outcome)


def note(outcome: WriteOutcome) -> None:
    """Note ``outcome`` for the write running now, if someone is :func:`recording` it."""
    outcomes = _RECORDED.get()
    if outcomes is not None:
        outcomes.append(outcome)


@contextlib.contextmanager
def recording() -> Iterator[list[WriteOutcome]]:
    """The outcomes recorded by the write run inside, in order."""
    outcomes: list[WriteOutcome] = []
    token = _RECORDED.set(outcomes)
    try:
        yield outcomes
    finally:
        _RECORDED.reset(token)
