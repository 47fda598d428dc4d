"""Modbus/TCP Security: TLS with client certificates, roles, allow lists and the audit log."""
