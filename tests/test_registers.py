"""Value <-> register conversion: every format, word order, sign, saturation and rejection."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError, WriteRejectedError
from gateway.modbus.tables import ExceptionCode, Table
from gateway.regmap.load import RegisterMap, load_map, map_json_schema, parse_map
from gateway.regmap.registers import (
    FLOAT_FORMATS,
    FORMATS,
    INTEGER_FORMATS,
    WORD_ORDERS,
    decode_value,
    encode_value,
    integer_range,
    nan_words,
    register_count,
)
from gateway.regmap.status import STATUS_VALUES, StatusKind
from gateway.regmap.vocab import DerivedOp
from gateway.tuya.link import LinkState
from gateway.tuya.protocol import DpValue
from gateway.unit.cache import DatapointCache
from gateway.unit.reads import encode_point

# float32 230.5 is 43 66 80 00 in big-endian bytes (A B C D)
FLOAT_230_5 = {
    "ABCD": (0x4366, 0x8000),
    "CDAB": (0x8000, 0x4366),
    "BADC": (0x6643, 0x0080),
    "DCBA": (0x0080, 0x6643),
}
# uint64 0x0102030405060708 in each word order
U64 = {
    "ABCD": (0x0102, 0x0304, 0x0506, 0x0708),
    "CDAB": (0x0708, 0x0506, 0x0304, 0x0102),
    "BADC": (0x0201, 0x0403, 0x0605, 0x0807),
    "DCBA": (0x0807, 0x0605, 0x0403, 0x0201),
}


def test_register_counts() -> None:
    counts = {f: register_count(f, 5) for f in FORMATS}
    assert counts == {
        "bool": 1,
        "uint16": 1,
        "int16": 1,
        "uint32": 2,
        "int32": 2,
        "uint64": 4,
        "int64": 4,
        "float32": 2,
        "float64": 4,
        "string": 5,
    }
    with pytest.raises(ValueError, match="length"):
        register_count("string")


@pytest.mark.parametrize("order", WORD_ORDERS)
def test_float32_word_orders(order: str) -> None:
    assert encode_value(Fraction("230.5"), "float32", word_order=order).words == FLOAT_230_5[order]
    assert decode_value(FLOAT_230_5[order], "float32", word_order=order) == Fraction("230.5")


@pytest.mark.parametrize("order", WORD_ORDERS)
def test_uint64_word_orders(order: str) -> None:
    value = 0x0102030405060708
    assert encode_value(value, "uint64", word_order=order).words == U64[order]
    assert decode_value(U64[order], "uint64", word_order=order) == value


@pytest.mark.parametrize("order", WORD_ORDERS)
def test_uint32_word_orders(order: str) -> None:
    expected = {
        "ABCD": (0x1234, 0x5678),
        "CDAB": (0x5678, 0x1234),
        "BADC": (0x3412, 0x7856),
        "DCBA": (0x7856, 0x3412),
    }[order]
    assert encode_value(0x12345678, "uint32", word_order=order).words == expected


@pytest.mark.parametrize(
    ("fmt", "value", "words"),
    [
        ("int16", -1, (0xFFFF,)),
        ("int16", -32768, (0x8000,)),
        ("int32", -2, (0xFFFF, 0xFFFE)),
        ("int64", -3, (0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD)),
        ("float32", -1.5, (0xBFC0, 0x0000)),
        ("float64", -2.0, (0xC000, 0, 0, 0)),
    ],
)
def test_negative_values(fmt: str, value: float, words: tuple[int, ...]) -> None:
    assert encode_value(value, fmt) == encode_value(Fraction(value), fmt)
    assert encode_value(value, fmt).words == words
    assert decode_value(words, fmt) == Fraction(value)


@pytest.mark.parametrize(
    ("fmt", "value", "words"),
    [
        ("uint16", 70000, (0xFFFF,)),
        ("uint16", -5, (0,)),
        ("int16", 40000, (0x7FFF,)),
        ("int16", -40000, (0x8000,)),
        ("uint32", 2**40, (0xFFFF, 0xFFFF)),
        ("int32", -(2**40), (0x8000, 0x0000)),
        ("uint64", -1, (0, 0, 0, 0)),
        ("int64", 2**70, (0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF)),
        ("bool", 7, (1,)),
    ],
)
def test_reads_that_do_not_fit_saturate(fmt: str, value: int, words: tuple[int, ...]) -> None:
    encoded = encode_value(value, fmt)
    assert encoded.words == words
    assert encoded.saturated


def test_float32_overflow_saturates_to_largest_finite() -> None:
    encoded = encode_value(1e39, "float32")
    assert encoded.saturated
    assert encoded.words == (0x7F7F, 0xFFFF)
    assert encode_value(-1e39, "float32").words == (0xFF7F, 0xFFFF)
    assert not encode_value(1e39, "float64").saturated


def test_values_that_fit_are_not_saturated() -> None:
    for fmt in INTEGER_FORMATS:
        lo, hi = integer_range(fmt)
        assert not encode_value(lo, fmt).saturated
        assert not encode_value(hi, fmt).saturated
        assert encode_value(hi + 1, fmt).saturated
        assert encode_value(lo - 1, fmt).saturated


def test_scale_multiplies_and_rounds() -> None:
    assert encode_value(Fraction("232.6"), "uint16", scale=10).words == (2326,)
    assert encode_value(Fraction("0.153"), "uint16", scale=1000).words == (153,)
    assert encode_value(Fraction("1.25"), "uint16", scale=10).words == (12,)  # half to even
    assert encode_value(Fraction("1.35"), "uint16", scale=10).words == (14,)
    assert encode_value(Fraction("-0.5"), "int16", scale=10).words == (0xFFFB,)
    assert encode_value(Fraction("2.5"), "float32", scale=2).words == (0x40A0, 0)
    assert decode_value((2326,), "uint16", scale=10) == Fraction("232.6")
    assert decode_value((0xFFFB,), "int16", scale=10) == Fraction("-0.5")


def test_bool_format() -> None:
    assert encode_value(True, "bool").words == (1,)
    assert encode_value(False, "bool").words == (0,)
    assert decode_value((1,), "bool") == 1
    assert decode_value((0,), "bool") == 0
    with pytest.raises(WriteRejectedError, match="0 or 1"):
        decode_value((2,), "bool")


def test_strings_pad_truncate_and_count_truncation() -> None:
    assert encode_value("AB", "string", registers=2) == encode_value("AB", "string", registers=2)
    assert encode_value("ABC", "string", registers=2).words == (0x4142, 0x4300)
    assert not encode_value("ABCD", "string", registers=2).saturated
    long = encode_value("ABCDE", "string", registers=2)
    assert long.words == (0x4142, 0x4344)
    assert long.saturated
    # never cut inside a UTF-8 character: "Aé" is 41 C3 A9, 1 register holds 41 only
    assert encode_value("Aé", "string", registers=1).words == (0x4100,)
    with pytest.raises(WriteRejectedError, match="read-only"):
        decode_value((0x4142,), "string")


def test_text_into_a_number_format_is_a_bug() -> None:
    with pytest.raises(TypeError):
        encode_value("12", "uint16")


@pytest.mark.parametrize("order", WORD_ORDERS)
@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_nan_words_are_nan(fmt: str, order: str) -> None:
    words = nan_words(fmt, order)
    assert len(words) == register_count(fmt)
    with pytest.raises(WriteRejectedError, match="not a number"):
        decode_value(words, fmt, word_order=order)


def test_nan_value_into_an_integer_format_saturates_to_zero() -> None:
    encoded = encode_value(math.nan, "int32")
    assert encoded.words == (0, 0)
    assert encoded.saturated
    assert encode_value(math.inf, "uint16").words == (0xFFFF,)


def test_out_of_range_writes_are_rejected() -> None:
    with pytest.raises(WriteRejectedError, match=r"0\.\.65535"):
        decode_value((70000,), "uint16")
    with pytest.raises(WriteRejectedError, match=r"0\.\.65535"):
        decode_value((-1,), "int16")
    with pytest.raises(WriteRejectedError, match="takes 2"):
        decode_value((1,), "uint32")
    with pytest.raises(WriteRejectedError, match="not a number"):
        decode_value((0x7F80, 0), "float32")  # +inf


def test_float32_write_near_the_limit() -> None:
    words = encode_value(3.4025001647762064e38, "float32").words
    assert float(decode_value(words, "float32")) == pytest.approx(3.4025001647762064e38)
    largest = (0x7F7F, 0xFFFF)
    assert float(decode_value(largest, "float32")) == pytest.approx(3.4028234663852886e38)


def test_float32_writes_mean_their_shortest_decimal() -> None:
    words = encode_value(Fraction("230.1"), "float32").words
    assert decode_value(words, "float32") == Fraction("230.1")
    words = encode_value(Fraction("0.1"), "float64").words
    assert decode_value(words, "float64") == Fraction("0.1")


@given(
    fmt=st.sampled_from(INTEGER_FORMATS),
    order=st.sampled_from(WORD_ORDERS),
    data=st.data(),
)
def test_integer_round_trip(fmt: str, order: str, data: st.DataObject) -> None:
    lo, hi = integer_range(fmt)
    value = data.draw(st.integers(lo, hi))
    encoded = encode_value(value, fmt, word_order=order)
    assert not encoded.saturated
    assert all(0 <= w <= 0xFFFF for w in encoded.words)
    assert decode_value(encoded.words, fmt, word_order=order) == value


@given(
    order=st.sampled_from(WORD_ORDERS),
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_float32_round_trip(order: str, value: float) -> None:
    words = encode_value(value, "float32", word_order=order).words
    decoded = float(decode_value(words, "float32", word_order=order))
    # the shortest decimal that is the same float32, so compare as float32
    assert struct.unpack(">f", struct.pack(">f", decoded))[0] == value


@given(
    order=st.sampled_from(WORD_ORDERS),
    value=st.floats(allow_nan=False, allow_infinity=False),
)
def test_float64_round_trip(order: str, value: float) -> None:
    words = encode_value(value, "float64", word_order=order).words
    assert float(decode_value(words, "float64", word_order=order)) == value


# -- values out of range (issue 13): clamp or exception per point, a per-point flag ----------
SATURATE_MAP = Path(__file__).parent / "maps" / "saturate.yaml"


def _read(regmap: RegisterMap, *reports: DpValue) -> dict[str, tuple[object, bool]]:
    """Every point's encoding (words or exception code, saturated) after ``reports``."""
    cache = DatapointCache()
    cache.set_link_state(LinkState.READY)
    for report in reports:
        cache.update(report)
    snapshot = cache.snapshot()
    return {
        point.name: encode_point(point, regmap.datapoints, snapshot, {"writes_confirmed": 7})
        for table in Table
        for point in regmap.points(table)
    }


