"""Scale and footprint: 256 links behind one gateway, 128 Modbus TCP clients polling.

Run as ``python bench/bench_scale.py [--units N] [--clients N] [--twin-processes N]
[--seconds S] [--idle-seconds S]``. The twins run in ``--twin-processes`` separate
``tuya-modbus-gateway simulate --listen tcp://…`` processes (one twin per connection), and the
gateway reaches each over a ``socket://`` link, as it would reach a UART bridge; so the
gateway's RSS and CPU are its own. ``--twin-processes 0`` runs the twins in the gateway
(``sim://``) instead. The clients are ``modbus_load`` processes with 2 connections each,
reading FC4 x 20 from the units in turn in a closed loop. Idle CPU is measured on a second
gateway whose twins send nothing unasked (``--report-interval 0``): heartbeats and the map's
query-all only, and reported per link.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
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

CONNS_PER_LOAD = 2
HEADERS = ("figure", "value", "goal")


UNITS = 247  # Modbus unit ids end at 247: one listener addresses no more links
CLIENTS = 128
TWIN_PROCESSES = 4


@dataclasses.dataclass(frozen=True, slots=True)
class Scale:
    units: int = UNITS
    clients: int = CLIENTS
    twin_processes: int = TWIN_PROCESSES


def write_config(directory: Path, port: int, links: list[str]) -> Path:
    """A gateway.yaml with one device per link on the bench map."""
    map_path = bench_map(directory)
    lines = [
        "modbus:",
        "  tcp:",
        "    host: 127.0.0.1",
        f"    port: {port}",
        f"    max_connections: {len(links) + 256}",
        f"    max_connections_per_ip: {len(links) + 256}",  # all from 127.0.0.1
        f"state_dir: {directory / 'state'}",  # not the user's lifetime energy
        "devices:",
    ]
    for unit, link in enumerate(links, start=1):
        lines += [f"  - unit: {unit}", f"    link: {link}", f"    map: {map_path}"]
    path = directory / f"gateway{port}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def twin_links(scale: Scale, report_interval: float) -> Iterator[list[str]]:
    """One link URL per unit: socket:// to twin processes, or sim:// in the gateway."""
    if not scale.twin_processes:
        query = "&report_interval=0" if report_interval == 0 else ""
        yield [f"sim://?seed={unit}{query}" for unit in range(1, scale.units + 1)]
        return
    per_process = -(-scale.units // scale.twin_processes)
    first_ports = [free_port_block(per_process) for _ in range(scale.twin_processes)]
    farm = str(Path(__file__).parent / "twin_farm.py")
    with contextlib.ExitStack() as stack:
        for first in first_ports:
            args = [sys.executable, farm, str(first), str(per_process)]
            args += ["--report-interval", f"{report_interval:g}"]
            stack.enter_context(server(args, first + per_process - 1))
        ports = [first + i for first in first_ports for i in range(per_process)]
        yield [f"socket://127.0.0.1:{port}" for port in ports[: scale.units]]


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports that are free now (above the ephemeral range)."""
    base = 20000 + (os.getpid() % 100) * 50
    while not all(_port_free(base + i) for i in range(size)):
        base += size
    _TAKEN.update(range(base, base + size))
    return base


_TAKEN: set[int] = set()


def _port_free(port: int) -> bool:
    if port in _TAKEN:
        return False
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.5):
        peak.append(proc_status_kb(pid))


@contextlib.contextmanager
def ready_gateway(
    scale: Scale, report_interval: float = 5.0
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A gateway on ``scale.units`` twins, every unit READY."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, twin_links(scale, report_interval) as links:
        config = write_config(Path(tmp), port, links)
        with server(gateway_args("--config", str(config)), port) as gw:
            for unit in range(1, scale.units + 1):
                wait_ready_tcp(port, unit, timeout_s=120.0)
            yield gw, port


def load_phase(scale: Scale, seconds: float) -> dict[str, float]:
    with ready_gateway(scale) as (gw, port):
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
                    str(index % scale.units + 1),
                    "4",
                    "0",
                    "20",
                    str(CONNS_PER_LOAD),
                    f"{seconds:g}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(scale.clients // CONNS_PER_LOAD)
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


def idle_phase(scale: Scale, seconds: float) -> dict[str, float]:
    with ready_gateway(scale, report_interval=0) as (gw, _port):
        time.sleep(1.0)  # let the handshakes' query-all answers settle
        cpu_start, start = cpu_seconds(gw.pid), time.monotonic()
        time.sleep(seconds)
        cpu = cpu_seconds(gw.pid) - cpu_start
        elapsed = time.monotonic() - start
        rss = proc_status_kb(gw.pid)
    pct = cpu / elapsed * 100
    return {"idle_cpu_pct": pct, "idle_cpu_pct_link": pct / scale.units, "idle_rss_mb": rss / 1024}


def run(scale: Scale, seconds: float, idle_seconds: float) -> list[list[object]]:
    load = load_phase(scale, seconds)
    idle = idle_phase(scale, idle_seconds)
    where = f"{scale.twin_processes} twin processes" if scale.twin_processes else "sim://"
    return [
        [
            f"errors ({scale.units} links over {where}, {scale.clients} clients, {seconds:g} s)",
            load["errors"],
            "0",
        ],
        ["requests answered", load["requests"], ""],
        ["total req/s", load["req_per_s"], ""],
        ["worst client p99 ms", load["p99_ms_worst"], ""],
        ["RSS at start MB", load["rss_start_mb"], ""],
        ["RSS peak under load MB", load["rss_peak_mb"], "<= 120"],
        ["RSS after load MB", load["rss_end_mb"], ""],
        ["CPU ms per 1000 requests", load["cpu_ms_per_1000"], ""],
        ["CPU under load % of a core", load["cpu_load_pct"], ""],
        [f"idle CPU % of a core (heartbeats only, {idle_seconds:g} s)", idle["idle_cpu_pct"], ""],
        ["idle CPU % of a core per link", idle["idle_cpu_pct_link"], ""],
        ["idle RSS MB", idle["idle_rss_mb"], "<= 120"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--units", type=int, default=UNITS)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--twin-processes", type=int, default=TWIN_PROCESSES)
    args = parser.parse_args()
    scale = Scale(args.units, args.clients, args.twin_processes)
    print(table(HEADERS, run(scale, args.seconds, args.idle_seconds)))


if __name__ == "__main__":
    main()
