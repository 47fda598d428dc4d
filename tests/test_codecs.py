"""Datapoint codecs: scale, raw fields (the phase_a vectors), bitmap bits, alarm_set records."""

from __future__ import annotations

from fractions import Fraction
from types import MappingProxyType

import pytest

from gateway.errors import WriteRejectedError
from gateway.regmap.specs import DatapointSpec, DpSource, FieldSpec, RecordSpec
from gateway.regmap.vocab import SourceKind
from gateway.tuya.protocol import DpType, DpValue, Frame, FrameDecoder, decode_dps
from gateway.unit.dp_codecs import (
    AlarmRecord,
    confirms,
    decode_records,
    encode_record_write,
    encode_records,
    encode_scalar,
    find_record,
    member_value,
    read_field,
    scale_wire,
    set_record,
    unscale,
)

PHASE_A = DatapointSpec(
    "phase_a",
    6,
    DpType.RAW,
    fields=MappingProxyType(
        {
            "voltage": FieldSpec("voltage", 0, 2, -1, "V"),
            "current": FieldSpec("current", 2, 3, -3, "A"),
            "power": FieldSpec("power", 5, 3, 0, "W"),
        }
    ),
)
ALARMS = DatapointSpec(
    "alarm_set_2",
    18,
    DpType.RAW,
    writable=True,
    records=MappingProxyType(
        {
            "over_current": RecordSpec("over_current", 1, 0, "A", Fraction(1), Fraction(63)),
            "over_voltage": RecordSpec("over_voltage", 3, 0, "V", step=Fraction(5)),
            "fine": RecordSpec("fine", 7, -1, "V"),
        }
    ),
)
ENERGY = DatapointSpec("energy", 1, DpType.VALUE, scale=-2, min=Fraction(0), max=Fraction(1000))
FAULT = DatapointSpec("fault", 9, DpType.BITMAP, bits=MappingProxyType({"surge": 1, "ov": 10}))


def _report(hex_frame: str) -> list[DpValue]:
    decoder = FrameDecoder()
    decoder.feed(bytes.fromhex(hex_frame))
    frame: Frame = next(iter(decoder))
    return list(decode_dps(frame.data).values)


def test_scale_is_exact() -> None:
    assert scale_wire(2326, -1) == Fraction("232.6")
    assert scale_wire(-5, -3) == Fraction("-0.005")
    assert scale_wire(7, 2) == 700
    assert unscale(Fraction("232.6"), -1) == 2326
    assert unscale(Fraction(700), 2) == 7
    with pytest.raises(WriteRejectedError, match="resolution"):
        unscale(Fraction("232.65"), -1)


def test_read_field_sizes_and_sign() -> None:
    payload = bytes.fromhex("FFFE000102")
    assert read_field(payload, 0, 2, signed=True) == -2
    assert read_field(payload, 0, 2, signed=False) == 0xFFFE
    assert read_field(payload, 2, 3, signed=False) == 0x000102
    assert read_field(payload, 3, 3, signed=False) is None


def test_phase_a_vector() -> None:
    dp6, dp1 = _report("55AA03070014060000080916000099000023010200040000000310")
    value = {
        name: member_value(PHASE_A, DpSource("phase_a", SourceKind.FIELD, name), dp6)
        for name in PHASE_A.fields
    }
    assert value == {"voltage": Fraction("232.6"), "current": Fraction("0.153"), "power": 35}
    assert member_value(ENERGY, DpSource("energy"), dp1) == Fraction("0.03")


def test_short_raw_payload_has_no_value() -> None:
    short = DpValue.of_raw(6, bytes.fromhex("0916"))
    voltage = DpSource("phase_a", SourceKind.FIELD, "voltage")
    assert member_value(PHASE_A, voltage, short) == Fraction("232.6")
    assert member_value(PHASE_A, DpSource("phase_a", SourceKind.FIELD, "power"), short) is None


def test_type_mismatch_has_no_value() -> None:
    assert member_value(ENERGY, DpSource("energy"), DpValue.of_bool(1, True)) is None


def test_bitmap_bits() -> None:
    dp = DpValue.of_bitmap(9, (1 << 10) | (1 << 1), 4)
    bits = {bit: member_value(FAULT, DpSource("fault", "bit", bit), dp) for bit in FAULT.bits}
    assert bits == {"surge": 1, "ov": 1}
    quiet = DpValue.of_bitmap(9, 1 << 2, 1)
    assert member_value(FAULT, DpSource("fault", "bit", "surge"), quiet) == 0
    assert member_value(FAULT, DpSource("fault"), dp) == 1026


def test_unsigned_value_datapoint() -> None:
    spec = DatapointSpec("big", 2, DpType.VALUE, signed=False)
    dp = DpValue(2, DpType.VALUE, bytes.fromhex("FFFFFFFF"))
    assert member_value(spec, DpSource("big"), dp) == 0xFFFFFFFF
    assert member_value(ENERGY, DpSource("energy"), dp) == Fraction("-0.01")


