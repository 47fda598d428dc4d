"""The TLS server context of the Modbus/TCP Security listener, and its reload on SIGHUP."""

from __future__ import annotations

import logging
import ssl

from gateway.errors import ConfigError

__all__ = ["reload_certificate", "server_context"]

_LOGGER = logging.getLogger(__name__)


def server_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """TLS 1.2 or newer, no compression or renegotiation, client certificates chaining to ca."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError([f"tls: cannot load {cert}, {key} or {ca}: {err}"]) from err
    return context


def reload_certificate(context: ssl.SSLContext, cert: str, key: str, ca: str) -> bool:
    """Load a new certificate and key, and add ca's certificates, for new handshakes.

    OpenSSL can add to a context's trust store but not take a CA out of it: dropping a CA
    needs a restart. If anything fails to load, the old certificate stays.
    """
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as err:
        _LOGGER.error(
            "tls: reload of %s / %s / %s failed, keeping the old certificate: %s",
            *(cert, key, ca, err),
        )
        return False
    _LOGGER.info("tls: certificate %s, key %s and CA %s reloaded", cert, key, ca)
    return True
