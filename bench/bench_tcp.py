"""Modbus TCP cached reads: the gateway on the twin vs libmodbus C vs bare pymodbus 3.16.

Run as ``python bench/bench_tcp.py [--seconds S] [--runs N]``. The three servers run side by
side; each run loads each of them in turn with ``modbus_load`` (FC4 x 20, FC1 x 16; 1 and 8
connections); the table shows medians over the runs and ratios to the C server and pymodbus.
The gateway serves bench_map() (the default map plus a gap-free 20-register / 16-coil block).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

from benchlib import (
    bench_map,
    free_port,
    gateway_args,
    median,
    modbus_load,
    runs_main,
    server,
    tool,
    wait_ready_tcp,
)

SHAPES = (("FC4x20", 4, 0, 20), ("FC1x16", 1, 0, 16))
CONNS = (1, 8)
SERVERS = ("gateway", "C libmodbus", "bare pymodbus")
HEADERS = ("shape", "conns", "server", "req/s", "p50 ms", "p99 ms", "failed", "x C", "x pymodbus")


def run(seconds: float, runs: int) -> list[list[object]]:
    """Rows of the table: medians over ``runs`` of each shape x conns x server."""
    ports = {name: free_port() for name in SERVERS}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        map_path = bench_map(Path(tmp))
        gw = ["--link", "sim://", "--map", str(map_path), "--tcp", f"127.0.0.1:{ports['gateway']}"]
        stack.enter_context(server(gateway_args(*gw), ports["gateway"]))
        stack.enter_context(
            server([tool("modbus_ref_server"), str(ports["C libmodbus"])], ports["C libmodbus"])
        )
        bare = [sys.executable, str(Path(__file__).parent / "bench_bare_pymodbus.py")]
        stack.enter_context(server([*bare, str(ports["bare pymodbus"])], ports["bare pymodbus"]))
        wait_ready_tcp(ports["gateway"])
        samples: dict[tuple[str, int, str], list[dict[str, object]]] = {}
        for _ in range(runs):
            for shape, fc, addr, count in SHAPES:
                for conns in CONNS:
                    for name in SERVERS:
                        result = modbus_load(
                            "127.0.0.1", ports[name], 1, fc, addr, count, conns, seconds
                        )
                        samples.setdefault((shape, conns, name), []).append(result)
    return _rows(samples)


def _rows(samples: dict[tuple[str, int, str], list[dict[str, object]]]) -> list[list[object]]:
    def med(key: tuple[str, int, str], field: str) -> float:
        return median([float(str(s[field])) for s in samples[key]])

    rows: list[list[object]] = []
    for shape, *_ in SHAPES:
        for conns in CONNS:
            ref = med((shape, conns, "C libmodbus"), "req_per_s")
            bare = med((shape, conns, "bare pymodbus"), "req_per_s")
            for name in SERVERS:
                key = (shape, conns, name)
                rate = med(key, "req_per_s")
                failed = sum(int(str(s["failed"])) for s in samples[key])
                rows.append(
                    [
                        shape,
                        conns,
                        name,
                        rate,
                        med(key, "p50_ms"),
                        med(key, "p99_ms"),
                        failed,
                        rate / ref,
                        rate / bare,
                    ]
                )
    return rows


def main() -> None:
    runs_main(__doc__, "TCP cached reads", HEADERS, run)


if __name__ == "__main__":
    main()
