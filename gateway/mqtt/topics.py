"""The topic layout, a contract: ``{base}/{gateway_id}/status``, ``…/{unit}/{point}`` and more.

```
{base}/{gateway_id}/status                      online | offline (last will), retained
{base}/{gateway_id}/{unit}/status               online | offline: the unit's MCU link, retained
{base}/{gateway_id}/{unit}/{point}              the point's value, retained
{base}/{gateway_id}/{unit}/{point}/attributes   {"age_s", "stale", "unit_of_measurement"}
{base}/{gateway_id}/{unit}/{point}/set          a command (writable points only)
{base}/{gateway_id}/{unit}/{point}/result       ok, or "refused: <reason>"
{prefix}/{component}/{gateway_id}/{unit}_{point}/config   Home Assistant discovery
{prefix}/status                                 Home Assistant's own online | offline
```
"""

from __future__ import annotations

import dataclasses

__all__ = ["OFFLINE", "ONLINE", "Topics"]

ONLINE = "online"
OFFLINE = "offline"


@dataclasses.dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one gateway."""

    base: str
    gateway_id: str
    discovery_prefix: str = "homeassistant"

    @property
    def root(self) -> str:
        return f"{self.base}/{self.gateway_id}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def command_filter(self) -> str:
        return f"{self.root}/+/+/set"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def unit_status(self, unit: int) -> str:
        return f"{self.root}/{unit}/status"

    def state(self, unit: int, point: str) -> str:
        return f"{self.root}/{unit}/{point}"

    def attributes(self, unit: int, point: str) -> str:
        return f"{self.state(unit, point)}/attributes"

    def command(self, unit: int, point: str) -> str:
        return f"{self.state(unit, point)}/set"

    def result(self, unit: int, point: str) -> str:
        return f"{self.state(unit, point)}/result"

    def unit_key(self, unit: int) -> str:
        return f"{self.gateway_id}_{unit}"

    def discovery(self, component: str, unit: int, point: str) -> str:
        """The gateway id is the node id: one ACL line covers a gateway's discovery."""
        return f"{self.discovery_prefix}/{component}/{self.gateway_id}/{unit}_{point}/config"

    def parse_command(self, topic: str) -> tuple[int, str] | None:
        """(unit, point) of a command topic of this gateway; None for anything else."""
        prefix = f"{self.root}/"
        if not topic.startswith(prefix) or not topic.endswith("/set"):
            return None
        parts = topic[len(prefix) : -len("/set")].split("/")
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        return int(parts[0]), parts[1]
