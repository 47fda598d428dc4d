"""Cost does not grow with the map: the same block read from the default map and a 1,000-point one.

Run as ``python bench/bench_mapsize.py [--seconds S] [--runs N] [--points P]``. Two gateways
serve the twin, one with the default map, one with the default map plus ``P`` points at input
registers 1000 on (uint32 copies of the phase values, one data age in 50). Each round loads
the main block (input 0+18) on both, and a 100-register block of the added points on the big
one, with 8 connections, round after round: the ratios compare figures taken side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from bench_blocks import wait_answering
from benchlib import DEFAULT_MAP, free_port, gateway_args, median, modbus_load, server, table

from gateway.modbus.tables import Table

SOURCES = ("phase_a.voltage", "phase_a.current", "phase_a.power")
HEADERS = ("map", "block", "points", "gw req/s", "x default map", "gw p99 ms")


def big_map(directory: Path, points: int) -> Path:
    """The default map plus ``points`` input registers from address 1000."""
    lines = []
    for i in range(points):
        source = "status.data_age_s" if i % 50 == 49 else SOURCES[i % len(SOURCES)]
        lines.append(
            f"  - {{name: big_{i}, address: {1000 + 2 * i}, source: {source}, format: uint32}}\n"
        )
    text = DEFAULT_MAP.read_text()
    anchor = "input_registers:\n"
    if anchor not in text:
        raise RuntimeError("register_map.yaml changed: update big_map()'s anchor")
    path = directory / f"map_{points}.yaml"
    path.write_text(text.replace(anchor, anchor + "".join(lines), 1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--conns", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        maps = {"default": DEFAULT_MAP, "big": big_map(Path(tmp), args.points)}
        ports = {name: free_port() for name in maps}
        for name, path in maps.items():
            gw = ["--link", "sim://", "--map", str(path), "--tcp", f"127.0.0.1:{ports[name]}"]
            stack.enter_context(server(gateway_args(*gw), ports[name]))
            wait_answering(ports[name], [(Table.INPUT_REGISTER, 0, 18)])
        loads = [("default", 0, 18), ("big", 0, 18), ("big", 1000, 100)]
        samples: dict[tuple[str, int, int], list[dict[str, object]]] = {k: [] for k in loads}
        for _ in range(args.runs):
            for name, address, count in loads:
                samples[name, address, count].append(
                    modbus_load(
                        "127.0.0.1", ports[name], 1, 4, address, count, args.conns, args.seconds
                    )
                )

    def med(key: tuple[str, int, int], field: str) -> float:
        return median([float(str(s[field])) for s in samples[key]])

    reference = med(("default", 0, 18), "req_per_s")
    rows = [
        [
            name,
            f"input {address}+{count}",
            "default" if name == "default" else f"default + {args.points}",
            med((name, address, count), "req_per_s"),
            med((name, address, count), "req_per_s") / reference,
            med((name, address, count), "p99_ms"),
        ]
        for name, address, count in loads
    ]
    print(f"map size, {args.conns} conns, medians of {args.runs} rounds of {args.seconds:g} s")
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
