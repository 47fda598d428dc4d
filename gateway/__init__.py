"""tuya-modbus-gateway: serve a TuyaMCU smart breaker as a Modbus RTU/TCP meter.

The front door: what a program embedding the gateway needs. The layers behind it are
``gateway.tuya`` (the WiFi-module side of TuyaMCU), ``gateway.modbus`` (Modbus framing),
``gateway.regmap`` (register maps), ``gateway.unit`` (one served unit) and ``gateway.twin``
(the MCU twin); ``docs/ARCHITECTURE.md`` draws them. The names are imported on first use, so
``python -m gateway`` can take over SIGINT and SIGTERM before the heavy imports run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gateway.errors import GatewayError
    from gateway.regmap.load import load_map
    from gateway.service import GatewayService
    from gateway.tuya.link import McuLink

__all__ = ["GatewayError", "GatewayService", "McuLink", "__version__", "load_map"]

_HOMES = {
    "GatewayError": "gateway.errors",
    "GatewayService": "gateway.service",
    "McuLink": "gateway.tuya.link",
    "load_map": "gateway.regmap.load",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
