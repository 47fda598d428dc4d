"""FC43 / MEI 14: read device identification (basic, regular and extended objects)."""

from __future__ import annotations

from gateway.modbus.tables import ExceptionCode

__all__ = ["read_identification"]

MAX_PDU = 253

_CONFORMITY_BASIC, _CONFORMITY_REGULAR, _CONFORMITY_EXTENDED = 0x81, 0x82, 0x83
_CATEGORY_RANGES = {1: range(0x00, 0x03), 2: range(0x00, 0x80), 3: range(0x00, 0x100)}


def read_identification(pdu: bytes, objects: dict[int, str]) -> bytes | ExceptionCode:
    """FC43 / MEI 14: read device identification, streamed or one object."""
    if len(pdu) < 2:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    if pdu[1] != 0x0E:
        return ExceptionCode.ILLEGAL_FUNCTION
    if len(pdu) < 4:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    read_code, object_id = pdu[2], pdu[3]
    encoded = {oid: text.encode("utf-8")[:240] for oid, text in sorted(objects.items())}
    conformity = _conformity(encoded)
    if read_code == 4:
        if object_id not in encoded:
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        return _mei_response(read_code, conformity, 0, [(object_id, encoded[object_id])])
    if read_code not in _CATEGORY_RANGES:
        return ExceptionCode.ILLEGAL_DATA_VALUE
    wanted = [oid for oid in encoded if oid in _CATEGORY_RANGES[read_code]]
    if object_id not in wanted:
        object_id = wanted[0] if wanted else 0
    chosen: list[tuple[int, bytes]] = []
    size = 7
    next_id = 0
    for oid in wanted:
        if oid < object_id:
            continue
        item_size = 2 + len(encoded[oid])
        if size + item_size > MAX_PDU:
            next_id = oid
            break
        chosen.append((oid, encoded[oid]))
        size += item_size
    return _mei_response(read_code, conformity, next_id, chosen)


def _conformity(objects: dict[int, bytes]) -> int:
    if any(oid >= 0x80 for oid in objects):
        return _CONFORMITY_EXTENDED
    if any(oid >= 0x03 for oid in objects):
        return _CONFORMITY_REGULAR
    return _CONFORMITY_BASIC


def _mei_response(
    read_code: int, conformity: int, next_id: int, items: list[tuple[int, bytes]]
) -> bytes:
    more = 0xFF if next_id else 0x00
    out = bytearray((43, 0x0E, read_code, conformity, more, next_id, len(items)))
    for oid, value in items:
        out += bytes((oid, len(value))) + value
    return bytes(out)
