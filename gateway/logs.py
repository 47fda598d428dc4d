"""Logging set-up: text or JSON lines, every line about a unit naming the unit and its link.

The unit travels in a context variable: :func:`unit_context` around ``link.start()`` reaches
every task and callback the link creates, and :func:`bind_unit` sets it around each Modbus
request of a unit's backend. A handler filter copies it onto each record, rounds float
arguments (``230.10000000000002`` prints ``230.1``) and collects structured ``fields``::

    {"time": "2026-11-30T05:01:02.123Z", "level": "INFO", "logger": "gateway.unit.backend",
     "unit": 1, "message": "...", "fields": {"link": "/dev/ttyUSB0", "point": "switch"}}
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import enum
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.modbus.pdu import UnitBackend
from gateway.modbus.tables import ExceptionCode, Table

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "RefusedWrite",
    "UnitFilter",
    "add_cli_options",
    "bind_unit",
    "refused_write",
    "setup",
    "unit_context",
]

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(unit_prefix)s%(message)s"
_DIGITS = 6  # significant digits of a float in a log line
_UNIT: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar(
    "gateway_unit", default=None
)


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


@contextlib.contextmanager
def unit_context(unit: int, link: str) -> Iterator[None]:
    """Log lines (and tasks started) inside name ``unit`` and ``link``."""
    token = _UNIT.set((unit, link))
    try:
        yield
    finally:
        _UNIT.reset(token)


def _rounded(value: object) -> object:
    return float(f"{value:.{_DIGITS}g}") if isinstance(value, float) else value


class UnitFilter(logging.Filter):
    """Adds ``unit``, ``link``, ``fields`` and ``unit_prefix`` to a record; rounds floats."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _UNIT.get() or (None, None)
        unit = getattr(record, "unit", bound[0])
        link = getattr(record, "link", bound[1])
        fields = dict(getattr(record, "fields", None) or {})
        if link is not None:
            fields.setdefault("link", link)
        record.unit, record.link = unit, link
        record.fields = {key: _rounded(value) for key, value in fields.items()}
        record.unit_prefix = f"[unit {unit} link {link}] " if unit is not None else ""
        if isinstance(record.args, tuple):
            record.args = tuple(_rounded(arg) for arg in record.args)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, unit, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}))
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line = {
            "time": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "unit": getattr(record, "unit", None),
            "message": record.getMessage(),
            "fields": fields,
        }
        return json.dumps(line, ensure_ascii=False, default=str)


def setup(level: str = "INFO", fmt: str = LogFormat.TEXT, stream: TextIO | None = None) -> None:
    """Configure the root logger once for the command line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(UnitFilter())
    use_json = LogFormat(fmt) is LogFormat.JSON
    handler.setFormatter(JsonFormatter() if use_json else logging.Formatter(_TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        default=argparse.SUPPRESS,
        choices=[f.value for f in LogFormat],
        help="text (default) or json: one object per line for journald/Loki",
    )


class _BoundBackend:
    """A unit's Modbus backend whose log lines name the unit and its link."""

    def __init__(self, backend: UnitBackend, unit: int, link: str) -> None:
        self.backend = backend
        self.unit = unit
        self.link = link
        self.identification = backend.identification  # the same dict: updates show

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        with unit_context(self.unit, self.link):
            return self.backend.read(table, address, count)

    async def write(
        self, table: Table, address: int, values: list[int], client: str
    ) -> ExceptionCode | None:
        with unit_context(self.unit, self.link):
            return await self.backend.write(table, address, values, client)

    def count_request(self, exception: ExceptionCode | None) -> None:
        self.backend.count_request(exception)


def bind_unit(backend: UnitBackend, unit: int, link: str) -> UnitBackend:
    """``backend`` as served: its requests log with ``unit`` and ``link``."""
    return _BoundBackend(backend, unit, link)


class RefusedWrite(enum.StrEnum):
    """Why a Modbus write was not sent to the MCU."""

    BUSY = "busy"
    READ_ONLY = "read-only"
    RANGE = "out of range"
    LINK_DOWN = "link down"
    NOT_WRITABLE = "not writable"


def refused_write(
    logger: logging.Logger, point: str, value: float, reason: RefusedWrite, client: str
) -> None:
    """The one log line of a refused write, whatever the reason."""
    logger.warning(
        "write refused: %s = %s by %s: %s",
        point,
        _rounded(value),
        client,
        reason.value,
        extra={
            "fields": {
                "event": "write_refused",
                "point": point,
                "value": value,
                "reason": reason.value,
                "client": client,
            }
        },
    )
