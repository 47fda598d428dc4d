"""A well-behaved Modbus TCP client's latency, idle and while other clients attack (issue 13).

Run as ``python bench/bench_attacks.py [--samples N]``. The gateway (default map, twin) runs
as a subprocess, each attack in another subprocess (this file with ``--attack NAME``) from
127.0.0.2, and the well-behaved client in this process from 127.0.0.1: one FC4 read of 9
registers every 2 ms on one connection, timed around send and receive. Attacks: ``slowloris``
(40 connections sending a request one byte a second, reconnecting when closed), ``flood``
(one connection pipelining 100,000 reads at once and reading the replies, again and again),
``garbage`` (6 connections at a time sending random bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from benchlib import free_port, gateway_args, pct, recv_adu, server, table, wait_ready_tcp

HEADERS = ("attack", "samples", "failed", "p50 ms", "p99 ms", "max ms", "p99 - idle p99 ms")
ATTACKER = "127.0.0.2"
ATTACKS = ("slowloris", "flood", "garbage")
READ = struct.pack(">HHHBBHH", 1, 0, 6, 1, 4, 0, 9)
PHASE_LIMIT_S = 60.0  # a phase whose client is locked out ends here; the rest count as failed


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))


async def _slowloris_one(port: int) -> None:
    while True:
        with contextlib.suppress(ConnectionError, OSError):
            _, writer = await _connect(port)
            try:
                for byte in READ:
                    writer.write(bytes((byte,)))
                    await writer.drain()
                    await asyncio.sleep(1.0)
            finally:
                writer.close()
        await asyncio.sleep(0.1)


async def _flood_one(port: int) -> None:
    requests = 100_000
    ask = b"".join(struct.pack(">HHHBBHH", t & 0xFFFF, 0, 6, 1, 4, 0, 1) for t in range(requests))
    while True:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            reader, writer = await _connect(port)
            writer.write(ask)
            for _ in range(requests):
                await reader.readexactly(11)
            writer.close()


async def _garbage_one(port: int, rng: random.Random) -> None:
    while True:
        with contextlib.suppress(ConnectionError, OSError):
            _, writer = await _connect(port)
            for _ in range(rng.randint(1, 5)):
                writer.write(rng.randbytes(rng.randint(1, 700)))
                await writer.drain()
                await asyncio.sleep(rng.random() * 0.02)
            writer.close()


async def attack(name: str, port: int) -> None:
    """Run one attack until killed."""
    rng = random.Random(13)
    if name == "slowloris":
        jobs = [_slowloris_one(port) for _ in range(40)]
    elif name == "flood":
        jobs = [_flood_one(port)]
    else:
        jobs = [_garbage_one(port, rng) for _ in range(6)]
    await asyncio.gather(*jobs)


def measure(port: int, samples: int) -> tuple[list[float], int]:
    """Latencies (ms) of ``samples`` reads, 2 ms apart, and how many failed (or never ran)."""
    latencies: list[float] = []
    deadline = time.monotonic() + PHASE_LIMIT_S
    sock: socket.socket | None = None
    for _ in range(samples):
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        try:
            sock = sock or socket.create_connection(("127.0.0.1", port), 2.0)
            sock.sendall(READ)
            recv_adu(sock)
            latencies.append((time.perf_counter() - start) * 1000)
        except OSError:
            if sock is not None:
                sock.close()
            sock = None
        time.sleep(0.002)
    if sock is not None:
        sock.close()
    return latencies, samples - len(latencies)


def run(samples: int) -> list[tuple[object, ...]]:
    """One row per phase: idle first, then each attack."""
    port = free_port()
    rows: list[tuple[object, ...]] = []
    with server(gateway_args("--link", "sim://", "--tcp", f"127.0.0.1:{port}"), port):
        wait_ready_tcp(port)
        idle_p99 = 0.0
        for name in ("idle", *ATTACKS):
            attacker = None
            if name != "idle":
                argv = [sys.executable, __file__, "--attack", name, "--port", str(port)]
                attacker = subprocess.Popen(argv, cwd=Path(__file__).parent)
                time.sleep(2.0)  # the attack is in full swing
            try:
                latencies, failed = measure(port, samples)
            finally:
                if attacker is not None:
                    attacker.kill()
                    attacker.wait()
            p99 = pct(latencies, 0.99)
            idle_p99 = p99 if name == "idle" else idle_p99
            rows.append(
                (name, samples, failed, f"{pct(latencies, 0.5):.2f}", f"{p99:.2f}",
                 f"{max(latencies, default=float('nan')):.2f}", f"{p99 - idle_p99:+.2f}")
            )  # fmt: skip
            time.sleep(1.0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--attack", choices=ATTACKS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        asyncio.run(attack(args.attack, args.port))
        return
    print(table(HEADERS, run(args.samples)))


if __name__ == "__main__":
    main()
