"""TuyaMCU decoder, long random-input run: no exception, every valid frame exactly once.

Run as ``python bench/bench_decoder_long.py [--inputs N] [--seed S]`` (default 1,000,000).
tests/test_robustness_decoder.py runs the same cases, fewer of them, in CI. Each input is
one of: random bytes biased toward 0x55/0xAA (no exception, counters add up); valid frames
between clean noise, fed in random chunks (each frame out exactly once, in order); the same
with checksum-corrupted frames mixed in (those dropped and counted, the valid ones all out).
"Clean" noise has no 55 AA and does not end in 0x55: noise that forms a header is, on the
wire, indistinguishable from a real frame (tests/test_protocol.py states the same limit).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time

from gateway.tuya.protocol import HEADER, Frame, FrameDecoder

KINDS = ("random", "frames", "corrupted")


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One input: the bytes, the chunk size to feed them in, the frames that must come out."""

    kind: str
    data: bytes
    chunk: int
    expected: tuple[Frame, ...] | None  # None: any frames, only no exception and counters
    corrupted: int = 0


def clean_noise(rng: random.Random, max_size: int) -> bytes:
    """Random bytes with no 55 AA that do not end in 0x55."""
    while True:
        data = rng.randbytes(rng.randint(0, max_size))
        if HEADER not in data and not data.endswith(HEADER[:1]):
            return data


def random_frame(rng: random.Random) -> Frame:
    size = rng.choice((0, 1, 2, 4, 8, rng.randint(0, 300)))
    return Frame(rng.randint(0, 255), rng.randbytes(size), rng.choice((0, 3)))


def corrupted_frame(rng: random.Random) -> bytes:
    """A frame whose checksum is wrong and that holds no other possible header."""
    while True:
        wire = bytearray(random_frame(rng).encode())
        wire[-1] = (wire[-1] + rng.randint(1, 255)) & 0xFF
        if HEADER not in wire[1:] and wire[-1] != HEADER[0]:
            return bytes(wire)


def biased_bytes(rng: random.Random) -> bytes:
    alphabet = b"\x55\xaa\x00\x03\x07\x01\xff"
    size = rng.randint(0, 400)
    if rng.random() < 0.5:
        return rng.randbytes(size)
    return bytes(
        rng.choice(alphabet) if rng.random() < 0.7 else rng.randint(0, 255) for _ in range(size)
    )


def make_case(rng: random.Random) -> Case:
    kind = rng.choice(KINDS)
    chunk = rng.choice((1, 2, 3, 7, 19, 64, 4096))
    if kind == "random":
        return Case(kind, biased_bytes(rng), chunk, None)
    parts, expected, corrupted = [clean_noise(rng, 40)], [], 0
    for _ in range(rng.randint(1, 4)):
        if kind == "corrupted" and rng.random() < 0.5:
            parts.append(corrupted_frame(rng))
            corrupted += 1
        frame = random_frame(rng)
        expected.append(frame)
        parts += [frame.encode(), clean_noise(rng, 40)]
    return Case(kind, b"".join(parts), chunk, tuple(expected), corrupted)


def check_case(case: Case) -> str | None:
    """None if the decoder handled ``case`` as promised; else what went wrong."""
    decoder = FrameDecoder()
    decoded: list[Frame] = []
    try:
        for i in range(0, len(case.data), case.chunk):
            decoder.feed(case.data[i : i + case.chunk])
            decoded.extend(decoder)
        decoded.extend(decoder.flush())
    except Exception as err:  # the property is "never raises"
        return f"{type(err).__name__}: {err}"
    framed = sum(len(f.encode()) for f in decoded)
    if decoder.frames_decoded != len(decoded):
        return f"frames_decoded {decoder.frames_decoded} != {len(decoded)} frames"
    if framed + decoder.bytes_skipped + decoder.buffered != len(case.data):
        return "bytes framed + skipped + buffered != bytes fed"
    if case.expected is not None and tuple(decoded) != case.expected:
        return f"expected {len(case.expected)} frames, got {len(decoded)}"
    if decoder.checksum_errors < case.corrupted:
        return f"{case.corrupted} corrupted frames, {decoder.checksum_errors} checksum errors"
    return None


def run(inputs: int, seed: int) -> tuple[list[tuple[int, Case, str]], dict[str, int]]:
    """Check ``inputs`` seeded cases; the failures (index, case, reason) and counts by kind."""
    rng = random.Random(seed)
    failures: list[tuple[int, Case, str]] = []
    kinds = dict.fromkeys(KINDS, 0)
    for index in range(inputs):
        case = make_case(rng)
        kinds[case.kind] += 1
        reason = check_case(case)
        if reason is not None:
            failures.append((index, case, reason))
    return failures, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    start = time.perf_counter()
    failures, kinds = run(args.inputs, args.seed)
    elapsed = time.perf_counter() - start
    print(
        f"decoder: {args.inputs:,} inputs (seed {args.seed}) {kinds} in {elapsed:.1f} s:"
        f" {len(failures)} failures"
    )
    for index, case, reason in failures[:10]:
        print(f"  #{index} {case.kind} chunk {case.chunk}: {reason}: {case.data.hex(' ')}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
