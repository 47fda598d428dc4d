"""The register map's format as data: one tree drives both the loader's checks and the JSON Schema.

The tree is written in the small schema language of :mod:`gateway.regmap.yaml_schema`; the meaning
checks (names that must exist, overlaps, scale overflow) are in :mod:`gateway.regmap.load`.
"""

from __future__ import annotations

from typing import Any

from gateway.regmap.registers import FORMATS, STALE_POLICIES, WORD_ORDERS
from gateway.regmap.yaml_schema import (
    NAME_PATTERN,
    AnyOf,
    Bool,
    Checked,
    Int,
    Key,
    ListOf,
    MapOf,
    Node,
    Num,
    Ref,
    Str,
    check_yaml,
    json_schema,
    not_one_of,
    obj,
    unknown_name,
)

__all__ = [
    "DERIVED_OPS",
    "DP_TYPES",
    "MAP_SCHEMA",
    "STATUS_VALUES",
    "TABLE_KEYS",
    "Checked",
    "check_document",
    "map_json_schema",
    "not_one_of",
    "unknown_name",
]

DP_TYPES = ("bool", "value", "string", "enum", "bitmap", "raw")
TABLE_KEYS = ("coils", "discrete_inputs", "input_registers", "holding_registers")
STATUS_VALUES = (
    "link_online",
    "handshake_state",
    "data_age_s",
    "mcu_reboots",
    "frames_received",
    "frames_sent",
    "checksum_errors",
    "modbus_requests",
    "modbus_exceptions",
    "heartbeat_rtt_ms",
    "product_key",
    "register_saturations",
    "refused_connections",
    "refused_writes",
)
DERIVED_OPS = ("mul", "div", "sum", "sub", "sqrt", "acos_deg")
_NAME = NAME_PATTERN
_SOURCE_HELP = "dp, dp.field, dp.bit, dp.record, dp.record.enabled or status.name"
_SOURCE_TEXT = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,2}$"


_SCALE10 = Int(-9, 9, "power of ten: engineering value = wire value × 10^scale")
_SIZE = Int(1, 8, "bytes")
_TEXT = Str()
_NUMBER = Num()
_ARGS = ListOf(Ref("source"), min_items=2)
_ONE_ARG = ListOf(Ref("source"), 1, 1)
_LOW = Num(description="lower bound of the result")
_HIGH = Num(description="upper bound of the result")

DEFS: dict[str, Node] = {
    "source": AnyOf(
        (
            Str(pattern=_SOURCE_TEXT, description=_SOURCE_HELP, label="a source text"),
            Num(description="a constant"),
            obj("a constant", constant=Key(_NUMBER, True)),
            obj("product of the arguments", mul=Key(_ARGS, True)),
            obj("sum of the arguments", sum=Key(_ARGS, True)),
            obj("first argument minus the others", sub=Key(_ARGS, True)),
            obj(
                "first argument divided by the second, bounded to [min, max]",
                div=Key(ListOf(Ref("source"), 2, 2), True),
                min=_NUMBER,
                max=_NUMBER,
                on_zero=Num(description="result when the divisor is 0 (default: stale)"),
            ),
            obj(
                "square root of the argument; a negative argument (rounding) gives 0",
                sqrt=Key(_ONE_ARG, True),
                min=_LOW,
                max=_HIGH,
            ),
            obj(
                "arc cosine in degrees (0..180) of the argument bounded to [-1, 1]",
                acos_deg=Key(_ONE_ARG, True),
                min=_LOW,
                max=_HIGH,
            ),
        ),
        "where a point's value comes from",
    )
}