def test_records_vector_and_unknown_records_kept() -> None:
    (dp18,) = _report("55AA030700101200000C0101003F030100FA040100AA25")
    records, trailing = decode_records(dp18.payload)
    assert records == (
        AlarmRecord(1, True, 63),
        AlarmRecord(3, True, 250),
        AlarmRecord(4, True, 170),
    )
    assert trailing == b""
    assert encode_records(records) == dp18.payload
    changed = set_record(dp18.payload, 3, value=260)
    assert decode_records(changed)[0] == (
        AlarmRecord(1, True, 63),
        AlarmRecord(3, True, 260),
        AlarmRecord(4, True, 170),
    )
    disabled = set_record(changed, 4, enabled=False)
    assert find_record(disabled, 4) == AlarmRecord(4, False, 170)
    assert find_record(disabled, 1) == AlarmRecord(1, True, 63)


def test_set_record_appends_missing_and_keeps_trailing_bytes() -> None:
    payload = bytes.fromhex("0400001E") + b"\x09"
    records, trailing = decode_records(payload)
    assert records == (AlarmRecord(4, False, 30),)
    assert trailing == b"\x09"
    added = set_record(payload, 2, value=5)
    assert added == bytes.fromhex("0400001E") + bytes.fromhex("02000005") + b"\x09"
    with pytest.raises(WriteRejectedError, match="16 bits"):
        set_record(payload, 4, value=70000)


def test_record_values_and_flags() -> None:
    payload = bytes.fromhex("0101003F030100FA070000FF")
    value = member_value(
        ALARMS,
        DpSource("alarm_set_2", "record", "over_current"),
        payload_dp := DpValue.of_raw(18, payload),
    )
    assert value == 63
    assert member_value(ALARMS, DpSource("alarm_set_2", "enabled", "over_current"), payload_dp) == 1
    assert member_value(ALARMS, DpSource("alarm_set_2", "record", "fine"), payload_dp) == Fraction(
        "25.5"
    )
    missing = DpValue.of_raw(18, bytes.fromhex("0101003F"))
    assert member_value(ALARMS, DpSource("alarm_set_2", "record", "over_voltage"), missing) is None


def test_encode_scalar_validates() -> None:
    assert encode_scalar(ENERGY, Fraction("12.34")) == DpValue.of_value(1, 1234)
    with pytest.raises(WriteRejectedError, match=r"outside 0\.\.1000"):
        encode_scalar(ENERGY, Fraction(1001))
    with pytest.raises(WriteRejectedError, match="resolution"):
        encode_scalar(ENERGY, Fraction("0.001"))
    switch = DatapointSpec("switch", 16, DpType.BOOL, writable=True)
    assert encode_scalar(switch, Fraction(1)) == DpValue.of_bool(16, True)
    with pytest.raises(WriteRejectedError, match="0 or 1"):
        encode_scalar(switch, Fraction(2))
    mode = DatapointSpec("mode", 3, DpType.ENUM, labels=("a", "b"))
    assert encode_scalar(mode, Fraction(1)) == DpValue.of_enum(3, 1)
    with pytest.raises(WriteRejectedError, match="no label"):
        encode_scalar(mode, Fraction(2))
    stepped = DatapointSpec("s", 4, DpType.VALUE, min=Fraction(30), step=Fraction(5))
    assert encode_scalar(stepped, Fraction(35)) == DpValue.of_value(4, 35)
    with pytest.raises(WriteRejectedError, match="step"):
        encode_scalar(stepped, Fraction(37))
    with pytest.raises(WriteRejectedError, match="32-bit"):
        encode_scalar(DatapointSpec("x", 5, DpType.VALUE), Fraction(2**31))


def test_encode_record_write_validates() -> None:
    payload = bytes.fromhex("0101003F030100FA")
    over_current = DpSource("alarm_set_2", "record", "over_current")
    assert find_record(encode_record_write(ALARMS, over_current, Fraction(40), payload), 1) == (
        AlarmRecord(1, True, 40)
    )
    with pytest.raises(WriteRejectedError, match=r"outside 1\.\.63"):
        encode_record_write(ALARMS, over_current, Fraction(64), payload)
    over_voltage = DpSource("alarm_set_2", "record", "over_voltage")
    with pytest.raises(WriteRejectedError, match="step"):
        encode_record_write(ALARMS, over_voltage, Fraction(252), payload)
    flag = DpSource("alarm_set_2", "enabled", "over_voltage")
    assert find_record(encode_record_write(ALARMS, flag, Fraction(0), payload), 3) == (
        AlarmRecord(3, False, 250)
    )
    with pytest.raises(WriteRejectedError, match="0 or 1"):
        encode_record_write(ALARMS, flag, Fraction(3), payload)
    fine = DpSource("alarm_set_2", "record", "fine")
    with pytest.raises(WriteRejectedError, match="16 bits"):
        encode_record_write(ALARMS, fine, Fraction(7000), payload)


def test_confirms() -> None:
    assert confirms(DpValue.of_bool(16, True), DpValue.of_bool(16, True))
    assert not confirms(DpValue.of_bool(16, True), DpValue.of_bool(16, False))
    assert not confirms(DpValue.of_bool(16, True), DpValue.of_value(16, 1))
    sent = DpValue.of_raw(18, bytes.fromhex("0101003F030100FA"))
    reordered = DpValue.of_raw(18, bytes.fromhex("030100FA0101003F"))
    assert confirms(sent, reordered, (1, 3))
    other = DpValue.of_raw(18, bytes.fromhex("010100280301 00FA".replace(" ", "")))
    assert not confirms(sent, other, (1,))
    assert confirms(sent, other, (3,))
