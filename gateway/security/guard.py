"""Who may do what: each connection's backends wrapped to check permissions and audit writes.

Reading needs ``read``; writing a coil, the motor's datapoint or prepayment needs ``operate``;
any other holding register needs ``configure``. A request not permitted answers 0x01 and is
logged with the client's address, certificate subject and role. Every write, done or refused,
is one line in the audit log when there is one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping

from gateway.errors import WriteRejectedError
from gateway.modbus.access import ClientIdentity, Guard
from gateway.modbus.limits import RateLimitedLog
from gateway.modbus.pdu import UnitBackend
from gateway.modbus.proxy import UnitProxy
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.registers import decode_value
from gateway.regmap.specs import DpSource, PointSpec, RegisterMap
from gateway.security.audit import AuditEvent, AuditLog
from gateway.security.roles import DEFAULT_ROLES, NO_ROLE, Permission, certificate_identity
from gateway.unit.reads import PointIndex

__all__ = ["AccessPolicy", "Client", "SecurityCounters"]

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    """A connection's client as the policy sees it."""

    address: str
    listener: str
    subject: str | None
    role: str | None
    permissions: frozenset[Permission]
    why_not: str  # what a refusal log says is missing

    def describe(self) -> str:
        if self.subject is None:
            return self.address
        return f"{self.address} ({self.subject}, role {self.role or 'none'})"


@dataclasses.dataclass(slots=True)
class SecurityCounters:
    """Refused writes and reads, gateway-wide and per unit."""

    refused_writes: int = 0
    refused_reads: int = 0
    refused_writes_by_unit: dict[int, int] = dataclasses.field(default_factory=dict)


class AccessPolicy:
    """Roles, write allow list, point classification and the audit log, for every listener."""

    def __init__(
        self,
        regmaps: Mapping[int, RegisterMap],
        roles: Mapping[str, frozenset[Permission]] | None = None,
        write_allow: Callable[[str], bool] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._regmaps = regmaps
        self._indexes = {unit: PointIndex(regmap) for unit, regmap in regmaps.items()}
        self.roles = dict(DEFAULT_ROLES if roles is None else roles)
        self._write_allow = write_allow
        self.audit = audit
        self.counters = SecurityCounters()
        self.refusals = RateLimitedLog(_LOGGER, interval_s=10.0)

    def guard(self) -> Guard:
        """The hook a TCP or TLS listener calls for each unit of each new connection."""
        return lambda unit, backend, identity: GuardedUnit(
            backend, unit, self.client(identity), self
        )

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one policy per service, identities repeat
    def client(self, identity: ClientIdentity) -> Client:
        """Permissions of a connection: by certificate role on TLS, by write allow list on TCP."""
        if identity.certificate is not None:
            cert = certificate_identity(identity.certificate)
            if cert.role is None:
                permissions, why = NO_ROLE, "certificate without a role"
            else:
                permissions = self.roles.get(cert.role, NO_ROLE)
                why = f"role {cert.role}"
            return Client(
                identity.address, identity.listener, cert.subject, cert.role, permissions, why
            )
        if self._write_allow is None or self._write_allow(identity.host):
            return Client(
                identity.address, identity.listener, None, None, frozenset(Permission), ""
            )
        return Client(
            identity.address, identity.listener, None, None, NO_ROLE, "not in write_allow"
        )

    def needed(self, unit: int, table: Table, address: int, count: int) -> Permission:
        """operate for coils, the motor and prepayment; configure for other registers."""
        if table is Table.COIL:
            return Permission.OPERATE
        slots = (
            self._indexes[unit].covering(table, address, count) if unit in self._indexes else None
        )
        regmap = self._regmaps.get(unit)
        for slot in slots or ():
            source = slot.point.source
            if regmap is not None and isinstance(source, DpSource):
                spec = regmap.datapoints[source.datapoint]
                if spec.motor or "prepay" in spec.name:
                    return Permission.OPERATE
        return Permission.CONFIGURE

    def points(self, unit: int, table: Table, address: int, count: int) -> list[PointSpec]:
        """The points a request covers (none at a gap)."""
        index = self._indexes.get(unit)
        slots = index.covering(table, address, count) if index is not None else None
        return [slot.point for slot in slots or ()]

    def refused(self, client: Client, unit: int, what: str, needed: Permission) -> None:
        """Count and log (rate-limited per client) a refused request."""
        self.counters.refused_writes += 1 if what != "read" else 0
        self.counters.refused_reads += 1 if what == "read" else 0
        if what != "read":
            by_unit = self.counters.refused_writes_by_unit
            by_unit[unit] = by_unit.get(unit, 0) + 1
        self.refusals.warning(
            client.address, "%s: %s of unit %d by %s refused (0x01): needs %s, %s",
            client.listener, what, unit, client.describe(), needed.value, client.why_not,
        )  # fmt: skip


class GuardedUnit(UnitProxy):
    """One unit as one connection's client may use it."""

    def __init__(
        self, backend: UnitBackend, unit: int, client: Client, policy: AccessPolicy
    ) -> None:
        super().__init__(backend)
        self._unit = unit
        self._client = client
        self._policy = policy

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        if Permission.READ not in self._client.permissions:
            self._policy.refused(self._client, self._unit, "read", Permission.READ)
            return ExceptionCode.ILLEGAL_FUNCTION
        return self.inner.read(table, address, count)

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None:
        policy = self._policy
        needed = policy.needed(self._unit, table, address, len(values))
        old = self.inner.read(table, address, len(values)) if policy.audit else None
        if needed not in self._client.permissions:
            policy.refused(self._client, self._unit, f"write ({needed.value})", needed)
            self._audit(table, address, old, values, ExceptionCode.ILLEGAL_FUNCTION, None)
            return ExceptionCode.ILLEGAL_FUNCTION
        start = time.monotonic()
        code = await self.inner.write(table, address, values, client, arrived)
        self._audit(table, address, old, values, code, (time.monotonic() - start) * 1000)
        return code

    def _audit(
        self,
        table: Table,
        address: int,
        old: list[int] | ExceptionCode | None,
        new: list[int],
        code: ExceptionCode | None,
        confirm_ms: float | None,
    ) -> None:
        audit = self._policy.audit
        if audit is None:
            return
        points = self._policy.points(self._unit, table, address, len(new))
        client = self._client
        audit.record(
            AuditEvent(
                source=f"modbus/{client.listener}",
                client=client.address,
                unit=self._unit,
                point=",".join(p.name for p in points) or f"{table.value}[{address}]",
                old=_values(points, address, old),
                new=_values(points, address, new),
                result="ok" if code is None else f"exception 0x{code:02X}",
                confirm_ms=None if confirm_ms is None else round(confirm_ms, 1),
                subject=client.subject,
                role=client.role,
            )
        )


def _values(
    points: list[PointSpec], address: int, words: list[int] | ExceptionCode | None
) -> object:
    """Engineering values of the points in ``words``: one value, a name → value map, or words."""
    if not isinstance(words, list):
        return None if words is None else f"exception 0x{words:02X}"
    if not points or points[0].address != address or points[-1].end != address + len(words):
        return words  # a gap or half a point: the backend refuses it, the log shows the words
    shown: dict[str, object] = {}
    for point in points:
        part = words[point.address - address : point.end - address]
        try:
            value = decode_value(part, "bool" if point.table.is_bits else point.format,
                                 scale=point.scale, word_order=point.word_order)  # fmt: skip
            shown[point.name] = int(value) if value.denominator == 1 else float(value)
        except WriteRejectedError:
            shown[point.name] = part
    return next(iter(shown.values())) if len(shown) == 1 else shown