def test_a_value_too_big_for_its_format_is_clamped_or_refused_per_point() -> None:
    regmap = load_map(SATURATE_MAP)
    read = _read(regmap, DpValue.of_value(1, 16_777_000), DpValue.of_value(2, 500))
    assert read["current"] == ((65535,), True)  # 16,777 A × 10 does not fit a uint16
    assert read["current_strict"] == (ExceptionCode.SERVER_DEVICE_FAILURE, True)
    assert read["current_clamped"] == ((1,), False)
    assert read["current_strict_clamped"] == ((1,), False)
    assert read["energy"] == ((0, 500), False)
    assert read["energy_clamped"] == ((0,), False)
    assert read["writes_confirmed"] == ((0, 7), False)


def test_a_value_outside_the_declared_min_max_is_clamped_and_flagged() -> None:
    regmap = load_map(SATURATE_MAP)
    read = _read(
        regmap,
        DpValue.of_value(1, 1_500),  # 1.5 A
        DpValue.of_value(2, -500),  # -5 kWh: the map declares min 0
        DpValue.of_value(3, 250),  # 250 W: the map declares max 100
    )
    assert read["current"] == ((15,), False)
    assert read["current_clamped"] == ((0,), False)
    assert read["current_strict_clamped"] == ((0,), False)
    assert read["energy"] == ((0, 0), True)
    assert read["energy_clamped"] == ((1,), False)
    words = read["power_kw"][0]
    assert isinstance(words, tuple)
    assert struct.unpack(">f", struct.pack(">2H", *words))[0] == pytest.approx(0.1)
    assert read["power_kw"][1] is True  # an input out of its range taints what is derived


