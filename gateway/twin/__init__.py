"""twin"""

from gateway.twin import family_c  # noqa: F401  (registers the family C variant)
