"""Field tools that read TuyaMCU traffic: capture files and passive UART taps.

Capture replay is the twin's (:class:`gateway.twin.replay.ReplayPeer`).

Directions are tagged from the wire's point of view: ``MCU`` for frames the breaker's MCU sent,
``WIFI`` for frames the WiFi side (the stock module or this gateway) sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TextIO

from gateway.tuya.capture import read_capture
from gateway.tuya.protocol import LINE_IDLE_S, Command, Frame
from gateway.tuya.scan import LineEvent, LineScanner, LineTotals, Skipped

__all__ = [
    "Printer",
    "format_event",
    "format_frame",
    "print_capture",
    "sniff_link",
    "sniff_passive",
]

_LOGGER = logging.getLogger(__name__)

_TAGS = {"rx": "MCU ", "tx": "WIFI"}
_MARK = "!!"  # grep-able: every line about a fault on the line starts its text with it
_HEX_SHOWN = 64  # bytes of a long skipped run shown in hex; the count says how many there were


def format_frame(direction: str, frame: Frame, elapsed_s: float) -> str:
    """One sniff line: elapsed time, direction tag, decoded summary and raw bytes."""
    summary = frame.describe()
    if frame.command == Command.PRODUCT_INFO and frame.data:
        summary = f"PRODUCT_INFO v{frame.version} {frame.data.decode('utf-8', 'replace')}"
    return f"{elapsed_s:9.3f} {_tag(direction)} {summary}  | {frame.encode().hex(' ')}"


def format_event(direction: str, event: LineEvent, elapsed_s: float) -> str:
    """A frame, or a marked ``!!`` line for skipped bytes and bad-checksum frames."""
    if isinstance(event, Frame):
        return format_frame(direction, event, elapsed_s)
    if isinstance(event, Skipped):
        what = f"{_MARK} skipped {len(event.data)} byte{'s'[: len(event.data) - 1]} ({event.why})"
    else:
        guess = Frame(event.data[3], event.data[6:-1], event.data[2]).describe()
        what = (
            f"{_MARK} bad checksum 0x{event.data[-1]:02X}, expected 0x{event.expected:02X}: {guess}"
        )
    return f"{elapsed_s:9.3f} {_tag(direction)} {what}  | {_hex(event.data)}"


def _hex(data: bytes) -> str:
    if len(data) <= _HEX_SHOWN:
        return data.hex(" ")
    return f"{data[:_HEX_SHOWN].hex(' ')} ... ({len(data) - _HEX_SHOWN} more)"


def _tag(direction: str) -> str:
    return _TAGS.get(direction, direction.upper()[:4].ljust(4))


class Printer:
    """Sniff output: a line at a time, flushed; a closed pipe (``| head``) ends it quietly."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.closed = asyncio.Event()
        self.totals: dict[str, LineTotals] = {}

    def event(self, direction: str, event: LineEvent, elapsed_s: float) -> None:
        self.totals.setdefault(direction, LineTotals()).count(event)
        self.line(format_event(direction, event, elapsed_s))

    def line(self, text: str) -> None:
        if self.closed.is_set():
            return
        try:
            print(text, file=self.out, flush=True)
        except BrokenPipeError:
            self.closed.set()
            _silence(self.out)

    def summary(self, extra: dict[str, LineTotals] | None = None) -> None:
        """The last line: per direction, frames, bad checksums and skipped bytes."""
        totals = {**self.totals, **(extra or {})}
        parts = [
            f"{_tag(d).strip()} {t.frames} frames, {t.bad_checksums} bad checksums,"
            f" {t.skipped_bytes} bytes skipped in {t.skipped_runs} runs"
            for d, t in sorted(totals.items())
        ]
        self.line(f"# summary: {'; '.join(parts) or 'no traffic'}")


def _silence(out: TextIO) -> None:
    """Point the closed stream at /dev/null so the interpreter's last flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def print_capture(path: str, out: TextIO) -> None:
    """Print every frame of a capture file, then the summary line."""
    printer = Printer(out)
    start: float | None = None
    for item in read_capture(path):
        start = item.mono if start is None else start
        printer.event(item.direction, item.frame, item.mono - start)
        if printer.closed.is_set():
            return
    printer.summary()


async def sniff_link(url: str, baud: int, out: TextIO) -> None:
    """Run the handshake as the gateway on ``url`` and print every frame both ways.

    What the link's decoder drops (noise, cut frames, bad checksums) shows as marked ``!!``
    lines in order with the frames, as on a passive tap.
    """
    from gateway.tuya.link import LinkConfig, LinkState, McuLink

    link = McuLink(LinkConfig(url=url, baudrate=baud))
    printer = Printer(out)
    started = time.monotonic()

    def on_traffic(direction: str, event: LineEvent) -> None:
        printer.event(direction, event, time.monotonic() - started)

    def on_state(state: LinkState) -> None:
        info = link.product_info
        key = f" (product key {info.product_key!r})" if info and state is LinkState.READY else ""
        printer.line(f"# link {state.name}{key}")

    link.add_traffic_listener(on_traffic)
    link.add_drop_listener(lambda event: on_traffic("rx", event))
    link.add_state_listener(on_state)
    await link.start()
    try:
        await printer.closed.wait()  # or until cancelled
    finally:
        await link.stop()
        printer.summary()


async def _tap(device: str, direction: str, baud: int, printer: Printer, start: float) -> None:
    """Scan one UART RX line until the output closes, ending half frames when it goes idle."""
    import serial_asyncio_fast  # imported here: reading capture files needs no serial stack

    reader, _writer = await serial_asyncio_fast.open_serial_connection(url=device, baudrate=baud)
    scanner = LineScanner()
    while not printer.closed.is_set():
        try:
            async with asyncio.timeout(LINE_IDLE_S):
                data = await reader.read(512)
        except TimeoutError:
            events = list(scanner.idle())
        else:
            if not data:
                return
            scanner.feed(data)
            events = list(scanner.events())
        for event in events:
            printer.event(direction, event, time.monotonic() - start)


async def sniff_passive(taps: dict[str, str], baud: int, out: TextIO) -> None:
    """Passively scan UART RX lines (``taps``: direction rx/tx → serial device), faults too."""
    printer = Printer(out)
    start = time.monotonic()
    try:
        await asyncio.gather(*(_tap(dev, d, baud, printer, start) for d, dev in taps.items()))
    finally:
        printer.summary()