def test_saturated_names_a_point_of_the_map() -> None:
    text = SATURATE_MAP.read_text().replace("status.saturated.energy", "status.saturated.enrgy")
    with pytest.raises(ConfigError) as caught:
        parse_map(text, "m.yaml")
    assert caught.value.errors == [
        "m.yaml:12: input_registers[4].source: unknown point 'enrgy': expected one of current,"
        " current_strict, energy, power_kw, writes_confirmed (did you mean 'energy'?)"
    ]


# status.lifetime_energy needs an energy section, so every status map carries one
_ENERGY = (
    "datapoints: {e: {id: 1, type: value, scale: -2}}\nenergy: {datapoint: e, max_power_w: 1000}\n"
)


def test_the_status_table_is_what_the_unit_produces() -> None:
    # As the service wires a unit: the link's values, the listeners' and the policy's refusals.
    from gateway.cli import build_parser
    from gateway.config import config_from_args
    from gateway.service import GatewayService

    args = build_parser().parse_args(["run", "--link", "sim://", "--tcp", "127.0.0.1:0"])
    unit = GatewayService(config_from_args(args)).units[1]
    values = unit.backend.status_values(unit.cache.snapshot())
    assert set(values) == set(STATUS_VALUES)
    for name, status in STATUS_VALUES.items():  # and the checker accepts every one
        text = status.kind is StatusKind.TEXT
        fmt = "string, registers: 8" if text else "uint32"
        point = f"{{name: p, address: 0, source: status.{name}, format: {fmt}}}"
        parse_map(f"device: {{name: x}}\n{_ENERGY}input_registers: [{point}]\n")


def test_every_derived_operation_has_its_schema() -> None:
    schema = map_json_schema()
    options = schema["$defs"]["source"]["anyOf"]
    keys = {key for option in options for key in option.get("required", ())}
    assert {str(op) for op in DerivedOp} <= keys
