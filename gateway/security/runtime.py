"""The security of a running gateway: listeners' hooks, the audit log, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping

from gateway.modbus.server import ListenerSecurity, TcpListener
from gateway.regmap.specs import RegisterMap
from gateway.security.allow import Allowlist, parse_networks
from gateway.security.audit import AuditLog
from gateway.security.guard import AccessPolicy
from gateway.security.settings import SecuritySettings
from gateway.security.tls import reload_certificate, server_context

__all__ = ["SecurityRuntime"]


class SecurityRuntime:
    """Builds the listeners' security hooks (ConfigError early); opens the audit log on start."""

    def __init__(
        self,
        settings: SecuritySettings,
        tcp: TcpListener | None,
        regmaps: Mapping[int, RegisterMap],
    ) -> None:
        self.settings = settings
        self._tcp = tcp
        write_allow = None
        if tcp is not None and tcp.write_allow is not None:
            write_allow = Allowlist(parse_networks(tcp.write_allow, "modbus.tcp.write_allow"))
        tls = settings.tls
        self.policy = AccessPolicy(regmaps, tls.roles if tls else None, write_allow)
        self.context = server_context(tls.cert, tls.key, tls.ca) if tls is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None

    def tcp_security(self) -> ListenerSecurity | None:
        """Hooks of the plain TCP listener: allow list, and a guard for write_allow or audit."""
        tcp = self._tcp
        if tcp is None:
            return None
        admit = Allowlist(parse_networks(tcp.allow, "modbus.tcp.allow")) if tcp.allow else None
        needs_guard = tcp.write_allow is not None or self.settings.audit is not None
        return ListenerSecurity(admit=admit, guard=self.policy.guard() if needs_guard else None)

    def tls_listener(self) -> tuple[TcpListener, ListenerSecurity] | None:
        """The TLS listener and its hooks: context, allow list, role guard."""
        tls = self.settings.tls
        if tls is None:
            return None
        allow = tls.listener.allow
        admit = Allowlist(parse_networks(allow, "modbus.tls.allow")) if allow else None
        return tls.listener, ListenerSecurity(self.context, admit, self.policy.guard())

    def start(self) -> None:
        """Open the audit log; reload the TLS certificate on SIGHUP."""
        settings = self.settings
        if settings.audit is not None and self.policy.audit is None:
            self.policy.audit = AuditLog(
                settings.audit, settings.audit_max_bytes, settings.audit_backups
            )
        if self.context is not None and settings.tls is not None:
            self._loop = asyncio.get_running_loop()
            context, tls = self.context, settings.tls
            self._loop.add_signal_handler(
                signal.SIGHUP, reload_certificate, context, tls.cert, tls.key, tls.ca
            )

    def stop(self) -> None:
        """Stop reloading, flush and close the audit log."""
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGHUP)
            self._loop = None
        if self.policy.audit is not None:
            self.policy.audit.close()
            self.policy.audit = None
