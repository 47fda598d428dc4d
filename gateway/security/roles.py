"""Roles from client certificates (Modbus/TCP Security) and the permissions they grant."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

__all__ = [
    "DEFAULT_ROLES",
    "NO_ROLE",
    "ROLE_OID",
    "CertificateIdentity",
    "Permission",
    "certificate_identity",
    "encode_role",
]

ROLE_OID = "1.3.6.1.4.1.50316.802.1"  # Modbus/TCP Security: the role, an ASN.1 UTF8String
_UTF8_STRING = 0x0C


class Permission(enum.StrEnum):
    """What a role may do: read anything, operate the breaker, configure settings."""

    READ = "read"
    OPERATE = "operate"  # coils, the motor DP and prepayment
    CONFIGURE = "configure"  # thresholds and every other holding register


DEFAULT_ROLES: Mapping[str, frozenset[Permission]] = {
    "operator": frozenset(Permission),
    "viewer": frozenset({Permission.READ}),
}
NO_ROLE = frozenset({Permission.READ})  # a certificate without the role extension


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """The subject and role a client certificate names."""

    subject: str
    role: str | None


def certificate_identity(der: bytes) -> CertificateIdentity:
    """Subject (RFC 4514) and role of a DER certificate; role None without a valid extension."""
    from cryptography import x509  # only a TLS listener needs it: imported when one runs

    cert = x509.load_der_x509_certificate(der)
    subject = cert.subject.rfc4514_string()
    try:
        extension = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(ROLE_OID)).value
    except x509.ExtensionNotFound:
        return CertificateIdentity(subject, None)
    assert isinstance(extension, x509.UnrecognizedExtension)
    return CertificateIdentity(subject, decode_role(extension.value))


def decode_role(der: bytes) -> str | None:
    """The text of a DER UTF8String; None if it is anything else."""
    if len(der) < 2 or der[0] != _UTF8_STRING:
        return None
    length, start = der[1], 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 2 or len(der) < 2 + size:
            return None
        length, start = int.from_bytes(der[2 : 2 + size], "big"), 2 + size
    if len(der) != start + length:
        return None
    try:
        return der[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def encode_role(role: str) -> bytes:
    """A role as the DER UTF8String the extension holds (for making certificates)."""
    text = role.encode("utf-8")
    if len(text) < 0x80:
        return bytes((_UTF8_STRING, len(text))) + text
    size = 1 if len(text) < 0x100 else 2  # DER: the shortest long form
    return bytes((_UTF8_STRING, 0x80 | size)) + len(text).to_bytes(size, "big") + text
