"""The MCU twin and the ways to reach it: in process (``sim://``), over TCP, over a pty.

``sim://``, ``sim://family_b`` and ``sim://family_a?report_interval=1&seed=3`` name a twin;
query keys are the :class:`TwinOptions` fields (a trailing ``_s``/``_v``/``_a`` may be left
off: ``report_interval``, ``motor_time``, ``voltage``, ``current``, ``delay``, ``energy``
in kWh).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import tty
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from gateway.errors import ConfigError
from gateway.twin.families import VARIANTS
from gateway.twin.mcu import McuTwin
from gateway.twin.output import TwinFaults

__all__ = [
    "McuPeer",
    "McuTwin",
    "PtyEndpoint",
    "SimTransport",
    "TwinFaults",
    "TwinOptions",
    "close_pty",
    "open_pty",
    "open_pty_endpoint",
    "open_sim_link",
    "parse_sim_url",
    "serve_tcp",
    "twin_from_options",
]

_LOGGER = logging.getLogger(__name__)
_READ_SIZE = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class TwinOptions:
    """Everything needed to build a twin, for ``sim://`` URLs and the ``simulate`` command."""

    variant: str = "family_a"
    product_key: str | None = None
    version: str = "1.0.0"
    seed: int = 0
    report_interval_s: float = 5.0
    motor_time_s: float = 0.8
    require_wifi_state: bool = True
    voltage_v: float = 230.0
    current_a: float = 1.0
    noise: float = 1.0
    garbage: bool = False
    bad_checksum: float = 0.0
    drop_replies: float = 0.0
    delay_s: float = 0.0
    split_bytes: bool = False
    small_rx_buffer: bool = False
    energy_kwh: float | None = None  # the energy counter's first value; None: the variant's


def twin_from_options(opts: TwinOptions) -> McuTwin:
    """A twin built from ``opts``, with its fault injection set."""
    twin = McuTwin(
        opts.variant,
        product_key=opts.product_key,
        version=opts.version,
        seed=opts.seed,
        report_interval_s=opts.report_interval_s,
        motor_time_s=opts.motor_time_s,
        require_wifi_state=opts.require_wifi_state,
        voltage_v=opts.voltage_v,
        current_a=opts.current_a,
        noise=opts.noise,
    )
    if opts.energy_kwh is not None:
        twin.set_energy(opts.energy_kwh)
    faults = twin.faults
    faults.garbage = opts.garbage
    faults.bad_checksum = opts.bad_checksum
    faults.drop_replies = opts.drop_replies
    faults.delay_s = opts.delay_s
    faults.split_bytes = opts.split_bytes
    faults.small_rx_buffer = opts.small_rx_buffer
    return twin


def _convert(name: str, text: str) -> object:
    kind = {f.name: f.type for f in dataclasses.fields(TwinOptions)}[name]
    if kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if kind == "int":
        return int(text)
    if kind in ("float", "float | None"):
        return float(text)
    return text


def parse_sim_url(url: str) -> TwinOptions:
    """The options a ``sim://`` URL asks for; ConfigError lists every problem at once."""
    parts = urlsplit(url)
    errors: list[str] = []
    if parts.scheme != "sim":
        errors.append(f"{url}: not a sim:// URL")
    values: dict[str, Any] = {"variant": parts.netloc or parts.path.strip("/") or "family_a"}
    if values["variant"] not in VARIANTS:
        errors.append(
            f"{url}: unknown variant {values['variant']!r} (known: {', '.join(VARIANTS)})"
        )
    names = {f.name for f in dataclasses.fields(TwinOptions)} - {"variant"}
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        suffixed = (key, f"{key}_s", f"{key}_v", f"{key}_a", f"{key}_kwh")
        name = next((n for n in suffixed if n in names), None)
        if name is None:
            errors.append(f"{url}: unknown option {key!r} (known: {', '.join(sorted(names))})")
            continue
        try:
            values[name] = _convert(name, text)
        except ValueError as err:
            errors.append(f"{url}: option {key}: {err}")
    if errors:
        raise ConfigError(errors)
    return TwinOptions(**values)


