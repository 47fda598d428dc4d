"""Payloads of the housekeeping frames: product info (0x01), local time (0x1C), GMT time (0x0C)
and the module's MAC address (0x2D). No I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime

__all__ = [
    "MAC_LEN",
    "MAC_PATTERN",
    "ProductInfo",
    "decode_gmt_time",
    "decode_local_time",
    "decode_module_mac",
    "derived_mac",
    "encode_gmt_time",
    "encode_local_time",
    "encode_module_mac",
    "parse_mac",
]

MAC_LEN = 6
MAC_PATTERN = r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$"  # what parse_mac accepts
_MAC_OK = 0x00
_LOCALLY_ADMINISTERED = 0x02  # bit 1 of the first octet; bit 0 clear: unicast


@dataclasses.dataclass(frozen=True, slots=True)
class ProductInfo:
    """The MCU's answer to 0x01: product key, MCU version, mode, and the raw text."""

    product_key: str
    version: str
    mode: int | None
    raw: str

    @classmethod
    def decode(cls, data: bytes) -> ProductInfo:
        text = data.decode("utf-8", errors="replace")
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):  # very old MCUs send the bare product key
            return cls(product_key=text.strip(), version="", mode=None, raw=text)
        mode = fields.get("m")
        return cls(
            product_key=str(fields.get("p", "")),
            version=str(fields.get("v", "")),
            mode=mode if isinstance(mode, int) else None,
            raw=text,
        )

    def encode(self) -> bytes:
        fields: dict[str, object] = {"p": self.product_key, "v": self.version}
        if self.mode is not None:
            fields["m"] = self.mode
        return json.dumps(fields, separators=(",", ":")).encode()


def encode_local_time(now: datetime | None) -> bytes:
    """The 8-byte answer to 0x1C; all zero when the time is unknown."""
    if now is None:
        return bytes(8)
    return bytes(
        (1, now.year % 100, now.month, now.day, now.hour, now.minute, now.second, now.isoweekday())
    )


def decode_local_time(data: bytes) -> datetime | None:
    if len(data) != 8 or data[0] == 0:
        return None
    return datetime(2000 + data[1], data[2], data[3], data[4], data[5], data[6])


def encode_gmt_time(now: datetime | None) -> bytes:
    """The 7-byte answer to 0x0C: valid flag, then UTC year-2000, month, day, h, min, s."""
    if now is None:
        return bytes(7)
    utc = now.astimezone(UTC)
    return bytes((1, utc.year % 100, utc.month, utc.day, utc.hour, utc.minute, utc.second))


def decode_gmt_time(data: bytes) -> datetime | None:
    if len(data) != 7 or data[0] == 0:
        return None
    return datetime(2000 + data[1], data[2], data[3], data[4], data[5], data[6], tzinfo=UTC)


def encode_module_mac(mac: bytes) -> bytes:
    """The answer to 0x2D: 0x00 (success), then the six MAC bytes."""
    if len(mac) != MAC_LEN:
        raise ValueError(f"a MAC address has {MAC_LEN} bytes, got {len(mac)}")
    return bytes((_MAC_OK,)) + mac


def decode_module_mac(data: bytes) -> bytes | None:
    if len(data) != 1 + MAC_LEN or data[0] != _MAC_OK:
        return None
    return data[1:]


def parse_mac(text: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` (or with ``-``, or bare hex) as six bytes; ValueError otherwise."""
    digits = text.replace(":", "").replace("-", "").strip()
    mac = bytes.fromhex(digits)
    if len(mac) != MAC_LEN:
        raise ValueError(f"{text!r} is not a MAC address of {MAC_LEN} bytes")
    return mac


def derived_mac(seed: str) -> bytes:
    """A stable locally administered unicast MAC address derived from ``seed`` (the link URL)."""
    digest = bytearray(hashlib.sha256(seed.encode()).digest()[:MAC_LEN])
    digest[0] = (digest[0] & 0xFC) | _LOCALLY_ADMINISTERED
    return bytes(digest)
