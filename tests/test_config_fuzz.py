"""Short form of bench/bench_config_fuzz.py: hostile maps, gateway files and link URLs.

Each input ends in a loaded configuration or a ConfigError whose every line has its file
and line; nothing else escapes.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from bench_modules import load_bench
from hypothesis import given, settings
from hypothesis import strategies as st

fuzz = load_bench("bench_config_fuzz")
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


@settings(max_examples=150, deadline=None)
@given(SEEDS)
def test_hostile_yaml_as_a_map(seed: int) -> None:
    fuzz.check_map_text(fuzz.random_map(random.Random(seed)))


@settings(max_examples=100, deadline=None)
@given(SEEDS)
def test_mutated_default_map(seed: int) -> None:
    fuzz.check_map_text(fuzz.mutate(fuzz.DEFAULT_MAP, random.Random(seed)))


@settings(max_examples=150, deadline=None)
@given(SEEDS)
def test_mutated_gateway_file(seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fuzz.check_config_text(fuzz.mutate(fuzz.GATEWAY_YAML, random.Random(seed)), Path(tmp))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.builds(fuzz.random_link, st.builds(random.Random, SEEDS)))
def test_link_urls(url: str) -> None:
    fuzz.check_link(url)
