"""Modbus RTU transaction time over a socat pty pair vs the wire-time lower bound.

Run as ``python bench/bench_rtu.py [--seconds S] [--runs N]``. The gateway serves RTU on one
end of a ``socat`` pty pair (without socat: two ptys joined by a relay thread, which adds
its own latency); ``modbus_load rtu:`` reads FC4 x 20 on the other end at 9600,
19200 and 115200 baud. A pty moves bytes at memory speed whatever the baud rate, so the p50
measured here is the software overhead of both ends (plus nothing for the wire); on a real
line the transaction takes at least the wire time of request + response (10 bits per 8N1
character), so the real-line ratio is estimated as (wire + measured) / wire.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import tempfile
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

from benchlib import bench_map, gateway_args, median, modbus_load, runs_main, server

BAUDS = (9600, 19200, 115200)
COUNT = 20
REQUEST_BYTES = 8  # unit, fc, addr 2, count 2, crc 2
RESPONSE_BYTES = 5 + 2 * COUNT  # unit, fc, byte count, data, crc 2
BITS_PER_CHAR = 10  # 8N1
HEADERS = ("baud", "wire ms", "p50 ms", "p99 ms", "req/s", "failed", "p50/wire", "est. real x wire")


@contextlib.contextmanager
def pty_pair(directory: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals (socat's, else a relay thread here); their paths."""
    if shutil.which("socat") is None:
        with relay_pair() as paths:
            yield paths
        return
    with socat_pair(directory) as paths:
        yield paths


@contextlib.contextmanager
def relay_pair() -> Iterator[tuple[str, str]]:
    """Two raw ptys whose master sides a thread of this process cross-connects."""
    ends = [os.openpty() for _ in range(2)]
    for _, slave in ends:
        tty.setraw(slave)
    masters = [master for master, _ in ends]
    stop = threading.Event()

    def relay() -> None:
        while not stop.is_set():
            readable, _, _ = select.select(masters, [], [], 0.1)
            for fd in readable:
                with contextlib.suppress(OSError):
                    os.write(masters[1 - masters.index(fd)], os.read(fd, 4096))

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        yield os.ttyname(ends[0][1]), os.ttyname(ends[1][1])
    finally:
        stop.set()
        thread.join()
        for fd in (fd for pair in ends for fd in pair):
            os.close(fd)


@contextlib.contextmanager
def socat_pair(directory: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals made by socat; their paths."""
    a, b = directory / "gw", directory / "master"
    with server(["socat", f"pty,rawer,link={a}", f"pty,rawer,link={b}"]) as proc:
        end = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.02)
        yield str(a), str(b)


def wire_ms(baud: int) -> float:
    return (REQUEST_BYTES + RESPONSE_BYTES) * BITS_PER_CHAR / baud * 1000


def run_baud(baud: int, seconds: float, runs: int, tmp: Path, map_path: Path) -> list[object]:
    with pty_pair(tmp) as (gw_end, master_end):
        args = gateway_args(
            "--link",
            "sim://",
            "--map",
            str(map_path),
            "--tcp",
            "off",
            "--rtu",
            gw_end,
            "--rtu-baud",
            str(baud),
        )
        with server(args):
            _wait_answer(master_end, baud)
            results = [
                modbus_load(f"rtu:{master_end}", baud, 1, 4, 0, COUNT, 1, seconds)
                for _ in range(runs)
            ]
    p50 = median([float(str(r["p50_ms"])) for r in results])
    p99 = median([float(str(r["p99_ms"])) for r in results])
    rate = median([float(str(r["req_per_s"])) for r in results])
    failed = sum(int(str(r["failed"])) for r in results)
    wire = wire_ms(baud)
    return [baud, wire, p50, p99, rate, failed, p50 / wire, (wire + p50) / wire]


def _wait_answer(device: str, baud: int, timeout_s: float = 30.0) -> None:
    """Wait until the gateway's link is READY and the unit answers reads."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(RuntimeError):
            if int(str(modbus_load(f"rtu:{device}", baud, 1, 4, 0, COUNT, 1, 0.2)["ok"])) > 0:
                return
        time.sleep(0.2)
    raise TimeoutError("the gateway does not answer on RTU")


def run(seconds: float, runs: int) -> list[list[object]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        map_path = bench_map(Path(tmp))
        for baud in BAUDS:
            rows.append(run_baud(baud, seconds, runs, Path(tmp), map_path))
    return rows


def main() -> None:
    runs_main(__doc__, f"RTU FC4 x {COUNT} over a pty pair", HEADERS, run)


if __name__ == "__main__":
    main()
