"""Lifetime energy that never goes backwards, from an MCU counter that sometimes does.

When the counter drops (MCU reset, energy cleared, garbage after a reboot) the lifetime keeps
its value and counts on from the new counter; a rise larger than the breaker's rating allows
since the base report is logged and not counted (the new value becomes the base).
:func:`advance` is the pure rule; :class:`LifetimeEnergy` applies it to reports and persists it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING

from gateway.regmap.specs import DatapointSpec, EnergySpec, RegisterMap
from gateway.tuya.protocol import DpType, DpValue
from gateway.unit.cache import DatapointCache
from gateway.unit.dp_codecs import scale_wire

if TYPE_CHECKING:
    from gateway.unit.state_store import StateStore

__all__ = ["EnergyState", "LifetimeEnergy", "advance", "lifetime_energy"]

_LOGGER = logging.getLogger(__name__)
_WH_PER_KWH_S = 3_600_000  # W·s per kWh
_ROUNDING_COUNTS = 2  # the counter truncates: two counts of its resolution are not a jump


@dataclasses.dataclass(frozen=True, slots=True)
class EnergyState:
    """Lifetime kWh, the counter value it was last based on, and when (Unix time) it was."""

    lifetime: Fraction
    raw: Fraction
    at: float


def advance(
    state: EnergyState | None,
    raw: Fraction,
    now: float,
    max_power_w: Fraction,
    resolution: Fraction = Fraction(1, 100),
) -> tuple[EnergyState, str | None]:
    """The state after a counter report of ``raw`` kWh at ``now``, and what to log, if anything."""
    if state is None:
        return EnergyState(raw, raw, now), None
    if raw == state.raw:
        return state, None
    elapsed = Fraction(max(now - state.at, 0.0))
    allowed = max_power_w * elapsed / _WH_PER_KWH_S + _ROUNDING_COUNTS * resolution
    step, note = raw - state.raw, None
    if step < 0:  # counted from zero since the reset: the new value is what came since
        step = raw
        note = f"counter dropped from {float(state.raw):g} to {float(raw):g} kWh: carrying on"
    if step > allowed:
        note = (
            f"counter jumped by {float(step):g} kWh in {float(elapsed):.0f} s, more than"
            f" {float(max_power_w):g} W allows ({float(allowed):g} kWh): not counted"
        )
        return EnergyState(state.lifetime, raw, now), note
    return EnergyState(state.lifetime + step, raw, now), note


class LifetimeEnergy:
    """One unit's lifetime energy: fed by the link's reports, saved in the state store."""

    def __init__(
        self,
        spec: EnergySpec,
        datapoint: DatapointSpec,
        cache: DatapointCache,
        store: StateStore,
        key: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._spec, self._dp, self._cache = spec, datapoint, cache
        self._store, self._key, self._clock = store, key, clock
        self._loaded = False
        self.state: EnergyState | None = None

    def on_report(self, dp: DpValue) -> None:
        """A report listener: advance on the counter's reports, ignore the others."""
        if dp.dpid != self._dp.dpid or dp.dp_type is not DpType.VALUE:
            return
        assert isinstance(dp.value, int)
        if not self._loaded:  # the store opens with the service, not when the map is loaded
            self.state, self._loaded = self._store.load_energy(self._key), True
        raw = scale_wire(dp.value, self._dp.scale)
        resolution = Fraction(10) ** self._dp.scale
        state, note = advance(self.state, raw, self._clock(), self._spec.max_power_w, resolution)
        if note is not None:
            _LOGGER.warning("%s: energy %s", self._key, note)
        if state != self.state:
            self._store.save_energy(self._key, state)
            self.state = state

    def catch_up(self) -> None:
        """Take the counter's cached report (it came before this map was chosen)."""
        entry = self._cache.snapshot().get(self._dp.dpid)
        if entry is not None:
            self.on_report(entry.dp)

    def value(self) -> Fraction | None:
        """The lifetime kWh; None (stale) while the counter itself is stale or never came."""
        if self.state is None or self._cache.snapshot().is_stale(self._dp.dpid, self._dp.max_age_s):
            return None
        return self.state.lifetime


def lifetime_energy(
    regmap: RegisterMap, cache: DatapointCache, store: StateStore, unit_id: int
) -> LifetimeEnergy | None:
    """The unit's lifetime energy, if its map has an energy section."""
    if regmap.energy is None:
        return None
    datapoint = regmap.datapoints[regmap.energy.datapoint]
    return LifetimeEnergy(regmap.energy, datapoint, cache, store, f"unit {unit_id}")
