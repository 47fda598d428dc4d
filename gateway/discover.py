"""``discover``: learn an unknown breaker's datapoints and write a draft map for it.

Handshake, query all, listen (each new DP printed as it comes), print every DP with a guess
from the known families (the twin's variants) and write a draft map that passes ``check``:
writable only where the catalogue says so, the guessed scale and unit, ``switch`` at coil 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from gateway.errors import McuTimeoutError
from gateway.regmap.catalog import describe_choice
from gateway.tuya.layouts import PHASE_A, decode_records
from gateway.tuya.protocol import DpType, DpValue, ProductInfo
from gateway.twin.families import VARIANTS, DpSpec, Role

__all__ = ["SILENT_HINTS", "SeenDp", "discover", "draft_map", "guess", "render_seen"]

_LOGGER = logging.getLogger(__name__)
_HANDSHAKE_TIMEOUT_S = 15.0
_PHASE_FIELDS = {
    f.name: {"offset": f.offset, "size": f.size, "scale": f.scale, "unit": f.unit} for f in PHASE_A
}
SILENT_HINTS = (
    "the MCU never answered: check, in this order:",
    "  - TX and RX crossed: the adapter's RX on the MCU's TX pad, its TX on the MCU's RX pad",
    "  - the baud rate: most breakers use 9600, some 115200 (--baud)",
    "  - 3.3 V levels and a common GND: a 5 V adapter can damage the MCU, some MCUs ignore it",
    "  - the stock Tuya module removed or held in reset: it drives the same line",
)


@dataclasses.dataclass(slots=True)
class SeenDp:
    """The last report of one DP and how many reports came."""

    dp: DpValue
    reports: int = 1


def guess(dp: DpValue) -> DpSpec | None:
    """The catalogue entry with this id and type, if any known family has one."""
    for variant in VARIANTS.values():
        spec = variant.spec(dp.dpid)
        if spec is not None and spec.dp_type is dp.dp_type:
            return spec
    return None


def _families(dp: DpValue) -> str:
    names = [
        v.name
        for v in VARIANTS.values()
        if (s := v.spec(dp.dpid)) is not None and s.dp_type is dp.dp_type
    ]
    return ", ".join(names)


def _meaning(dp: DpValue) -> str:
    spec = guess(dp)
    if spec is None:
        return "?"
    detail = spec.measures or ("writable" if spec.writable else "")
    if spec.labels and isinstance(dp.value, int) and dp.value < len(spec.labels):
        choices = "/".join(spec.labels) if len(spec.labels) <= 4 else f"{len(spec.labels)} labels"
        detail = f"{spec.labels[dp.value]!r} of {choices}"
    extra = f" ({detail})" if detail else ""
    return f"{spec.name}{extra} [{_families(dp)}]"


def render_seen(seen: dict[int, SeenDp], info: ProductInfo | None) -> str:
    """The table ``discover`` prints."""
    lines = []
    if info is not None:
        lines.append(f"product key {info.product_key!r}, MCU version {info.version!r}")
        lines.append(describe_choice(info.product_key))
    lines.append(f"{len(seen)} datapoint(s) seen")
    lines.append(f"{'dp':>3}  {'type':<6} {'size':>4}  {'raw':<26} {'value':<28} guess")
    for dpid in sorted(seen):
        dp = seen[dpid].dp
        raw = dp.payload.hex(" ")
        raw = raw if len(raw) <= 26 else raw[:23] + "..."
        shown = _decoded(dp)
        lines.append(
            f"{dpid:>3}  {dp.dp_type.name.lower():<6} {len(dp.payload):>4}  {raw:<26}"
            f" {shown:<28} {_meaning(dp)}"
        )
    return "\n".join(lines) + "\n"


def _decoded(dp: DpValue) -> str:
    """The value as a person reads it: phase_a and alarm records decoded, others by type."""
    spec = guess(dp)
    role = spec.role if spec is not None else None
    if role is Role.PHASE_A and len(dp.payload) >= 8:
        return " ".join(f"{(f.read(dp.payload) or 0) * 10.0**f.scale:g} {f.unit}" for f in PHASE_A)
    if role is Role.ALARM_SET:
        records, rest = decode_records(dp.payload)
        shown = " ".join(f"[{r.rid} {'on' if r.enabled else 'off'} {r.value}]" for r in records)
        return shown + (f" +{rest.hex()}" if rest else "")
    value = dp.value
    return value.hex() if isinstance(value, bytes) else repr(value)


def _name(dp: DpValue, used: set[str]) -> str:
    spec = guess(dp)
    name = spec.name if spec is not None else f"dp{dp.dpid}"
    if name in used:
        name = f"{name}_{dp.dpid}"
    used.add(name)
    return name


def guess_scale(spec: DpSpec | None) -> tuple[int, str] | None:
    """(power-of-ten exponent, unit) from the catalogue's ``measures``: '0.01 kWh' → (-2, 'kWh')."""
    if spec is None or spec.dp_type is not DpType.VALUE or not spec.measures:
        return None
    words = spec.measures.rsplit(",", 1)[-1].split()
    try:
        step = float(words[0])
    except ValueError:
        return (0, words[0]) if len(words) == 1 else None
    return (round(math.log10(step)), " ".join(words[1:])) if step > 0 and len(words) > 1 else None


