"""Modbus vocabulary shared by the map, the backends and the server (no pymodbus here)."""

from __future__ import annotations

import enum

__all__ = ["ExceptionCode", "Table"]


class Table(enum.Enum):
    """The four Modbus data tables; the value is the name used in maps and docs."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    INPUT_REGISTER = "input_register"
    HOLDING_REGISTER = "holding_register"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)

    @property
    def is_writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING_REGISTER)


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes the gateway answers with."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    SERVER_DEVICE_BUSY = 0x06
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_NO_RESPONSE = 0x0B
