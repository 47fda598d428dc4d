"""Field tools that read TuyaMCU traffic: capture files and passive UART taps.

Capture replay is the twin's (:class:`gateway.twin.replay.ReplayPeer`).

Directions are tagged from the wire's point of view: ``MCU`` for frames the breaker's MCU sent,
``WIFI`` for frames the WiFi side (the stock module or this gateway) sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TextIO

from gateway.tuya.capture import read_capture
from gateway.tuya.protocol import LINE_IDLE_S, Command, Frame, FrameDecoder

__all__ = ["format_frame", "print_capture", "sniff_link", "sniff_passive"]

_LOGGER = logging.getLogger(__name__)

_TAGS = {"rx": "MCU ", "tx": "WIFI"}


def format_frame(direction: str, frame: Frame, elapsed_s: float) -> str:
    """One sniff line: elapsed time, direction tag, decoded summary and raw bytes."""
    tag = _TAGS.get(direction, direction.upper()[:4].ljust(4))
    summary = frame.describe()
    if frame.command == Command.PRODUCT_INFO and frame.data:
        summary = f"PRODUCT_INFO v{frame.version} {frame.data.decode('utf-8', 'replace')}"
    return f"{elapsed_s:9.3f} {tag} {summary}  | {frame.encode().hex(' ')}"


def print_capture(path: str, out: TextIO) -> None:
    """Print every frame of a capture file."""
    start: float | None = None
    for item in read_capture(path):
        start = item.mono if start is None else start
        print(format_frame(item.direction, item.frame, item.mono - start), file=out)


async def sniff_link(url: str, baud: int, out: TextIO) -> None:
    """Run the handshake as the gateway on ``url`` and print every frame both ways."""
    from gateway.tuya.link import LinkConfig, LinkState, McuLink

    link = McuLink(LinkConfig(url=url, baudrate=baud))
    started = time.monotonic()

    def on_traffic(direction: str, frame: Frame) -> None:
        print(format_frame(direction, frame, time.monotonic() - started), file=out, flush=True)

    def on_state(state: LinkState) -> None:
        info = link.product_info
        key = f" (product key {info.product_key!r})" if info and state is LinkState.READY else ""
        print(f"# link {state.name}{key}", file=out, flush=True)

    link.add_traffic_listener(on_traffic)
    link.add_state_listener(on_state)
    await link.start()
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await link.stop()


async def _tap(device: str, direction: str, baud: int, emit: Callable[[str, Frame], None]) -> None:
    """Decode one UART RX line forever, flushing half frames after the line goes idle."""
    import serial_asyncio_fast  # imported here: reading capture files needs no serial stack

    reader, _writer = await serial_asyncio_fast.open_serial_connection(url=device, baudrate=baud)
    decoder = FrameDecoder()
    while True:
        try:
            async with asyncio.timeout(LINE_IDLE_S):
                data = await reader.read(512)
        except TimeoutError:
            for frame in decoder.flush():
                emit(direction, frame)
            continue
        if not data:
            return
        decoder.feed(data)
        for frame in decoder:
            emit(direction, frame)


async def sniff_passive(taps: dict[str, str], baud: int, out: TextIO) -> None:
    """Passively decode UART RX lines: ``taps`` maps direction (rx/tx) to a serial device."""
    start = time.monotonic()

    def emit(direction: str, frame: Frame) -> None:
        print(format_frame(direction, frame, time.monotonic() - start), file=out, flush=True)

    await asyncio.gather(*(_tap(dev, direction, baud, emit) for direction, dev in taps.items()))
