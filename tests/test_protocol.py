"""The TuyaMCU codec against the verified vectors, resync cases and Hypothesis properties."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import DpRecordError, ProtocolError
from gateway.tuya.protocol import (
    Command,
    DpType,
    DpValue,
    Frame,
    FrameDecoder,
    ProductInfo,
    decode_dps,
    decode_local_time,
    encode_dps,
    encode_local_time,
)

# ../shared/vectors/tuyamcu_frames.md, copied so the suite runs on a clean checkout.
MCU_REPORTS: dict[str, tuple[DpValue, ...]] = {
    "55AA0307000802020004000000647D": (DpValue.of_value(2, 100),),
    "55AA03070008020200040000005A73": (DpValue.of_value(2, 90),),
    "55AA03070008680200040000000180": (DpValue.of_value(104, 1),),
    "55AA03070014060000080916000099000023010200040000000310": (
        DpValue.of_raw(6, bytes.fromhex("0916000099000023")),
        DpValue.of_value(1, 3),
    ),
    "55AA0307000C08000008090100012E000043A1": (
        DpValue.of_raw(8, bytes.fromhex("090100012E000043")),
    ),
    "55AA030700101200000C0101003F030100FA040100AA25": (
        DpValue.of_raw(18, bytes.fromhex("0101003F030100FA040100AA")),
    ),
    "55AA03070008110000040400001E48": (DpValue.of_raw(17, bytes.fromhex("0400001E")),),
    "55AA0307000509050001001D": (DpValue.of_bitmap(9, 0, 1),),
    "55AA03070008010200040000000119": (DpValue.of_value(1, 1),),
    "55AA030700137300000F090F0000BF0000780000250110C33218": (
        DpValue.of_raw(115, bytes.fromhex("090F0000BF0000780000250110C332")),
    ),
}
TRUNCATED_RECORD = "55AA030700060102000400172D"
PRODUCT_JSON = b'{"p":"lih4vjeoyao4jeku","v":"2.0.0","m":0}'
MCU_FRAMES: dict[str, Frame] = {
    "55AA030000010003": Frame(Command.HEARTBEAT, b"\x00", 3),
    "55AA030000010104": Frame(Command.HEARTBEAT, b"\x01", 3),
    "55AA0301002A" + PRODUCT_JSON.hex().upper() + "41": Frame(
        Command.PRODUCT_INFO, PRODUCT_JSON, 3
    ),
    "55AA0302000004": Frame(Command.WORKING_MODE, b"", 3),
    "55AA0303000005": Frame(Command.WIFI_STATE, b"", 3),
    "55AA031C00001E": Frame(Command.LOCAL_TIME, b"", 3),
    "55AA0324000026": Frame(Command.RSSI, b"", 3),
    "55AA032B00002D": Frame(Command.NETWORK_STATUS, b"", 3),
    "55AA03340001043B": Frame(Command.EXTENDED_SERVICE, b"\x04", 3),
    TRUNCATED_RECORD: Frame(Command.DP_REPORT, bytes.fromhex("0102000400 17".replace(" ", "")), 3),
} | {hex_: Frame(Command.DP_REPORT, encode_dps(dps), 3) for hex_, dps in MCU_REPORTS.items()}
GATEWAY_FRAMES: dict[str, Frame] = {
    "55AA00000000FF": Frame(Command.HEARTBEAT),
    "55AA0001000000": Frame(Command.PRODUCT_INFO),
    "55AA0002000001": Frame(Command.WORKING_MODE),
    "55AA000300010407": Frame(Command.WIFI_STATE, b"\x04"),
    "55AA0008000007": Frame(Command.DP_QUERY),
    "55AA0006000502010001010F": Frame(Command.DP_COMMAND, DpValue.of_bool(2, True).encode()),
    "55AA0006000510010001001C": Frame(Command.DP_COMMAND, DpValue.of_bool(16, False).encode()),
    "55AA000600056D040001108C": Frame(Command.DP_COMMAND, DpValue.of_enum(109, 16).encode()),
    "55AA001C000801180B14090D140388": Frame(
        Command.LOCAL_TIME, encode_local_time(datetime(2024, 11, 20, 9, 13, 20))
    ),
    "55AA00340002040039": Frame(Command.EXTENDED_SERVICE, b"\x04\x00"),
    "55AA002300010124": Frame(Command.DP_SYNC_ACK, b"\x01"),
}
ALL_FRAMES = MCU_FRAMES | GATEWAY_FRAMES
GARBAGE = bytes.fromhex("00 FF 13 55 37 AA 55 55")  # stray 55s and AAs, but never 55 AA


def decode(data: bytes, chunk: int | None = None) -> tuple[list[Frame], FrameDecoder]:
    """Decode ``data`` fed whole or ``chunk`` bytes at a time, then flush as an idle line."""
    decoder = FrameDecoder()
    frames: list[Frame] = []
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        decoder.feed(data[i : i + step])
        frames.extend(decoder)
    frames.extend(decoder.flush())
    return frames, decoder


# -- vectors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("hex_", "frame"), ALL_FRAMES.items(), ids=list(ALL_FRAMES))
@pytest.mark.parametrize("chunk", [None, 1], ids=["whole", "bytewise"])
def test_vector_decodes(hex_: str, frame: Frame, chunk: int | None) -> None:
    frames, decoder = decode(bytes.fromhex(hex_), chunk)
    assert frames == [frame]
    assert decoder.bytes_skipped == 0
    assert decoder.checksum_errors == 0


@pytest.mark.parametrize(("hex_", "frame"), ALL_FRAMES.items(), ids=list(ALL_FRAMES))
def test_vector_wrapped_in_garbage(hex_: str, frame: Frame) -> None:
    frames, decoder = decode(GARBAGE + bytes.fromhex(hex_) + GARBAGE, 3)
    assert frames == [frame]
    assert decoder.bytes_skipped == 2 * len(GARBAGE)


@pytest.mark.parametrize(("hex_", "frame"), ALL_FRAMES.items(), ids=list(ALL_FRAMES))
def test_vector_encodes_to_the_same_bytes(hex_: str, frame: Frame) -> None:
    assert frame.encode() == bytes.fromhex(hex_)


def test_all_vectors_back_to_back_bytewise() -> None:
    stream = b"".join(bytes.fromhex(h) for h in ALL_FRAMES)
    frames, _ = decode(stream, 1)
    assert frames == list(ALL_FRAMES.values())


@pytest.mark.parametrize(("hex_", "dps"), MCU_REPORTS.items(), ids=list(MCU_REPORTS))
def test_report_vectors_decode_to_their_dps(hex_: str, dps: tuple[DpValue, ...]) -> None:
    (frame,) = decode(bytes.fromhex(hex_))[0]
    assert decode_dps(frame.data).values == dps
    assert decode_dps(frame.data).errors == ()


def test_report_vector_values() -> None:
    assert DpValue.of_value(2, 100).value == 100
    phase = MCU_REPORTS["55AA03070014060000080916000099000023010200040000000310"][0].payload
    assert int.from_bytes(phase[0:2], "big") == 2326  # 232.6 V
    assert int.from_bytes(phase[2:5], "big") == 153  # mA
    assert int.from_bytes(phase[5:8], "big") == 35  # W


def test_truncated_record_vector_is_rejected_and_counted() -> None:
    (frame,) = decode(bytes.fromhex(TRUNCATED_RECORD))[0]
    parsed = decode_dps(frame.data)
    assert parsed.values == ()
    assert len(parsed.errors) == 1
    assert "dp1" in parsed.errors[0]


def test_product_info_and_local_time_vectors() -> None:
    info = ProductInfo.decode(PRODUCT_JSON)
    assert (info.product_key, info.version, info.mode) == ("lih4vjeoyao4jeku", "2.0.0", 0)
    answer = bytes.fromhex("01180B14090D1403")
    assert decode_local_time(answer) == datetime(2024, 11, 20, 9, 13, 20)
    assert encode_local_time(None) == bytes(8)


# -- resync ------------------------------------------------------------------------------------
REPORT = bytes.fromhex("55AA0307000802020004000000647D")
REPORT_FRAME = MCU_FRAMES["55AA0307000802020004000000647D"]


def test_phantom_header_with_bad_checksum_is_skipped() -> None:
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex("55AA030700010099") + REPORT)
    assert list(decoder) == [REPORT_FRAME]
    assert decoder.checksum_errors == 1
    assert decoder.bytes_skipped == 8


def test_oversize_length_resyncs_at_once() -> None:
    decoder = FrameDecoder(max_data_len=1024)
    decoder.feed(bytes.fromhex("55AA03070401") + REPORT)  # 1025 data bytes: over the limit
    assert list(decoder) == [REPORT_FRAME]
    assert decoder.oversize_frames == 1


def test_phantom_long_length_resyncs_at_the_whole_frame_behind_it() -> None:
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex("55AA03070300") + REPORT[:-1])  # 768 bytes announced: plausible
    assert list(decoder) == []  # waiting: the frame behind is not whole yet
    assert decoder.buffered == 6 + len(REPORT) - 1
    decoder.feed(REPORT[-1:])
    assert list(decoder) == [REPORT_FRAME]  # a whole frame inside: the length was a phantom
    assert (decoder.bytes_skipped, decoder.buffered) == (6, 0)


def test_phantom_long_length_before_a_quiet_line_waits_until_flush() -> None:
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex("55AA03070300") + REPORT[:-1])
    assert list(decoder) == []
    assert decoder.flush() == []  # the half frame behind it is given up too
    assert (decoder.bytes_skipped, decoder.buffered) == (6 + len(REPORT) - 1, 0)


def test_start_of_frame_stress() -> None:
    frames, decoder = decode(b"\x55" * 9 + b"\x55\xaa" + b"\x55\xaa" + REPORT + b"\xaa" * 5, 1)
    assert frames == [REPORT_FRAME]
    assert decoder.frames_decoded == 1


def test_a_lone_trailing_0x55_is_kept_for_the_next_read() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x01\x02" + REPORT[:1])
    assert list(decoder) == []
    decoder.feed(REPORT[1:])
    assert list(decoder) == [REPORT_FRAME]


def test_frame_length_is_16_bit() -> None:
    frame = Frame(Command.DP_REPORT, DpValue.of_raw(6, bytes(300)).encode(), 3)
    assert decode(frame.encode(), 7)[0] == [frame]


def test_frame_rejects_impossible_fields() -> None:
    with pytest.raises(ProtocolError):
        Frame(0x100)
    with pytest.raises(ProtocolError):
        Frame(0, bytes(0x10000))


# -- DP records --------------------------------------------------------------------------------
GOOD = DpValue.of_value(2, 100).encode()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (bytes.fromhex("1001000201 01"), "expected 1"),  # bool with 2 bytes
        (bytes.fromhex("0202000300 0000"), "expected 4"),  # value with 3 bytes
        (bytes.fromhex("0905000300 0000"), "1 or 2 or 4"),  # bitmap with 3 bytes
        (bytes.fromhex("0402000400 17"), "2 present"),  # truncated payload
        (bytes.fromhex("0402"), "truncated record header"),
        (bytes.fromhex("0707000100"), "dp7"),  # unknown type 7
    ],
    ids=["bool-size", "value-size", "bitmap-size", "truncated", "short-header", "unknown-type"],
)
def test_bad_record_keeps_the_records_before(bad: bytes, says: str) -> None:
    parsed = decode_dps(GOOD + bad)
    assert parsed.values == (DpValue.of_value(2, 100),)
    assert len(parsed.errors) == 1
    assert says in parsed.errors[0]


def test_dp_value_rejects_wrong_sizes() -> None:
    with pytest.raises(DpRecordError):
        DpValue(1, DpType.BOOL, b"\x00\x01")
    with pytest.raises(DpRecordError):
        DpValue.of_value(1, 2**31)
    with pytest.raises(DpRecordError):
        DpValue.of_bitmap(1, 256, 1)


# -- properties --------------------------------------------------------------------------------
def dp_values() -> st.SearchStrategy[DpValue]:
    dpid = st.integers(0, 255)
    return st.one_of(
        st.builds(DpValue.of_bool, dpid, st.booleans()),
        st.builds(DpValue.of_value, dpid, st.integers(-(2**31), 2**31 - 1)),
        st.builds(DpValue.of_enum, dpid, st.integers(0, 255)),
        st.builds(DpValue.of_string, dpid, st.text(max_size=40)),
        st.builds(DpValue.of_raw, dpid, st.binary(max_size=40)),
        st.sampled_from([1, 2, 4]).flatmap(
            lambda size: st.builds(
                DpValue.of_bitmap, dpid, st.integers(0, (1 << (8 * size)) - 1), st.just(size)
            )
        ),
    )


frames = st.builds(
    Frame,
    command=st.integers(0, 255),
    data=st.binary(max_size=300),
    version=st.sampled_from([0, 3]),
)


@given(st.lists(dp_values(), max_size=6))
def test_dp_records_round_trip(values: list[DpValue]) -> None:
    parsed = decode_dps(encode_dps(values))
    assert parsed.values == tuple(values)
    assert parsed.errors == ()
    for dp in values:
        assert DpValue(dp.dpid, dp.dp_type, dp.payload).value == dp.value


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    assert decode(frame.encode())[0] == [frame]


# A garbage prefix that contains 55 AA can form a phantom header whose length swallows the
# real frame, or even a valid frame that overlaps it: on the wire that is indistinguishable
# from real traffic, so the property is stated for prefixes without 55 AA (and, to keep the
# junction clean, not ending in 0x55).
prefixes = st.binary(max_size=64).filter(lambda b: b"\x55\xaa" not in b and not b.endswith(b"\x55"))


@given(prefixes, frames, st.binary(max_size=64), st.integers(1, 40))
def test_frame_in_garbage_comes_out_exactly_once(
    prefix: bytes, frame: Frame, suffix: bytes, chunk: int
) -> None:
    assume(frame.encode() not in suffix)
    decoded, _ = decode(prefix + frame.encode() + suffix, chunk)
    assert decoded.count(frame) == 1
    assert decoded[0] == frame


@given(st.binary(max_size=600), st.integers(1, 64))
def test_arbitrary_bytes_never_raise_and_counters_add_up(data: bytes, chunk: int) -> None:
    decoded, decoder = decode(data, chunk)
    assert decoder.frames_decoded == len(decoded)
    framed = sum(len(frame.encode()) for frame in decoded)
    assert framed + decoder.bytes_skipped + decoder.buffered == len(data)
    assert decoder.buffered == 0
