"""Modbus request PDUs → response PDUs against a UnitBackend; no I/O and no pymodbus.

Reads (FC 1-4, 8, 43) are answered synchronously; writes (FC 5, 6, 15, 16, 23) return a
coroutine because the breaker may take seconds to confirm. Malformed requests get the
spec's exception ``FC|0x80``: 0x01 for an unknown function (or sub-function / MEI type),
0x03 for a quantity out of range, a byte count that disagrees or a truncated PDU.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from gateway.modbus.identification import read_identification
from gateway.modbus.tables import ExceptionCode, Table

__all__ = [
    "Answer",
    "UnitBackend",
    "answer_pdu",
    "exception_pdu",
    "is_write",
    "write_request",
    "write_target",
]

_LOGGER = logging.getLogger(__name__)

MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_BITS = 0x7B0
MAX_WRITE_REGISTERS = 0x7B
MAX_RW_WRITE_REGISTERS = 0x79

_READ_TABLES = {
    1: Table.COIL,
    2: Table.DISCRETE_INPUT,
    3: Table.HOLDING_REGISTER,
    4: Table.INPUT_REGISTER,
}
_ADDR_COUNT = struct.Struct(">HH")
_COIL_ON = 0xFF00

Answer = bytes | Coroutine[Any, Any, bytes]


class UnitBackend(Protocol):
    """One Modbus unit as the server sees it (implemented by gateway.unit.backend)."""

    identification: dict[int, str]

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode: ...

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None: ...

    def count_request(self, exception: ExceptionCode | None, function_code: int = 0) -> None: ...

    def moves_motor(self, table: Table, address: int, count: int) -> bool: ...

    def count_broadcast_refused(self) -> None: ...

    def refused(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        code: ExceptionCode,
        why: str,
    ) -> None:
        """Log a write the server refused before it reached ``write`` (``why``: the reason)."""


def exception_pdu(function_code: int, code: int) -> bytes:
    """The exception response for a function code."""
    return bytes(((function_code | 0x80) & 0xFF, code))


def answer_pdu(
    backend: UnitBackend,
    pdu: bytes,
    client: str,
    identification: dict[int, str],
    arrived: float | None = None,
) -> Answer:
    """Answer one request PDU (non-empty); a coroutine for requests that write.

    ``arrived`` is the loop time the request arrived: a write's window starts then.
    """
    fc = pdu[0]
    table = _READ_TABLES.get(fc)
    if table is not None:
        return _counted(backend, fc, _read(backend, table, fc, pdu))
    writer = _WRITERS.get(fc)
    if writer is not None:
        return _write(backend, writer, pdu, client, arrived)
    if fc == 23:
        return _read_write(backend, pdu, client, arrived)
    if fc == 8:
        return _counted(backend, fc, _diagnostics(pdu))
    if fc == 43:
        return _counted(
            backend, fc, read_identification(pdu, backend.identification or identification)
        )
    return _counted(backend, fc, ExceptionCode.ILLEGAL_FUNCTION)


def _counted(backend: UnitBackend, fc: int, result: bytes | ExceptionCode) -> bytes:
    if isinstance(result, ExceptionCode):
        backend.count_request(result, fc)
        return exception_pdu(fc, result)
    backend.count_request(None, fc)
    return result


def _read(backend: UnitBackend, table: Table, fc: int, pdu: bytes) -> bytes | ExceptionCode:
    if len(pdu) < 5:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    address, count = _ADDR_COUNT.unpack_from(pdu, 1)
    limit = MAX_READ_BITS if fc <= 2 else MAX_READ_REGISTERS
    if not 1 <= count <= limit:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if address + count > 0x10000:
        return ExceptionCode.ILLEGAL_DATA_ADDRESS
    values = backend.read(table, address, count)
    if isinstance(values, ExceptionCode):
        return values
    if fc <= 2:
        packed = pack_bits(values)
        return bytes((fc, len(packed))) + packed
    return struct.pack(f">BB{count}H", fc, count * 2, *values)


def pack_bits(bits: list[int]) -> bytes:
    """Bits LSB first, padded with zeros to whole bytes."""
    acc = 0
    for i, bit in enumerate(bits):
        if bit:
            acc |= 1 << i
    return acc.to_bytes((len(bits) + 7) // 8, "little")


def unpack_bits(data: bytes, count: int) -> list[int]:
    """The first ``count`` bits of data, LSB first."""
    acc = int.from_bytes(data, "little")
    return [(acc >> i) & 1 for i in range(count)]


# A write parser returns (table, address, values, response) or an exception code.
_Parsed = tuple[Table, int, list[int], bytes] | ExceptionCode


def _parse_write_coil(pdu: bytes) -> _Parsed:
    if len(pdu) < 5:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    address, value = _ADDR_COUNT.unpack_from(pdu, 1)
    if value not in (0, _COIL_ON):
        return ExceptionCode.ILLEGAL_DATA_VALUE
    return Table.COIL, address, [1 if value else 0], pdu[:5]


def _parse_write_register(pdu: bytes) -> _Parsed:
    if len(pdu) < 5:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    address, value = _ADDR_COUNT.unpack_from(pdu, 1)
    return Table.HOLDING_REGISTER, address, [value], pdu[:5]


def _parse_write_coils(pdu: bytes) -> _Parsed:
    if len(pdu) < 6:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    address, count = _ADDR_COUNT.unpack_from(pdu, 1)
    byte_count = pdu[5]
    if not 1 <= count <= MAX_WRITE_BITS or byte_count != (count + 7) // 8:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if len(pdu) != 6 + byte_count:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if address + count > 0x10000:
        return ExceptionCode.ILLEGAL_DATA_ADDRESS
    return Table.COIL, address, unpack_bits(pdu[6:], count), pdu[:5]


def _parse_write_registers(pdu: bytes) -> _Parsed:
    if len(pdu) < 6:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    address, count = _ADDR_COUNT.unpack_from(pdu, 1)
    byte_count = pdu[5]
    if not 1 <= count <= MAX_WRITE_REGISTERS or byte_count != count * 2:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if len(pdu) != 6 + byte_count:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if address + count > 0x10000:
        return ExceptionCode.ILLEGAL_DATA_ADDRESS
    values = list(struct.unpack_from(f">{count}H", pdu, 6))
    return Table.HOLDING_REGISTER, address, values, pdu[:5]


_WRITERS = {
    5: _parse_write_coil,
    6: _parse_write_register,
    15: _parse_write_coils,
    16: _parse_write_registers,
}


def is_write(pdu: bytes) -> bool:
    """Whether a request PDU writes (FC 5, 6, 15, 16, 23)."""
    return bool(pdu) and (pdu[0] in _WRITERS or pdu[0] == 23)


def write_target(pdu: bytes) -> tuple[Table, int, int] | None:
    """(table, address, count) a well-formed write request writes; None for anything else."""
    parser = _WRITERS.get(pdu[0]) if pdu else None
    if parser is not None:
        parsed = parser(pdu)
        if isinstance(parsed, ExceptionCode):
            return None
        return parsed[0], parsed[1], len(parsed[2])
    if pdu[:1] == b"\x17" and len(pdu) >= 10:
        address, count = _ADDR_COUNT.unpack_from(pdu, 5)
        return Table.HOLDING_REGISTER, address, count
    return None


def write_request(pdu: bytes) -> tuple[Table, int, list[int]] | None:
    """(table, address, values) a well-formed write request writes; None for anything else."""
    parser = _WRITERS.get(pdu[0]) if pdu else None
    if parser is not None:
        parsed = parser(pdu)
        return None if isinstance(parsed, ExceptionCode) else parsed[:3]
    target = write_target(pdu)
    if target is None:
        return None
    table, address, count = target
    data = pdu[10 : 10 + 2 * count]
    return table, address, list(struct.unpack(f">{len(data) // 2}H", data[: len(data) // 2 * 2]))


async def _write(
    backend: UnitBackend,
    parser: Callable[[bytes], _Parsed],
    pdu: bytes,
    client: str,
    arrived: float | None,
) -> bytes:
    fc = pdu[0]
    parsed = parser(pdu)
    if isinstance(parsed, ExceptionCode):
        return _counted(backend, fc, parsed)
    table, address, values, response = parsed
    code = await backend.write(table, address, values, client, arrived)
    return _counted(backend, fc, code if code is not None else response)


async def _read_write(
    backend: UnitBackend, pdu: bytes, client: str, arrived: float | None
) -> bytes:
    """FC23: the write is performed before the read (spec 6.17)."""
    if len(pdu) < 10:
        return _counted(backend, 23, ExceptionCode.ILLEGAL_DATA_VALUE)
    read_address, read_count, write_address, write_count = struct.unpack_from(">HHHH", pdu, 1)
    byte_count = pdu[9]
    if (
        not 1 <= read_count <= MAX_READ_REGISTERS
        or not 1 <= write_count <= MAX_RW_WRITE_REGISTERS
        or byte_count != write_count * 2
        or len(pdu) != 10 + byte_count
    ):
        return _counted(backend, 23, ExceptionCode.ILLEGAL_DATA_VALUE)
    if read_address + read_count > 0x10000 or write_address + write_count > 0x10000:
        return _counted(backend, 23, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    before = backend.read(Table.HOLDING_REGISTER, read_address, read_count)
    if isinstance(before, ExceptionCode):  # checked first: an exception must mean nothing written
        return _counted(backend, 23, before)
    values = list(struct.unpack_from(f">{write_count}H", pdu, 10))
    code = await backend.write(Table.HOLDING_REGISTER, write_address, values, client, arrived)
    if code is not None:
        return _counted(backend, 23, code)
    read = backend.read(Table.HOLDING_REGISTER, read_address, read_count)
    if isinstance(read, ExceptionCode):
        return _counted(backend, 23, read)
    return _counted(backend, 23, struct.pack(f">BB{read_count}H", 23, read_count * 2, *read))


def _diagnostics(pdu: bytes) -> bytes | ExceptionCode:
    """FC8: only sub-function 0 (return query data) is supported."""
    if len(pdu) < 3:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if pdu[1:3] != b"\x00\x00":
        return ExceptionCode.ILLEGAL_FUNCTION
    return pdu
