"""Scale and footprint: 32 twin links behind one gateway, 64 TCP clients polling.

Run as ``python bench/bench_scale.py [--seconds S] [--idle-seconds S]``. The gateway runs
``--config`` with 32 devices ``sim://?seed=N`` (units 1-32, the bench map); 32 ``modbus_load``
processes with 2 connections each read FC4 x 20 from their own unit in a closed loop. The
twins run inside the gateway process (sim://), so RSS and CPU include 32 simulated MCUs.
Idle CPU is measured on a second gateway whose twins send nothing unasked
(``report_interval=0``): only heartbeats (15 s) and the map's query-all (30 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchlib import (
    bench_map,
    cpu_seconds,
    free_port,
    gateway_args,
    proc_status_kb,
    server,
    table,
    tool,
    wait_ready_tcp,
)

UNITS = 32
CONNS_PER_UNIT = 2
HEADERS = ("figure", "value", "goal")


def write_config(directory: Path, port: int, sim_query: str) -> Path:
    """A gateway.yaml with UNITS twins on the bench map."""
    map_path = bench_map(directory)
    lines = [
        "modbus:",
        "  tcp:",
        "    host: 127.0.0.1",
        f"    port: {port}",
        f"    max_connections: {UNITS * CONNS_PER_UNIT + 16}",
        f"    max_connections_per_ip: {UNITS * CONNS_PER_UNIT + 16}",  # all from 127.0.0.1
        "devices:",
    ]
    for unit in range(1, UNITS + 1):
        lines += [
            f"  - unit: {unit}",
            f"    link: sim://?seed={unit}{sim_query}",
            f"    map: {map_path}",
        ]
    path = directory / f"gateway{port}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.5):
        peak.append(proc_status_kb(pid))


@contextlib.contextmanager
def ready_gateway(sim_options: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A gateway on UNITS twins (``sim_options`` appended to each sim:// URL), every unit READY."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), port, sim_options)
        with server(gateway_args("--config", str(config)), port) as gw:
            for unit in range(1, UNITS + 1):
                wait_ready_tcp(port, unit)
            yield gw, port


def load_phase(seconds: float) -> dict[str, float]:
    with ready_gateway("") as (gw, port):
        rss_start = proc_status_kb(gw.pid)
        cpu_start = cpu_seconds(gw.pid)
        stop, rss = threading.Event(), [rss_start]
        sampler = threading.Thread(target=_sample_rss, args=(gw.pid, stop, rss))
        sampler.start()
        loads = [
            subprocess.Popen(
                [
                    tool("modbus_load"),
                    "127.0.0.1",
                    str(port),
                    str(unit),
                    "4",
                    "0",
                    "20",
                    str(CONNS_PER_UNIT),
                    f"{seconds:g}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for unit in range(1, UNITS + 1)
        ]
        outputs = [p.communicate(timeout=seconds + 60)[0] for p in loads]
        cpu = cpu_seconds(gw.pid) - cpu_start
        stop.set()
        sampler.join()
        rss_end = proc_status_kb(gw.pid)

    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    ok = sum(r["ok"] for r in results)
    failed = sum(r["failed"] for r in results)
    return {
        "requests": ok,
        "errors": failed,
        "req_per_s": sum(r["req_per_s"] for r in results),
        "p99_ms_worst": max(r["p99_ms"] for r in results),
        "rss_start_mb": rss_start / 1024,
        "rss_peak_mb": max(rss) / 1024,
        "rss_end_mb": rss_end / 1024,
        "cpu_ms_per_1000": cpu / max(ok, 1) * 1e6,
        "cpu_load_pct": cpu / seconds * 100,
    }


def idle_phase(seconds: float) -> dict[str, float]:
    with ready_gateway("&report_interval=0") as (gw, _port):
        time.sleep(1.0)  # let the handshakes' query-all answers settle
        cpu_start, start = cpu_seconds(gw.pid), time.monotonic()
        time.sleep(seconds)
        cpu = cpu_seconds(gw.pid) - cpu_start
        elapsed = time.monotonic() - start
        rss = proc_status_kb(gw.pid)
    return {"idle_cpu_pct": cpu / elapsed * 100, "idle_rss_mb": rss / 1024}


def run(seconds: float, idle_seconds: float) -> list[list[object]]:
    load = load_phase(seconds)
    idle = idle_phase(idle_seconds)
    return [
        [
            f"errors ({UNITS} units, {UNITS * CONNS_PER_UNIT} clients, {seconds:g} s)",
            load["errors"],
            "0",
        ],
        ["requests answered", load["requests"], ""],
        ["total req/s", load["req_per_s"], ""],
        ["worst client p99 ms", load["p99_ms_worst"], ""],
        ["RSS at start MB", load["rss_start_mb"], ""],
        ["RSS peak under load MB", load["rss_peak_mb"], "<= 60"],
        ["RSS after load MB", load["rss_end_mb"], ""],
        ["CPU ms per 1000 requests", load["cpu_ms_per_1000"], ""],
        ["CPU under load % of a core", load["cpu_load_pct"], ""],
        [f"idle CPU % of a core (heartbeats only, {idle_seconds:g} s)", idle["idle_cpu_pct"], ""],
        ["idle RSS MB", idle["idle_rss_mb"], "<= 60"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(table(HEADERS, run(args.seconds, args.idle_seconds)))


if __name__ == "__main__":
    main()
