"""tuya-modbus-gateway: serve a TuyaMCU smart breaker as a Modbus RTU/TCP meter.

The front door: what a program embedding the gateway needs. The layers behind it are
``gateway.tuya`` (the WiFi-module side of TuyaMCU), ``gateway.modbus`` (Modbus framing),
``gateway.regmap`` (register maps), ``gateway.unit`` (one served unit) and ``gateway.twin``
(the MCU twin); ``docs/ARCHITECTURE.md`` draws them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from gateway.errors import GatewayError
from gateway.regmap.load import load_map
from gateway.service import GatewayService
from gateway.tuya.link import McuLink

__all__ = ["GatewayError", "GatewayService", "McuLink", "__version__", "load_map"]
