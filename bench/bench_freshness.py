"""Freshness: UART report -> Modbus readable, and Modbus coil write -> 0x06 on the UART.

Run as ``python bench/bench_freshness.py [--samples N]``. The gateway runs as a subprocess
on the default map with its link on a real pty; the scripted MCU (tests/mcu_peer.py) owns the
master side in a thread of this process. (a) the MCU writes a dp15 report and notes the
monotonic time once the write returned (last byte handed to the pty); the main thread polls
input register 6 in a tight loop on one raw socket until the new value shows; each figure
includes up to one poll round trip. (b) the main thread notes the time, sends FC5 for coil 1
(prepayment, dp11: not rate-limited) 20 ms after the previous write (the link's 10 ms
command gap would otherwise be measured) and the MCU notes when the 0x06 frame arrives. Both ends
use CLOCK_MONOTONIC, so the times compare across processes and threads.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from benchlib import ROOT, free_port, gateway_args, pct, recv_adu, server, table, wait_ready_tcp

sys.path.insert(0, str(ROOT / "tests"))
from mcu_peer import PtyPeer, ScriptedMcu  # tests/ is on sys.path: not a package

from gateway.tuya.protocol import Command, DpValue

T = TypeVar("T")
HEADERS = ("path", "samples", "p50 ms", "p99 ms", "max ms", "goal p99 ms")
LEAKAGE_DP, LEAKAGE_REG = 15, 6
PREPAYMENT_COIL = 1
# The link keeps command_gap_s (10 ms) between frames it sends: back-to-back writes would
# measure that pacing, not the write path.
WRITE_SPACING_S = 0.02


class PeerThread:
    """A ScriptedMcu on a pty, run by an asyncio loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        dps = [
            DpValue.of_value(1, 1234),
            DpValue.of_raw(6, bytes.fromhex("0916000099000023")),
            DpValue.of_bitmap(9, 0, 4),
            DpValue.of_bool(11, False),
            DpValue.of_value(LEAKAGE_DP, 1),
            DpValue.of_bool(16, True),
        ]
        self.peer = ScriptedMcu(dps)
        self.pty: PtyPeer = self.call(lambda: PtyPeer(self.peer))

    def call(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the peer's loop and return its result."""
        done: Future[T] = Future()
        self.loop.call_soon_threadsafe(lambda: done.set_result(func()))
        return done.result(10)

    def report_soon(self, dp: DpValue, stamps: list[float]) -> None:
        """Write ``dp``'s report on the loop; append the time the write returned."""

        def write() -> None:
            self.peer.dps[dp.dpid] = dp
            self.peer.report(dp)
            stamps.append(time.monotonic())

        self.loop.call_soon_threadsafe(write)

    def close(self) -> None:
        self.call(self.pty.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _adu(tid: int, pdu: bytes, unit: int = 1) -> bytes:
    return (
        tid.to_bytes(2, "big")
        + b"\x00\x00"
        + (len(pdu) + 1).to_bytes(2, "big")
        + bytes((unit,))
        + pdu
    )


def report_to_modbus(peer: PeerThread, sock: socket.socket, samples: int) -> list[float]:
    """Milliseconds from a report's last byte on the UART to Modbus showing the new value."""
    out = []
    read = bytes((4,)) + LEAKAGE_REG.to_bytes(2, "big") + b"\x00\x01"
    for i in range(samples):
        value = 2 + i % 60000
        stamps: list[float] = []
        peer.report_soon(DpValue.of_value(LEAKAGE_DP, value), stamps)
        deadline = time.monotonic() + 5
        while True:
            sock.sendall(_adu(i & 0xFFFF, read))
            reply = recv_adu(sock)
            seen = time.monotonic()
            if reply[7] == 4 and int.from_bytes(reply[9:11], "big") == value:
                break
            if seen > deadline:
                raise TimeoutError(f"value {value} never showed: {reply.hex(' ')}")
        out.append((seen - stamps[0]) * 1000)
    return out


def write_to_uart(peer: PeerThread, sock: socket.socket, samples: int) -> list[float]:
    """Milliseconds from sending a FC5 coil write to its 0x06 frame arriving at the MCU."""
    out = []
    for i in range(samples):
        time.sleep(WRITE_SPACING_S)
        on = i % 2 == 0
        before = len(peer.peer.received)
        pdu = (
            bytes((5,)) + PREPAYMENT_COIL.to_bytes(2, "big") + (b"\xff\x00" if on else b"\x00\x00")
        )
        start = time.monotonic()
        sock.sendall(_adu(i & 0xFFFF, pdu))
        reply = recv_adu(sock)
        if reply[7] != 5:
            raise RuntimeError(f"write answered {reply.hex(' ')}")
        sent = [t for t, f in peer.peer.received[before:] if f.command == Command.DP_COMMAND]
        out.append((sent[0] - start) * 1000)
    return out


def run(samples: int) -> list[list[object]]:
    peer = PeerThread()
    port = free_port()
    try:
        # ERROR: the scripted MCU's product key differs from the map's, which warns
        args = gateway_args(
            "--link", peer.pty.path, "--tcp", f"127.0.0.1:{port}", log_level="ERROR"
        )
        with server(args, port):
            wait_ready_tcp(port)
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                fresh = report_to_modbus(peer, sock, samples)
                writes = write_to_uart(peer, sock, samples)
    finally:
        peer.close()
    return [
        _row("UART report -> Modbus read", fresh, 1.0),
        _row("Modbus FC5 -> 0x06 on UART", writes, 2.0),
    ]


def _row(name: str, values: list[float], goal: float) -> list[Any]:
    return [name, len(values), pct(values, 0.5), pct(values, 0.99), max(values), goal]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    print(table(HEADERS, run(args.samples)))


if __name__ == "__main__":
    main()
