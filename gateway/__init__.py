"""tuya-modbus-gateway: serve a TuyaMCU smart breaker as a Modbus RTU/TCP meter."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
