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
import dataclasses
import enum
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.errors import GatewayError
from gateway.modbus.pdu import UnitBackend
from gateway.modbus.proxy import UnitProxy
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.registers import decode_value
from gateway.regmap.specs import RegisterMap
from gateway.unit.outcome import FAILED, WriteOutcome, recording

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "UnitFilter",
    "UnitInfo",
    "WriteOutcome",
    "add_cli_options",
    "bind_unit",
    "log_refused_write",
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
    """A float to 6 significant digits, an integral one as an int: 60000.0 prints 60000."""
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    short = float(f"{value:.{_DIGITS}g}")
    return int(short) if short.is_integer() else short


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


_REFUSALS = {  # code -> outcome when the write path recorded none; 0x01, 0x0B: the state
    ExceptionCode.ILLEGAL_DATA_ADDRESS: WriteOutcome.NO_POINT,
    ExceptionCode.ILLEGAL_DATA_VALUE: WriteOutcome.RANGE,
    ExceptionCode.SERVER_DEVICE_BUSY: WriteOutcome.BUSY,
    ExceptionCode.SERVER_DEVICE_FAILURE: WriteOutcome.MISMATCH,
}


@dataclasses.dataclass(frozen=True, slots=True)
class UnitInfo:
    """What a unit's log lines say about it."""

    unit: int
    link: str
    current_map: Callable[[], RegisterMap]  # --map auto replaces the unit's map once
    read_only: bool
    link_ready: Callable[[], bool]


class _BoundBackend(UnitProxy):
    """A unit's Modbus backend whose log lines name the unit and its link, refusals alike."""

    def __init__(self, backend: UnitBackend, info: UnitInfo) -> None:
        super().__init__(backend)
        self.info = info

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None:
        with unit_context(self.info.unit, self.info.link), recording() as outcomes:
            code = await self.inner.write(table, address, values, client, arrived)
        if code is not None:
            known = outcomes[-1] if outcomes else None
            log_refused_write(self.info, table, address, values, client, code, known)
        return code

    def refused(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        code: ExceptionCode,
        why: str,
    ) -> None:
        """The server refused a write before it got here: the same line as any refusal."""
        log_refused_write(self.info, table, address, values, client, code, why)


def bind_unit(backend: UnitBackend, info: UnitInfo) -> UnitBackend:
    """``backend`` as served: its lines name the unit and link; each refusal logs one line."""
    return _BoundBackend(backend, info)


def _outcome(info: UnitInfo, code: ExceptionCode, known: str | None) -> str:
    if known is not None:
        return known  # what the write path saw: the code alone cannot tell
    if code is ExceptionCode.ILLEGAL_FUNCTION:
        return WriteOutcome.READ_ONLY if info.read_only else WriteOutcome.NOT_WRITABLE
    if code in _REFUSALS:
        return _REFUSALS[code]
    return WriteOutcome.UNCONFIRMED if info.link_ready() else WriteOutcome.LINK_DOWN


def _written(
    register_map: RegisterMap, table: Table, address: int, values: list[int]
) -> dict[str, object]:
    """Point name -> the value the write asked for (rounded), for each point it touches."""
    asked: dict[str, object] = {}
    for point in register_map.points(table):
        if point.end <= address or point.address >= address + len(values):
            continue
        words = values[point.address - address : point.end - address]
        try:
            value: object = _rounded(
                float(
                    decode_value(
                        words, point.format, scale=point.scale, word_order=point.word_order
                    )
                )
            )
        except (GatewayError, ValueError, ArithmeticError):
            value = words
        asked[point.name] = value
    return asked or {f"{table.value} {address}": values}


def log_refused_write(
    info: UnitInfo,
    table: Table,
    address: int,
    values: list[int],
    client: str,
    code: int,
    outcome: str | None = None,
) -> None:
    """The one line of a refused (or failed) write: same shape whatever the reason.

    ``outcome`` is why, as the write path knows it; without it the code and the unit's state
    tell (less precisely: 0x04 and 0x0B have more than one meaning).
    """
    reason = _outcome(info, ExceptionCode(code), outcome)
    asked = _written(info.current_map(), table, address, values)
    verb = "failed" if reason in FAILED else "refused"
    shown = ", ".join(f"{name} = {value}" for name, value in asked.items())
    fields = {"event": f"write_{verb}", "points": asked, "reason": str(reason)}
    fields |= {"code": f"0x{code:02X}", "client": client}
    _LOGGER.warning(
        "write %s: %s by %s: %s (0x%02X)",
        verb,
        shown,
        client,
        reason,
        code,
        extra={"fields": fields, "unit": info.unit, "link": info.link},
    )
