"""``--map auto``: a unit whose map is chosen from the product key the MCU reports.

Until the handshake, and for a key no shipped map lists, every request is answered 0x0B
(the link stays up, so the key is logged and ``discover`` can still be run elsewhere).
The choice holds until the gateway restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.modbus.pdu import UnitBackend
from gateway.modbus.proxy import UnitProxy
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.catalog import MapChoice, choose_map, shipped_maps
from gateway.regmap.specs import RegisterMap
from gateway.tuya.link import LinkState, McuLink
from gateway.unit.outcome import WriteOutcome, note

__all__ = ["AutoBackend"]

_LOGGER = logging.getLogger(__name__)
_NOT_SERVING = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE


class _NotServing:
    """What an auto unit serves until its map is chosen: 0x0B to every request."""

    def __init__(self, unit_id: int) -> None:
        self.identification: dict[int, str] = {}
        self._unit_id = unit_id

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        return _NOT_SERVING

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None:
        note(WriteOutcome.NOT_SERVING)
        return _NOT_SERVING

    def count_request(self, exception: ExceptionCode | None, function_code: int = 0) -> None:
        pass

    def moves_motor(self, table: Table, address: int, count: int) -> bool:
        return False

    def count_broadcast_refused(self) -> None:
        pass

    def refused(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        code: ExceptionCode,
        why: str,
    ) -> None:
        _LOGGER.warning("unit %d: write refused by %s: %s", self._unit_id, client, why)


class AutoBackend(UnitProxy):
    """Serves through the backend ``use_map`` builds for the chosen map; 0x0B before."""

    def __init__(
        self,
        unit_id: int,
        use_map: Callable[[RegisterMap], UnitBackend],
        choose: Callable[[str | None], MapChoice] = choose_map,
    ) -> None:
        super().__init__(_NotServing(unit_id))
        self.chosen: RegisterMap | None = None
        self._unit_id = unit_id
        self._use_map = use_map
        self._choose = choose
        self._refused: set[str | None] = set()

    def state_listener(self, link: McuLink) -> Callable[[LinkState], None]:
        """A link state listener that chooses the map when the link is READY."""

        def on_state(state: LinkState) -> None:
            if state is LinkState.READY:
                info = link.product_info
                self.on_product_key(info.product_key if info is not None else None)

        return on_state

    def on_product_key(self, key: str | None) -> None:
        if self.chosen is not None:
            if key not in self.chosen.device.product_keys:
                _LOGGER.warning(
                    "unit %d: the MCU now reports product key %r; map %s stays until restart",
                    self._unit_id,
                    key,
                    self.chosen.path,
                )
            return
        choice = self._choose(key)
        if choice.map is None:
            self._refuse(key)
            return
        also = f" (also fits: {', '.join(choice.also)})" if choice.also else ""
        _LOGGER.info(
            "unit %d: --map auto: product key %r -> map %s (%s)%s",
            self._unit_id,
            key,
            choice.map.path,
            choice.map.device.name,
            also,
        )
        self.chosen = choice.map
        self.inner = self._use_map(choice.map)

    def _refuse(self, key: str | None) -> None:
        if key in self._refused:
            return
        self._refused.add(key)
        known = sorted({k for m in shipped_maps() for k in m.device.product_keys})
        _LOGGER.error(
            "unit %d: --map auto: product key %r is in no shipped map (known: %s):"
            " NOT SERVING, every request answers 0x0B; run discover and give --map",
            self._unit_id,
            key,
            ", ".join(known),
        )
