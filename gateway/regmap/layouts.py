"""Named raw field layouts a map can ask for instead of listing offsets (``layout: vip8``).

The phase DP (``phase_a``, DP 6) comes in two forms in the field: 8 bytes ``V(2) I(3) P(3)``
and 15 bytes that add reactive power, apparent power and the power factor. Explicit ``fields``
in the map override or extend the layout's (to give ``current`` its breaker's ``max``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from gateway.regmap.specs import FieldSpec

__all__ = ["PhaseLayout", "layout_fields"]


class PhaseLayout(enum.StrEnum):
    """The known layouts of the phase DP, by size."""

    VIP8 = "vip8"  # V u16 0.1 V, I u24 mA, P u24 W
    VIPQSF15 = "vipqsf15"  # ... then Q u24 var, S u24 VA, PF u8 0.01


_VIP = (
    FieldSpec("voltage", 0, 2, -1, "V"),
    FieldSpec("current", 2, 3, -3, "A"),
    FieldSpec("power", 5, 3, 0, "W"),
)
_QSF = (
    FieldSpec("reactive_power", 8, 3, 0, "VAr"),
    FieldSpec("apparent_power", 11, 3, 0, "VA"),
    FieldSpec("power_factor", 14, 1, -2, ""),
)
_LAYOUTS = {PhaseLayout.VIP8: _VIP, PhaseLayout.VIPQSF15: _VIP + _QSF}


def layout_fields(layout: PhaseLayout) -> Mapping[str, FieldSpec]:
    """The fields of ``layout`` by name, in payload order."""
    return MappingProxyType({field.name: field for field in _LAYOUTS[layout]})