_IDENT = obj(
    "Modbus FC43 device identification strings",
    vendor_name=_TEXT,
    product_code=_TEXT,
    revision=_TEXT,
    vendor_url=_TEXT,
    product_name=_TEXT,
    model_name=_TEXT,
    user_application_name=_TEXT,
)
_DEVICE = obj(
    "the device variant this map describes",
    name=Key(_TEXT, True),
    vendor=_TEXT,
    model=_TEXT,
    product_key=Str(description="expected product key; a mismatch is logged loudly"),
    description=_TEXT,
    identification=_IDENT,
)
_KEEPALIVE = obj(
    "a datapoint written periodically while the link is READY",
    datapoint=Key(Str(pattern=_NAME), True),
    value=Key(AnyOf((Bool(), Num(), Str())), True),
    interval_s=Key(Num(exclusive_minimum=0), True),
)
_TUYA = obj(
    "link settings that belong to the variant",
    baudrate=Int(1200, 921600),
    wifi_state=Int(0, 7, "WiFi state reported with 0x03 (4: connected to the cloud)"),
    query_interval_s=Num(exclusive_minimum=0, description="query-all period; absent: never"),
    confirm_timeout_s=Num(exclusive_minimum=0),
    keepalive=ListOf(_KEEPALIVE),
    heartbeat=obj(
        "heartbeat settings",
        interval_s=Num(exclusive_minimum=0),
        timeout_s=Num(exclusive_minimum=0),
        missed_down=Int(1, 100),
    ),
)
_FIELD = obj(
    "a number inside a raw datapoint (big-endian)",
    offset=Key(Int(0, 65535), True),
    size=Key(_SIZE, True),
    scale=_SCALE10,
    unit=_TEXT,
    signed=Bool(),
    min=_NUMBER,
    max=_NUMBER,
    description=_TEXT,
)
_RECORD = obj(
    "one [id, enabled, u16 value] record of an alarm_set list",
    id=Key(Int(0, 255), True),
    scale=_SCALE10,
    unit=_TEXT,
    min=_NUMBER,
    max=_NUMBER,
    step=Num(exclusive_minimum=0),
    description=_TEXT,
)
_DATAPOINT = obj(
    "a named Tuya datapoint",
    id=Key(Int(0, 255), True),
    type=Key(Str(DP_TYPES), True),
    writable=Bool(),
    motor=Bool("writes operate the breaker motor (rate-limited)"),
    scale=_SCALE10,
    unit=_TEXT,
    signed=Bool(),
    min=_NUMBER,
    max=_NUMBER,
    step=Num(exclusive_minimum=0),
    labels=ListOf(Str(pattern=_NAME), 1, description="enum labels in wire order"),
    bits=MapOf(Int(0, 31), "bitmap bit names -> bit number"),
    size=Int(1, 4, "bitmap size in bytes for writes"),
    fields=MapOf(_FIELD, "raw field layout"),
    records=MapOf(_RECORD, "alarm_set records addressed by id"),
    confirm_timeout_s=Num(exclusive_minimum=0),
    max_age_s=Num(exclusive_minimum=0),
    description=_TEXT,
)
_POINT = obj(
    "one Modbus point",
    name=Key(Str(pattern=_NAME), True),
    address=Key(Int(0, 65535), True),
    source=Key(Ref("source"), True),
    format=Str(FORMATS),
    registers=Int(1, 125, "string length in registers"),
    word_order=Str(WORD_ORDERS),
    scale=Int(1, 10**9, "register = value × scale"),
    stale=Str(STALE_POLICIES),
    writable=Bool(),
    description=_TEXT,
    unit=_TEXT,
)
_FILL_KEYS: dict[str, Node | Key] = {
    "from": Key(Int(0, 65535), True),
    "to": Key(Int(0, 65535), True),
    "value": Int(0, 65535, "the constant (0 or 1 in coils and discrete inputs); default 0"),
}
_FILL = obj("addresses from..to (inclusive) that no point covers read a constant", **_FILL_KEYS)
MAP_SCHEMA = obj(
    "tuya-modbus-gateway register map",
    device=Key(_DEVICE, True),
    tuya=_TUYA,
    datapoints=Key(MapOf(_DATAPOINT), True),
    **{table: ListOf(_POINT) for table in TABLE_KEYS},
    fill=obj(
        "constant filler for the gaps between points, so block reads never hit one",
        **{table: ListOf(_FILL) for table in TABLE_KEYS},
    ),
)


def check_document(text: str, filename: str) -> Checked:
    """Parse map text and check it against :data:`MAP_SCHEMA`."""
    return check_yaml(text, filename, MAP_SCHEMA, DEFS)


def map_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the register map, from the same tree the loader checks."""
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:tuya-modbus-gateway:register-map",
        "title": "tuya-modbus-gateway register map",
    }
    schema |= json_schema(MAP_SCHEMA)
    schema["$defs"] = {name: json_schema(node) for name, node in DEFS.items()}
    return schema
