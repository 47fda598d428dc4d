"""Long-form fuzzing of configuration: maps, gateway files and link URLs (issue 13).

Every input must end either in a loaded configuration or in a ConfigError whose every line
is ``file:line: ...``; nothing else may escape (no crash), and the command line must answer
0 or 2 without a traceback. Classes of input:

- ``yaml``: a map skeleton filled with hostile fragments (anchors and aliases, tags, deep
  nesting, .nan/.inf, huge integers, impossible dates, odd keys) checked as a map;
- ``map``: the default map with random lines replaced by those fragments;
- ``config``: gateway.yaml with random values replaced likewise;
- ``link``: random link URLs through the same check ``run`` uses;
- ``cli``: a sample of the above through ``python -m gateway check`` (a subprocess each).

``tests/test_config_fuzz.py`` runs a short form of each class with Hypothesis.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.config import link_problem, load_config
from gateway.errors import ConfigError
from gateway.regmap.load import parse_map

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAP = (ROOT / "register_map.yaml").read_text(encoding="utf-8")
GATEWAY_YAML = (
    "modbus:\n  tcp: {host: 127.0.0.1, port: 5020, idle_timeout_s: 60}\n"
    "write_policy: {read_only: false, switch_interval_s: 2}\n"
    "devices:\n  - {unit: 1, link: 'sim://', map: register_map.yaml}\n"
)
SCALARS = (
    ".nan",
    ".inf",
    "-.inf",
    ".NaN",
    "1e400",
    "-0",
    "0x10",
    "0o17",
    "1_000",
    "9" * 5000,
    "2001-13-45",
    "2001-12-14",
    "~",
    "null",
    "yes",
    "no",
    "''",
    '"\\x00"',
    "'a: b'",
    "!foo x",
    "!!python/object:os.system x",
    "!!binary aGk=",
    "*nope",
    "&a 1",
    "[]",
    "{}",
    "-",
    "?",
    "@x",
    "`x",
    "%TAG",
    "|",
    ">",
    "a\tb",
    "\u00e9",
    "sim://",
    "tcp://h:1",
    "status.x",
)
KEYS = (
    "device",
    "datapoints",
    "input_registers",
    "name",
    "id",
    "type",
    "source",
    "sum",
    "div",
    "min",
    "max",
    "scale",
    "format",
    "stale",
    "saturate",
    "unit",
    "link",
    "?",
)
LINK_PARTS = (
    "sim",
    "socket",
    "rfc2217",
    "tcp",
    "foo",
    "loop",
    "spy",
    "hwgrep",
    "",
    "://",
    "/dev/ttyUSB0",
    "family_a",
    "family_z",
    "h",
    ":",
    "99999",
    "5020",
    "?",
    "=",
    "x",
    "[::1]",
    "%",
    "\x00",
    "@",
    "/",
    "..",
)


def random_yaml(rng: random.Random, depth: int = 0) -> str:
    """A YAML text of hostile fragments."""
    pick = rng.random()
    if depth > 3 or pick < 0.35:
        return rng.choice(SCALARS)
    if pick < 0.5:
        return "[" * rng.randint(1, 160) + rng.choice(SCALARS) + "]" * rng.randint(0, 160)
    if pick < 0.65:
        name = f"a{rng.randint(0, 3)}"
        items = ", ".join(f"*{name}" for _ in range(rng.randint(1, 12)))
        return f"{{x: &{name} [{random_yaml(rng, depth + 1)}], y: [{items}]}}"
    if pick < 0.85:
        items = (f"{rng.choice(KEYS)}: {random_yaml(rng, depth + 1)}" for _ in range(4))
        return "{" + ", ".join(items) + "}"
    return "[" + ", ".join(random_yaml(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"


def random_map(rng: random.Random) -> str:
    """A map skeleton with hostile fragments where the checker will look at them."""
    frag = [random_yaml(rng) for _ in range(5)]
    return (
        f"device: {{name: {frag[0]}}}\n"
        f"datapoints: {{v: {{id: 1, type: value, min: {frag[1]}, max_age_s: {frag[2]}}}}}\n"
        f"input_registers: [{{name: p, address: 0, source: {frag[3]}}},"
        f" {{name: q, address: 1, source: {{sum: [v, {frag[4]}]}}}}]\n"
    )


def mutate(text: str, rng: random.Random) -> str:
    """``text`` with a few values replaced by hostile fragments (or lines dropped, doubled)."""
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        index = rng.randrange(len(lines))
        line = lines[index]
        choice = rng.random()
        if choice < 0.6 and ": " in line:
            head = line[: line.rindex(": ") + 2]
            lines[index] = head + rng.choice([*SCALARS, random_yaml(rng)])
        elif choice < 0.8:
            lines.insert(index, line)
        else:
            del lines[index]
        if not lines:
            lines = ["~"]
    return "\n".join(lines) + "\n"


def random_link(rng: random.Random) -> str:
    return "".join(rng.choice(LINK_PARTS) for _ in range(rng.randint(0, 6)))


def _well_formed(err: ConfigError, filename: str) -> None:
    for line in err.errors:
        if not re.match(rf"{re.escape(filename)}(:\d+)?: ", line):
            raise AssertionError(f"message without file:line: {line!r}")


def check_map_text(text: str) -> None:
    """Load ``text`` as a map: a RegisterMap or a well-formed ConfigError, nothing else."""
    try:
        parse_map(text, "fuzz.yaml")
    except ConfigError as err:
        _well_formed(err, "fuzz.yaml")


def check_config_text(text: str, directory: Path) -> None:
    path = directory / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(str(path))
    except ConfigError as err:
        _well_formed(err, str(path))


def check_link(url: str) -> None:
    problem = link_problem(url)
    assert problem is None or isinstance(problem, str)


def check_cli(text: str, directory: Path) -> None:
    path = directory / "cli.yaml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    if result.returncode not in (0, 2) or "Traceback" in result.stdout + result.stderr:
        raise AssertionError(f"exit {result.returncode}: {result.stderr[-500:]}")


def run(counts: dict[str, int], seed: int) -> dict[str, tuple[int, int, float]]:
    """Per class: (inputs tried, failures, seconds)."""
    rng = random.Random(seed)
    results: dict[str, tuple[int, int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        jobs: dict[str, Callable[[], None]] = {
            "yaml": lambda: check_map_text(random_map(rng)),
            "map": lambda: check_map_text(mutate(DEFAULT_MAP, rng)),
            "config": lambda: check_config_text(mutate(GATEWAY_YAML, rng), directory),
            "link": lambda: check_link(random_link(rng)),
            "cli": lambda: check_cli(mutate(DEFAULT_MAP, rng), directory),
        }
        for name, job in jobs.items():
            failures, start = 0, time.perf_counter()
            for _ in range(counts[name]):
                try:
                    job()
                except Exception as err:  # the figure: anything but ConfigError is a crash
                    failures += 1
                    print(f"{name}: {type(err).__name__}: {err}", file=sys.stderr)
            results[name] = (counts[name], failures, time.perf_counter() - start)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=5000, help="per in-process class")
    parser.add_argument("--cli", type=int, default=100, help="subprocess runs")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    counts = dict.fromkeys(("yaml", "map", "config", "link"), args.inputs) | {"cli": args.cli}
    results = run(counts, args.seed)
    print("| class | inputs | crashes or tracebacks | s |\n|---|---|---|---|")
    for name, (tried, failures, seconds) in results.items():
        print(f"| {name} | {tried} | {failures} | {seconds:.1f} |")
    return 1 if any(failures for _, failures, _ in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
