"""Modbus RTU frames, sans-IO: the CRC, and how long a frame is from its first bytes.

On a shared bus the line carries other servers' requests and replies too. A request's length
follows from its function code; a reply's from its function code and byte count. Knowing both
lets the server step over another server's reply without waiting for the line to fall silent.
"""

from __future__ import annotations

__all__ = ["crc16", "reply_length", "request_length", "whole_frame"]

# request layouts: a fixed length, or where the byte count is (length = that + count + 3)
_REQUEST_FIXED = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8, 7: 4, 8: 8, 11: 4, 12: 4, 17: 4}
_REQUEST_FIXED |= {22: 10, 24: 6, 43: 7}
_REQUEST_COUNT_AT = {15: 6, 16: 6, 20: 2, 21: 2, 23: 10}
# reply layouts: the byte count follows the function code, or a fixed length (echoes)
_REPLY_COUNTED = frozenset((1, 2, 3, 4, 12, 17, 20, 21, 23))
_REPLY_FIXED = {5: 8, 6: 8, 7: 5, 11: 8, 15: 8, 16: 8, 22: 10}
_EXCEPTION_REPLY = 5


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Modbus CRC-16 (sent low byte first); 0 over a whole frame with its CRC."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def request_length(buffer: bytearray) -> int | None:
    """Length of the request starting the buffer; 0 = need more bytes; None = unknown."""
    if len(buffer) < 2:
        return 0
    fc = buffer[1]
    if (fixed := _REQUEST_FIXED.get(fc)) is not None:
        return fixed
    if (at := _REQUEST_COUNT_AT.get(fc)) is not None:
        return buffer[at] + at + 3 if len(buffer) > at else 0
    return None


def reply_length(buffer: bytearray) -> int | None:
    """Length of the reply (another server's) starting the buffer; 0 = more; None = unknown."""
    if len(buffer) < 2:
        return 0
    fc = buffer[1]
    if fc & 0x80:
        return _EXCEPTION_REPLY
    if fc in _REPLY_COUNTED:
        return buffer[2] + 5 if len(buffer) > 2 else 0
    return _REPLY_FIXED.get(fc)


def whole_frame(buffer: bytearray, length: int | None) -> bool:
    """Whether the buffer starts with a frame of ``length`` bytes whose CRC holds."""
    if not length or len(buffer) < length:
        return False
    return crc16(memoryview(buffer)[:length]) == 0
