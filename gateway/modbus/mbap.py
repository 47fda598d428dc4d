"""Modbus TCP framing (MBAP header), sans-IO: split a byte stream into ADUs, build replies."""

from __future__ import annotations

import struct

__all__ = ["MBAP_SIZE", "encode_adu", "has_adu", "split_adus"]

_MBAP = struct.Struct(">HHHB")
MBAP_SIZE = 7
# length counts the unit id and the PDU: at least unit + function code, at most 1 + 253.
MIN_LENGTH = 2
MAX_LENGTH = 254

# (transaction id, protocol id, unit id, PDU)
Adu = tuple[int, int, int, bytes]


def split_adus(data: bytes, position: int, limit: int) -> tuple[list[Adu], int, int | None]:
    """Up to ``limit`` whole ADUs from ``data[position:]``: (ADUs, new position, bad length).

    A bad length (outside MIN_LENGTH..MAX_LENGTH) means the stream cannot be framed any more.
    """
    adus: list[Adu] = []
    end = len(data)
    while end - position >= MBAP_SIZE and len(adus) < limit:
        tid, pid, length, unit = _MBAP.unpack_from(data, position)
        if not MIN_LENGTH <= length <= MAX_LENGTH:
            return adus, position, length
        stop = position + 6 + length
        if stop > end:
            break
        adus.append((tid, pid, unit, data[position + MBAP_SIZE : stop]))
        position = stop
    return adus, position, None


def has_adu(data: bytes, position: int) -> bool:
    """Whether ``data[position:]`` starts with a whole ADU (or a bad header to act on)."""
    left = len(data) - position
    if left < MBAP_SIZE:
        return False
    length = int.from_bytes(data[position + 4 : position + 6], "big")
    return left >= 6 + length or not MIN_LENGTH <= length <= MAX_LENGTH


def encode_adu(tid: int, unit: int, pdu: bytes) -> bytes:
    """A reply ADU."""
    return _MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu
