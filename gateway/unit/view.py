"""UnitView: a served breaker as the feature packages (web console, MQTT) see it."""

from __future__ import annotations

from typing import Protocol

from gateway.regmap.specs import RegisterMap
from gateway.tuya.link import McuLink
from gateway.unit.backend import UnitBackend
from gateway.unit.cache import DatapointCache

__all__ = ["UnitView"]


class UnitView(Protocol):
    """One served breaker as the service holds it (gateway.service.Unit): read-only."""

    @property
    def register_map(self) -> RegisterMap: ...
    @property
    def link(self) -> McuLink: ...
    @property
    def cache(self) -> DatapointCache: ...
    @property
    def backend(self) -> UnitBackend: ...
