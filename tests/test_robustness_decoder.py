"""Decoder robustness: properties beyond tests/test_protocol.py, and a seeded random run.

The seeded run is the short form of bench/bench_decoder_long.py (same cases, 20,000 of them).
"""

from __future__ import annotations

from bench_modules import load_bench
from hypothesis import given
from hypothesis import strategies as st

from gateway.tuya.protocol import HEADER, MAX_DATA_LEN, Frame, FrameDecoder

bench = load_bench("bench_decoder_long")


def feed(data: bytes, chunk: int, flush: bool = False) -> tuple[list[Frame], FrameDecoder]:
    decoder = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(data), chunk):
        decoder.feed(data[i : i + chunk])
        out.extend(decoder)
    if flush:
        out.extend(decoder.flush())
    return out, decoder


def counters(decoder: FrameDecoder) -> tuple[int, int, int, int, int]:
    return (
        decoder.frames_decoded,
        decoder.bytes_skipped,
        decoder.checksum_errors,
        decoder.oversize_frames,
        decoder.buffered,
    )


frames = st.builds(
    Frame,
    command=st.integers(0, 255),
    data=st.binary(max_size=80),
    version=st.sampled_from([0, 3]),
)
noise = st.binary(max_size=24).filter(lambda b: HEADER not in b and not b.endswith(HEADER[:1]))


@given(st.lists(st.tuples(noise, frames), min_size=1, max_size=6), noise, st.integers(1, 50))
def test_frames_between_noise_come_out_once_each_in_order(
    parts: list[tuple[bytes, Frame]], tail: bytes, chunk: int
) -> None:
    data = b"".join(gap + frame.encode() for gap, frame in parts) + tail
    decoded, decoder = feed(data, chunk)
    assert decoded == [frame for _, frame in parts]
    assert decoder.bytes_skipped == sum(len(gap) for gap, _ in parts) + len(tail)


@given(st.binary(max_size=400), st.integers(1, 40))
def test_chunking_never_changes_the_result(data: bytes, chunk: int) -> None:
    whole, whole_decoder = feed(data, max(1, len(data)), flush=True)
    pieces, pieces_decoder = feed(data, chunk, flush=True)
    assert pieces == whole
    assert counters(pieces_decoder) == counters(whole_decoder)


@given(frames, frames, st.integers(1, 255), st.integers(1, 30))
def test_bad_checksum_frame_is_dropped_and_counted(
    before: Frame, after: Frame, delta: int, chunk: int
) -> None:
    bad = bytearray(before.encode())
    bad[-1] = (bad[-1] + delta) & 0xFF
    decoded, decoder = feed(bytes(bad) + after.encode(), chunk, flush=True)
    assert decoded[-1] == after
    assert decoder.checksum_errors >= 1
    if HEADER not in bad[1:]:  # no phantom header inside the corrupted frame
        assert decoded == [after]


@given(st.integers(0x100, MAX_DATA_LEN), frames, st.integers(1, 30))
def test_a_frame_behind_a_phantom_length_comes_out_once_whole(
    length: int, frame: Frame, chunk: int
) -> None:
    phantom = HEADER + b"\x03\x07" + length.to_bytes(2, "big")
    decoded, decoder = feed(phantom + frame.encode(), chunk)  # no flush: no quiet line needed
    assert decoded == [frame]
    assert (decoder.bytes_skipped, decoder.buffered) == (len(phantom), 0)


def test_seeded_random_inputs() -> None:
    failures, kinds = bench.run(20_000, seed=8)
    assert all(count > 5000 for count in kinds.values()), kinds
    assert failures == []


def test_check_case_catches_a_lost_frame() -> None:
    """The checker the seeded run relies on reports a frame that did not come out."""
    frame = Frame(0x07, b"\x01\x02", 3)
    lost = bench.Case("frames", b"\x00\x01", 4, (frame,))
    assert bench.check_case(lost) == "expected 1 frames, got 0"
