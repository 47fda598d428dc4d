"""Every contiguous block of every shipped map: the gateway vs bare pymodbus vs libmodbus C.

Run as ``python bench/bench_blocks.py [--seconds S] [--runs N] [--conns 1,8]``. For each
shipped map (the package's maps and the top-level register_map.yaml) the gateway serves the
map on the twin; every maximal run of consecutive addresses that points cover (split at 125
registers or 2000 bits, the largest read Modbus allows) is one block. Each block is loaded with
``modbus_load`` against the gateway, then against the C reference server and the bare pymodbus
server reading the same function and count (their static tables start at 0), round after round,
so every ratio compares figures taken side by side. The table ends with the worst block.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchlib import (
    ROOT,
    free_port,
    gateway_args,
    median,
    modbus_load,
    raw_request,
    server,
    table,
    tool,
)

from gateway.modbus.tables import Table
from gateway.regmap.load import load_map
from gateway.twin.families import VARIANTS

MAX_COUNT = {Table.COIL: 2000, Table.DISCRETE_INPUT: 2000}
MAX_REGISTERS = 125
FUNCTION = {
    Table.COIL: 1,
    Table.DISCRETE_INPUT: 2,
    Table.HOLDING_REGISTER: 3,
    Table.INPUT_REGISTER: 4,
}
REFERENCE_SIZE = 1000  # registers and bits each yardstick serves from address 0
HEADERS = ("map", "block", "conns", "gw req/s", "x pymodbus", "x C", "gw p99 ms", "failed")


def shipped_maps() -> list[Path]:
    """The top-level map users copy plus every map shipped with the package."""
    found = [ROOT / "register_map.yaml"]
    for folder in (ROOT / "gateway" / "maps", ROOT / "maps"):
        found += sorted(p for p in folder.glob("*.yaml") if p.name != "register_map.yaml")
    return found


def blocks(map_path: Path) -> Iterator[tuple[Table, int, int]]:
    """(table, address, count) of every maximal readable run of the map's addresses."""
    regmap = load_map(str(map_path))
    for tbl in FUNCTION:
        limit = MAX_COUNT.get(tbl, MAX_REGISTERS)
        start = end = None
        for point in regmap.points(tbl):
            if start is not None and end is not None and point.address == end:
                end = point.address + point.count
                continue
            if start is not None and end is not None:
                yield from _split(tbl, start, end, limit)
            start, end = point.address, point.address + point.count
        if start is not None and end is not None:
            yield from _split(tbl, start, end, limit)


def _split(tbl: Table, start: int, end: int, limit: int) -> Iterator[tuple[Table, int, int]]:
    for address in range(start, end, limit):
        yield tbl, address, min(limit, end - address)


def twin_url(map_path: Path) -> str:
    """The sim:// twin family that reports the map's datapoints (by product key, else by DPs)."""
    regmap = load_map(str(map_path))
    wanted = {(dp.dpid, dp.dp_type) for dp in regmap.datapoints.values()}

    def fit(name: str) -> tuple[bool, int]:
        variant = VARIANTS[name]
        have = {(dp.dpid, dp.dp_type) for dp in variant.dps}
        return variant.product_key == regmap.device.product_key, len(wanted & have)

    return f"sim://{max(VARIANTS, key=fit)}"


def wait_answering(port: int, found: list[tuple[Table, int, int]], timeout_s: float = 30.0) -> None:
    """Wait until one of the map's blocks reads without an exception (not every map has 200)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for tbl, address, count in found:
            pdu = bytes((1, FUNCTION[tbl])) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
            with contextlib.suppress(OSError):
                if raw_request(port, pdu)[7] < 0x80:
                    time.sleep(1.0)  # the twin's first reports arrive together
                    return
        time.sleep(0.1)
    raise TimeoutError(f"no block of the map answers on port {port}")


def _label(tbl: Table, address: int, count: int) -> str:
    return f"{tbl.name.lower()} {address}+{count}"


def measure(
    map_path: Path, seconds: float, runs: int, conns: tuple[int, ...], extra: tuple[str, ...] = ()
) -> list[list[object]]:
    """One row per block x connection count: medians over ``runs`` rounds."""
    ports = {name: free_port() for name in ("gw", "c", "py")}
    rows: list[list[object]] = []
    with contextlib.ExitStack() as stack:
        gw = [
            "--link",
            twin_url(map_path),
            "--map",
            str(map_path),
            "--tcp",
            f"127.0.0.1:{ports['gw']}",
            *extra,
        ]
        stack.enter_context(server(gateway_args(*gw), ports["gw"]))
        stack.enter_context(server([tool("modbus_ref_server"), str(ports["c"])], ports["c"]))
        bare = [sys.executable, str(Path(__file__).parent / "bench_bare_pymodbus.py")]
        stack.enter_context(server([*bare, str(ports["py"])], ports["py"]))
        wait_answering(ports["gw"], list(blocks(map_path)))
        for tbl, address, count in blocks(map_path):
            for n in conns:
                rows.append(_row(map_path, ports, tbl, address, count, n, seconds, runs))
    return rows


def _row(
    map_path: Path,
    ports: dict[str, int],
    tbl: Table,
    address: int,
    count: int,
    conns: int,
    seconds: float,
    runs: int,
) -> list[object]:
    fc = FUNCTION[tbl]
    ref_address = address % (REFERENCE_SIZE - count)
    samples: dict[str, list[dict[str, object]]] = {"gw": [], "c": [], "py": []}
    for _ in range(runs):
        samples["gw"].append(
            modbus_load("127.0.0.1", ports["gw"], 1, fc, address, count, conns, seconds)
        )
        for name in ("c", "py"):
            samples[name].append(
                modbus_load("127.0.0.1", ports[name], 1, fc, ref_address, count, conns, seconds)
            )

    def med(name: str, field: str) -> float:
        return median([float(str(s[field])) for s in samples[name]])

    rate = med("gw", "req_per_s")
    failed = sum(int(str(s["failed"])) for s in samples["gw"])
    return [
        map_path.stem,
        _label(tbl, address, count),
        conns,
        rate,
        rate / med("py", "req_per_s"),
        rate / med("c", "req_per_s"),
        med("gw", "p99_ms"),
        failed,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--conns", default="1,8", help="connection counts, comma-separated")
    parser.add_argument("--map", action="append", help="only these maps (paths)")
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        help="one more gateway option, e.g. --gateway-arg=--event-loop=asyncio",
    )
    args = parser.parse_args()
    conns = tuple(int(n) for n in args.conns.split(","))
    maps = [Path(m).resolve() for m in args.map] if args.map else shipped_maps()
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory():
        for map_path in maps:
            rows += measure(map_path, args.seconds, args.runs, conns, tuple(args.gateway_arg))
    print(f"every block of every shipped map, medians of {args.runs} rounds of {args.seconds:g} s")
    print(table(HEADERS, rows))
    for n in conns:
        worst = min((r for r in rows if r[2] == n), key=lambda r: float(str(r[4])))
        ratio_py, ratio_c = float(str(worst[4])), float(str(worst[5]))
        print(
            f"worst block, {n} conn: {worst[0]} {worst[1]}:"
            f" x pymodbus {ratio_py:.2f}, x C {ratio_c:.2f}"
        )


if __name__ == "__main__":
    main()
