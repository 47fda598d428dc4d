"""The MCU twin: a breaker's MCU on the gateway's own codec, and the ways to reach it.

Importing this package registers the ``sim://`` link scheme (:mod:`gateway.twin.sim`).
"""

from gateway.twin import family_c  # noqa: F401  (registers the family C variant)
from gateway.twin.mcu import McuTwin, TwinFaults
from gateway.twin.options import TwinOptions, parse_sim_url
from gateway.twin.sim import open_sim_link, running_twin

__all__ = ["McuTwin", "TwinFaults", "TwinOptions", "open_sim_link", "parse_sim_url", "running_twin"]
