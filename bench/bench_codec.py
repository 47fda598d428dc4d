"""TuyaMCU codec throughput, and optionally the link's handshake time against the twin.

Run as ``python bench/bench_codec.py`` (codec only) or ``python bench/bench_codec.py
--handshake`` (also time McuLink handshakes at the spec's default timings). Each figure is
the median of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from gateway.tuya.link import LinkConfig, McuLink
from gateway.tuya.protocol import Command, DpValue, Frame, FrameDecoder

RUNS = 7
FRAMES_PER_RUN = 20_000
# dp6 phase_a raw report: 6 header + 4 record header + 8 payload + 1 checksum = 19 bytes
PHASE = DpValue.of_raw(6, bytes.fromhex("0916000099000023"))
REPORT = Frame(Command.DP_REPORT, PHASE.encode(), 3)
WIRE = REPORT.encode()
assert len(WIRE) == 19, len(WIRE)


def per_second(run: Callable[[], int]) -> float:
    """Median rate of ``run`` (which returns how many frames it handled) over RUNS runs."""
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def decode_stream() -> int:
    decoder = FrameDecoder()
    decoder.feed(WIRE * FRAMES_PER_RUN)
    return sum(1 for _ in decoder)


def decode_frame_by_frame() -> int:
    decoder = FrameDecoder()
    count = 0
    for _ in range(FRAMES_PER_RUN):
        decoder.feed(WIRE)
        for _frame in decoder:
            count += 1
    return count


def encode_frames() -> int:
    for _ in range(FRAMES_PER_RUN):
        Frame(Command.DP_REPORT, PHASE.encode(), 3).encode()
    return FRAMES_PER_RUN


async def handshake_s(url: str) -> float:
    """Seconds from start() to READY at the default (spec) timings."""
    link = McuLink(LinkConfig(url))
    start = time.perf_counter()
    await link.start()
    try:
        await link.wait_ready(30.0)
        return time.perf_counter() - start
    finally:
        await link.stop()


async def handshake_over_pty(split_bytes: bool) -> float:
    from gateway.twin import McuTwin, TwinOptions
    from gateway.twin.endpoints import close_pty, open_pty

    twin = McuTwin(TwinOptions(report_interval_s=0))
    twin.faults.split_bytes = split_bytes  # one byte per ~1.04 ms, as 9600 8N1 delivers them
    path = open_pty(twin)
    try:
        return await handshake_s(path)
    finally:
        close_pty(path)


async def handshakes(runs: int) -> None:
    cases: dict[str, Callable[[], Awaitable[float]]] = {
        "sim:// (in process)": lambda: handshake_s("sim://family_a?report_interval=0"),
        "pty, twin at 9600 byte pacing": lambda: handshake_over_pty(True),
    }
    for name, case in cases.items():
        times = [await case() for _ in range(runs)]
        print(f"handshake {name:32s} median {statistics.median(times) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--handshake", action="store_true", help="also time link handshakes")
    args = parser.parse_args()
    print(f"frame: {len(WIRE)} bytes {WIRE.hex(' ')}; median of {RUNS} runs")
    print(
        f"decode, one 19-byte frame per feed: {per_second(decode_frame_by_frame):12,.0f} frames/s"
    )
    print(
        f"decode, {FRAMES_PER_RUN} frames in one feed: {per_second(decode_stream):12,.0f} frames/s"
    )
    print(f"encode (DpValue + Frame):           {per_second(encode_frames):12,.0f} frames/s")
    if args.handshake:
        asyncio.run(handshakes(3))


if __name__ == "__main__":
    main()