def _datapoint(dp: DpValue, spec: DpSpec | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": dp.dpid, "type": dp.dp_type.name.lower()}
    entry["writable"] = bool(spec and spec.writable)
    if (scaled := guess_scale(spec)) is not None:
        entry["scale"], entry["unit"] = scaled
    if dp.dp_type is DpType.ENUM:
        top = int(dp.payload[0])
        labels = list(spec.labels) if spec and spec.labels else []
        entry["labels"] = labels + [f"value_{i}" for i in range(len(labels), top + 1)]
    if dp.dp_type is DpType.BITMAP:
        entry["size"] = len(dp.payload)
        entry["bits"] = {f"bit_{i}": i for i in range(8 * len(dp.payload))}
    if dp.dp_type is DpType.RAW and spec is not None and spec.role is Role.PHASE_A:
        entry["fields"] = _PHASE_FIELDS
    elif dp.dp_type is DpType.RAW and spec is not None and spec.role is Role.ALARM_SET:
        records, _rest = decode_records(dp.payload)
        entry["records"] = {f"record_{r.rid}": {"id": r.rid} for r in records}
    meaning = _meaning(dp)
    entry["description"] = f"guess: {meaning}; seen {dp.describe()}"
    return entry


def _points(name: str, dp: DpValue, entry: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(table key, point) pairs serving one datapoint; addresses are filled in later."""
    kind = dp.dp_type
    if kind is DpType.BOOL:
        table = "coils" if entry["writable"] else "discrete_inputs"
        return [(table, {"name": name, "source": name})]
    if kind is DpType.VALUE:
        table = "holding_registers" if entry["writable"] else "input_registers"
        point: dict[str, Any] = {"name": name, "source": name, "format": "int32"}
        if entry.get("scale", 0) < 0:  # keep the resolution: register = value × 10^-scale
            point["scale"] = 10 ** -entry["scale"]
        return [(table, point)]
    if kind is DpType.ENUM:
        table = "holding_registers" if entry["writable"] else "input_registers"
        return [(table, {"name": name, "source": name})]
    if kind is DpType.BITMAP:
        fmt = "uint32" if len(dp.payload) > 2 else "uint16"
        return [("input_registers", {"name": name, "source": name, "format": fmt})]
    if kind is DpType.STRING:
        registers = max(8, (len(dp.payload) + 1) // 2)
        point = {"name": name, "source": name, "format": "string", "registers": registers}
        return [("input_registers", point)]
    if "fields" in entry:
        return [("input_registers", _field(name, *item)) for item in entry["fields"].items()]
    if "records" in entry:
        return [
            ("input_registers", {"name": f"{name}_{rec}", "source": f"{name}.{rec}"})
            for rec in entry["records"]
        ]
    return []  # an unknown raw DP: the user adds a field layout


def _field(name: str, field: str, layout: dict[str, Any]) -> dict[str, Any]:
    scale = 10 ** -layout["scale"]
    return {"name": field, "source": f"{name}.{field}", "format": "uint32", "scale": scale}


def draft_map(seen: dict[int, SeenDp], info: ProductInfo | None, link_url: str) -> str:
    """A map serving every DP seen, as YAML text the user edits."""
    datapoints: dict[str, Any] = {}
    tables: dict[str, list[dict[str, Any]]] = {
        "coils": [],
        "discrete_inputs": [{"name": "link_online", "source": "status.link_online"}],
        "input_registers": [{"name": "data_age", "source": "status.data_age_s"}],
        "holding_registers": [],
    }
    used: set[str] = {"link_online", "data_age"}
    for dpid in sorted(seen):
        dp = seen[dpid].dp
        name = _name(dp, used)
        entry = _datapoint(dp, guess(dp))
        datapoints[name] = entry
        for table, point in _points(name, dp, entry):
            tables[table].append(point)
    tables["coils"].sort(key=lambda point: point["name"] != "switch")  # switch at coil 0
    for points in tables.values():
        _number(points)
    device: dict[str, Any] = {"name": f"draft from {link_url}"}
    if info is not None and info.product_key:
        device["product_key"] = info.product_key
    document: dict[str, Any] = {"device": device, "tuya": {"query_interval_s": 60}}
    document["datapoints"] = datapoints
    document |= {key: value for key, value in tables.items() if value}
    header = (
        "# Draft map written by `tuya-modbus-gateway discover`: check every guess, name and\n"
        "# scale against the breaker before relying on it (`tuya-modbus-gateway check`).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _number(points: list[dict[str, Any]]) -> None:
    address = 0
    for point in points:
        point["address"] = address
        fmt = point.get("format", "")
        address += point.get("registers", 2 if fmt in ("int32", "uint32") else 1)


async def discover(
    url: str,
    baud: int,
    listen_s: float,
    output: str | None,
    stop: asyncio.Event,
    out: TextIO,
    wait_s: float = _HANDSHAKE_TIMEOUT_S,
) -> int:
    """Handshake (hints if the MCU is silent for ``wait_s``), query all, listen, print a draft."""
    from gateway.tuya.link import LinkConfig, McuLink

    seen: dict[int, SeenDp] = {}
    say = functools.partial(print, file=out, flush=True)
    link = McuLink(LinkConfig(url=url, baudrate=baud))
    link.add_report_listener(_recorder(seen, say))
    say(f"connecting to {url} at {baud} baud, waiting for the MCU...")
    await link.start()
    try:
        await link.wait_ready(wait_s)
        info = link.product_info
        key = info.product_key if info is not None else "?"
        say(f"MCU answered: product key {key!r}; listening {listen_s:g} s (Ctrl-C ends)")
        await link.query_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(listen_s):
                await stop.wait()
    except McuTimeoutError:
        say(_silent_report(wait_s, link.stats.bytes_skipped, link.stats.frames_received))
        return 1
    finally:
        await link.stop()
    out.write(render_seen(seen, info))
    if output:
        await asyncio.to_thread(Path(output).write_text, draft_map(seen, info, url), "utf-8")
        out.write(f"draft map written to {output}\n")
    out.flush()
    return 0


def _recorder(seen: dict[int, SeenDp], say: Callable[[str], None]) -> Callable[[DpValue], None]:
    """A report listener that keeps the last value of each DP and announces new ones."""
    started = time.monotonic()

    def on_report(dp: DpValue) -> None:
        entry = seen.get(dp.dpid)
        seen[dp.dpid] = SeenDp(dp, 1 if entry is None else entry.reports + 1)
        if entry is None:
            say(f"{time.monotonic() - started:6.1f} s  new {dp.describe()}: {_meaning(dp)}")

    return on_report


def _silent_report(wait_s: float, bytes_skipped: int, frames: int) -> str:
    """What a silent or garbled line tells, and the hints."""
    heard = f"{frames} frame(s), no handshake answer" if frames else "not a single byte"
    if bytes_skipped and not frames:
        heard = f"{bytes_skipped} byte(s) that are no TuyaMCU frame: a wrong baud rate looks so"
    return f"no answer in {wait_s:g} s; heard {heard}\n" + "\n".join(SILENT_HINTS)