class SimTransport(asyncio.Transport):
    """An in-process transport between a protocol and a twin; deliveries go through call_soon."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, twin: McuTwin, protocol: asyncio.Protocol, url: str
    ) -> None:
        super().__init__({"peername": url, "twin": twin})
        self._loop = loop
        self._twin = twin
        self._protocol = protocol
        self._closing = False
        self._reading = True
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self._loop.call_soon(self._to_twin, bytes(data))

    def _to_twin(self, data: bytes) -> None:
        if not self._closing:
            self._twin.data_received(data)

    def from_twin(self, data: bytes) -> None:
        """The twin's ``send``: hand the bytes to the protocol on a later loop turn."""
        if not self._closing:
            self._loop.call_soon(self._to_protocol, data)

    def _to_protocol(self, data: bytes) -> None:
        if self._closing:
            return
        if not self._reading:
            self._held.append(data)
            return
        self._protocol.data_received(data)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._twin.connection_lost()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        held, self._held = self._held, []
        for data in held:
            self._loop.call_soon(self._to_protocol, data)

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False


async def open_sim_link(url: str, protocol: asyncio.Protocol) -> tuple[asyncio.Transport, McuTwin]:
    """Connect ``protocol`` to a new in-process twin described by the ``sim://`` ``url``."""
    twin = twin_from_options(parse_sim_url(url))
    loop = asyncio.get_running_loop()
    transport = SimTransport(loop, twin, protocol, url)
    twin.connection_made(transport.from_twin)
    protocol.connection_made(transport)
    return transport, twin


class McuPeer(Protocol):
    """What the TCP and pty endpoints drive: the twin, or a capture replay."""

    def connection_made(self, send: Callable[[bytes], None]) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, send: Callable[[bytes], None] | None = None) -> None: ...


class _TwinStreamProtocol(asyncio.Protocol):
    """One TCP connection to a twin."""

    def __init__(self, twin: McuPeer) -> None:
        self._twin = twin
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small frames must not wait for Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _LOGGER.info("twin: TCP client %s", transport.get_extra_info("peername"))
        self._twin.connection_made(self._write)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._twin.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._twin.connection_lost(self._write)  # the twin may serve a newer connection now


async def serve_tcp(host: str, port: int, twin_factory: Callable[[], McuPeer]) -> asyncio.Server:
    """Serve a twin per TCP connection (``socket://host:port`` for the gateway)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _TwinStreamProtocol(twin_factory()), host, port)


@dataclasses.dataclass(slots=True)
class PtyEndpoint:
    """A pseudo-terminal whose master side is the twin; the gateway opens ``path``."""

    path: str
    master_fd: int
    slave_fd: int
    twin: McuPeer
    bytes_lost: int = 0

    def close(self) -> None:
        if self.master_fd < 0:
            return
        asyncio.get_running_loop().remove_reader(self.master_fd)
        self.twin.connection_lost()
        os.close(self.master_fd)
        os.close(self.slave_fd)
        self.master_fd = self.slave_fd = -1
        _PTYS.pop(self.path, None)

    def _read(self) -> None:
        try:
            data = os.read(self.master_fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            _LOGGER.warning("twin: pty %s read failed: %s", self.path, err)
            return
        self.twin.data_received(data)

    def _write(self, data: bytes) -> None:
        try:
            written = os.write(self.master_fd, data)
        except BlockingIOError:  # nobody reads the slave: the bytes are lost, as on a UART
            written = 0
        except OSError as err:
            _LOGGER.warning("twin: pty %s write failed: %s", self.path, err)
            written = 0
        self.bytes_lost += len(data) - written


_PTYS: dict[str, PtyEndpoint] = {}


def open_pty_endpoint(twin: McuPeer) -> PtyEndpoint:
    """Open a pty pair in raw mode, attach ``twin`` to the master; needs a running loop."""
    loop = asyncio.get_running_loop()
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    os.set_blocking(master_fd, False)
    endpoint = PtyEndpoint(os.ttyname(slave_fd), master_fd, slave_fd, twin)
    # the slave stays open here too: with no slave open, reading the master fails with EIO
    loop.add_reader(master_fd, endpoint._read)
    twin.connection_made(endpoint._write)
    _PTYS[endpoint.path] = endpoint
    _LOGGER.info("twin: pty %s", endpoint.path)
    return endpoint


def open_pty(twin: McuPeer) -> str:
    """Attach ``twin`` to a new pty and return the slave path the gateway opens."""
    return open_pty_endpoint(twin).path


def close_pty(path: str) -> None:
    """Close a pty opened by :func:`open_pty`."""
    endpoint = _PTYS.get(path)
    if endpoint is not None:
        endpoint.close()
