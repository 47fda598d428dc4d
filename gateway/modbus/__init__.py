"""Modbus framing only: tables and exception codes, MBAP, PDUs, sessions, TCP, RTU, the server."""
