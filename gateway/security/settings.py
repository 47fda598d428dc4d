"""Security settings: the ``run`` options, the gateway.yaml pieces, and how they combine.

gateway.yaml::

    modbus:
      tcp: {host: 127.0.0.1, port: 502, allow: [10.0.0.0/24], write_allow: [10.0.0.5/32]}
      tls:
        host: 0.0.0.0
        port: 802
        cert: server.pem
        key: server.key
        ca: ca.pem
        allow: [10.0.0.0/24]
        roles: {operator: [read, operate, configure], viewer: [read]}
    audit: {file: audit.jsonl, max_bytes: 10000000, backups: 5}
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from gateway.errors import ConfigError
from gateway.modbus.server import TcpListener
from gateway.regmap.yaml_schema import Int, Key, ListOf, MapOf, Num, Str, obj
from gateway.security.roles import Permission

__all__ = [
    "AUDIT_SCHEMA",
    "TCP_SECURITY_KEYS",
    "TLS_SCHEMA",
    "SecuritySettings",
    "TlsSettings",
    "add_cli_options",
    "apply_cli_options",
    "security_from_yaml",
]

DEFAULT_TLS_PORT = 802  # Modbus/TCP Security, the specification's port
_CIDRS = ListOf(Str(description="a network (CIDR) or one address"))
TCP_SECURITY_KEYS = {
    "allow": _CIDRS,
    "write_allow": ListOf(Str(description="CIDR allowed to write over plain TCP")),
}
TLS_SCHEMA = obj(
    "the Modbus/TCP Security (TLS) listener",
    host=Str(),
    port=Int(0, 65535),
    cert=Key(Str(description="server certificate (PEM)"), True),
    key=Key(Str(description="server private key (PEM)"), True),
    ca=Key(Str(description="CA that client certificates must chain to (PEM)"), True),
    allow=_CIDRS,
    roles=MapOf(ListOf(Str(tuple(p.value for p in Permission))), "role -> permissions"),
    max_connections=Int(1, 10_000),
    max_connections_per_ip=Int(1, 10_000),
    idle_timeout_s=Num(exclusive_minimum=0),
    adu_timeout_s=Num(exclusive_minimum=0),
)
AUDIT_SCHEMA = obj(
    "the audit log of every write (JSON lines)",
    file=Key(Str(), True),
    max_bytes=Int(10_000, 10**12, "rotate when the file would grow past this"),
    backups=Int(0, 100),
)


@dataclasses.dataclass(frozen=True, slots=True)
class TlsSettings:
    """The TLS listener: where, its certificate files, and the role mapping."""

    listener: TcpListener
    cert: str
    key: str
    ca: str
    roles: Mapping[str, frozenset[Permission]] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SecuritySettings:
    """TLS listener (optional) and audit log (optional)."""

    tls: TlsSettings | None = None
    audit: str | None = None
    audit_max_bytes: int = 10_000_000
    audit_backups: int = 5


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """The ``run`` options of Modbus/TCP Security, allow lists and the audit log."""
    group = parser.add_argument_group("security")
    group.add_argument("--tls", metavar="HOST:PORT", help="Modbus/TCP Security listener (802)")
    group.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM)")
    group.add_argument("--tls-key", metavar="FILE", help="server private key (PEM)")
    group.add_argument("--tls-ca", metavar="FILE", help="CA the client certificates chain to")
    group.add_argument(
        "--allow", metavar="CIDR", action="append", help="accept clients from here (repeatable)"
    )
    group.add_argument("--audit", metavar="FILE", help="log every write as a JSON line here")


_TLS_FILES = ("tls-cert", "tls-key", "tls-ca")


class _HasSecurity(Protocol):
    @property
    def tcp(self) -> TcpListener | None: ...

    @property
    def security(self) -> SecuritySettings: ...


ConfigT = TypeVar("ConfigT", bound=_HasSecurity)


def apply_cli_options(config: ConfigT, args: argparse.Namespace) -> ConfigT:
    """``config`` (a GatewayConfig) with the security options applied."""
    security = config.security
    _check_tls_files_come_with_tls(args)
    if args.tls:
        if args.config:
            raise ConfigError(["--tls: not allowed with --config (use modbus.tls)"])
        security = dataclasses.replace(security, tls=_tls_from_args(args))
    if args.audit:
        security = dataclasses.replace(security, audit=args.audit)
    tcp = config.tcp
    if args.allow:
        allow = tuple(args.allow)
        if tcp is not None:
            tcp = dataclasses.replace(tcp, allow=(*tcp.allow, *allow))
        if security.tls is not None:
            listener = security.tls.listener
            listener = dataclasses.replace(listener, allow=(*listener.allow, *allow))
            security = dataclasses.replace(
                security, tls=dataclasses.replace(security.tls, listener=listener)
            )
    return dataclasses.replace(config, tcp=tcp, security=security)  # type: ignore[type-var]


def _check_tls_files_come_with_tls(args: argparse.Namespace) -> None:
    given = [f"--{n}" for n in _TLS_FILES if getattr(args, n.replace("-", "_"))]
    if given and not args.tls:
        raise ConfigError([f"{', '.join(given)} without --tls (give --tls HOST:PORT)"])


def _tls_from_args(args: argparse.Namespace) -> TlsSettings:
    missing = [f"--{n}" for n in _TLS_FILES if not getattr(args, n.replace("-", "_"))]
    if missing:
        raise ConfigError([f"--tls needs {', '.join(missing)}"])
    text: str = args.tls
    if text.endswith("]") or ":" not in text:  # just a host: the specification's port
        host, port_text = text, ""
    else:
        host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text) if port_text else DEFAULT_TLS_PORT
    except ValueError:
        raise ConfigError([f"--tls: expected HOST:PORT, got {args.tls!r}"]) from None
    if not 0 <= port <= 0xFFFF:
        raise ConfigError([f"--tls: port {port} is not 0..65535"])
    listener = TcpListener(host.strip("[]") or "127.0.0.1", port)
    return TlsSettings(listener, args.tls_cert, args.tls_key, args.tls_ca)


def security_from_yaml(data: Mapping[str, Any], base_dir: str) -> SecuritySettings:
    """The security settings of a checked gateway.yaml document."""
    tls = None
    raw_tls = data.get("modbus", {}).get("tls")
    if raw_tls:
        fields = dict(raw_tls)
        cert, key, ca = (_resolve(base_dir, fields.pop(name)) for name in ("cert", "key", "ca"))
        roles = fields.pop("roles", None)
        fields["allow"] = tuple(fields.get("allow", ()))
        listener = TcpListener(
            fields.pop("host", "127.0.0.1"), fields.pop("port", DEFAULT_TLS_PORT), **fields
        )
        tls = TlsSettings(listener, cert, key, ca, _roles(roles) if roles is not None else None)
    audit = data.get("audit") or {}
    return SecuritySettings(
        tls=tls,
        audit=_resolve(base_dir, audit["file"]) if "file" in audit else None,
        audit_max_bytes=audit.get("max_bytes", 10_000_000),
        audit_backups=audit.get("backups", 5),
    )


def _roles(raw: Mapping[str, list[str]]) -> dict[str, frozenset[Permission]]:
    return {
        role: frozenset(Permission(p) for p in permissions) for role, permissions in raw.items()
    }


def _resolve(base_dir: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))
