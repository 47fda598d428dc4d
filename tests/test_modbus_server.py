"""ModbusService over real TCP sockets and pseudo-terminals, with pymodbus and mbpoll clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.diag_message import ReturnQueryDataResponse
from pymodbus.pdu.mei_message import ReadDeviceInformationResponse
from tools import require
from waiting import eventually

from gateway.errors import ConfigError
from gateway.modbus import rtu as modbus_rtu
from gateway.modbus.server import ModbusService, RtuListener, TcpListener, UnitBackend
from gateway.modbus.tables import ExceptionCode, Table

TABLE_SIZE = 1000


class MemoryBackend:
    """A real in-memory unit: dict tables, writes that can be told to fail or wait."""

    def __init__(
        self,
        seed: int = 0,
        size: int = TABLE_SIZE,
        identification: dict[int, str] | None = None,
        bit_size: int | None = None,
    ) -> None:
        pad = [0] * ((bit_size or size) - size)  # pymodbus pads bit tables to 16 with zeros
        self.tables: dict[Table, list[int]] = {
            Table.COIL: [int((a * 7 + seed) % 3 == 0) for a in range(size)] + pad,
            Table.DISCRETE_INPUT: [int((a * 7 + seed + 1) % 3 == 0) for a in range(size)] + pad,
            Table.HOLDING_REGISTER: [
                (a * 257 + seed * 4099 + 2 * 4099) & 0xFFFF for a in range(size)
            ],
            Table.INPUT_REGISTER: [
                (a * 257 + seed * 4099 + 3 * 4099) & 0xFFFF for a in range(size)
            ],
        }
        self.identification = identification if identification is not None else {}
        self.read_exception: ExceptionCode | None = None
        self.write_exception: ExceptionCode | None = None
        self.write_gate: asyncio.Event | None = None
        self.writes: list[tuple[Table, int, list[int], str]] = []
        self.write_started = asyncio.Event()
        self.counts: Counter[ExceptionCode | None] = Counter()
        self.motor_coils: set[int] = set()  # coils whose write would move a breaker motor
        self.broadcasts_refused = 0
        self.refusals: list[tuple[Table, int, list[int], str, ExceptionCode, str]] = []

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        if self.read_exception is not None:
            return self.read_exception
        data = self.tables[table]
        if address + count > len(data):
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        return data[address : address + count]

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None:
        self.write_started.set()
        if self.write_gate is not None:
            await self.write_gate.wait()
        if self.write_exception is not None:
            return self.write_exception
        data = self.tables[table]
        if address + len(values) > len(data):
            return ExceptionCode.ILLEGAL_DATA_ADDRESS
        data[address : address + len(values)] = values
        self.writes.append((table, address, values, client))
        return None

    def count_request(self, exception: ExceptionCode | None, function_code: int = 0) -> None:
        self.counts[exception] += 1

    def moves_motor(self, table: Table, address: int, count: int) -> bool:
        return table is Table.COIL and address in self.motor_coils

    def count_broadcast_refused(self) -> None:
        self.broadcasts_refused += 1

    def refused(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        code: ExceptionCode,
        why: str,
    ) -> None:
        self.refusals.append((table, address, values, client, code, why))


def _is_backend(backend: UnitBackend) -> UnitBackend:
    return backend  # mypy checks MemoryBackend against the Protocol here


IDENT = {0: "Acme", 1: "RCBO-63", 2: "1.2.3"}


@pytest.fixture
def units() -> dict[int, MemoryBackend]:
    return {1: MemoryBackend(0, identification=dict(IDENT)), 2: MemoryBackend(5)}


async def start_tcp(backends: dict[int, MemoryBackend], **listener: object) -> ModbusService:
    tcp = TcpListener("127.0.0.1", 0, **listener)  # type: ignore[arg-type]
    service = ModbusService({u: _is_backend(b) for u, b in backends.items()}, tcp, None)
    await service.start()
    return service


@pytest.fixture
async def service(units: dict[int, MemoryBackend]) -> AsyncIterator[ModbusService]:
    svc = await start_tcp(units)
    yield svc
    await svc.stop()


@pytest.fixture
async def client(service: ModbusService) -> AsyncIterator[AsyncModbusTcpClient]:
    cli = AsyncModbusTcpClient("127.0.0.1", port=service.tcp_port, timeout=5, retries=0)
    assert await cli.connect()
    yield cli
    cli.close()


async def test_reads_every_table(
    client: AsyncModbusTcpClient, units: dict[int, MemoryBackend]
) -> None:
    tables = units[1].tables
    rr = await client.read_coils(10, count=19)
    assert rr.bits[:19] == [bool(v) for v in tables[Table.COIL][10:29]]
    rr = await client.read_discrete_inputs(0, count=2000 if TABLE_SIZE >= 2000 else 999)
    assert rr.bits[:999] == [bool(v) for v in tables[Table.DISCRETE_INPUT][:999]]
    rr = await client.read_holding_registers(875, count=125)
    assert rr.registers == tables[Table.HOLDING_REGISTER][875:1000]
    rr = await client.read_input_registers(3, count=4)
    assert rr.registers == tables[Table.INPUT_REGISTER][3:7]


async def test_writes_every_fc(
    client: AsyncModbusTcpClient, units: dict[int, MemoryBackend]
) -> None:
    tables = units[1].tables
    assert not (await client.write_coil(4, True)).isError()
    assert not (await client.write_coil(3, False)).isError()
    assert tables[Table.COIL][3:5] == [0, 1]
    assert not (await client.write_register(7, 0xBEEF)).isError()
    assert tables[Table.HOLDING_REGISTER][7] == 0xBEEF
    bits = [True, False, True, True, False, False, True, False, True, True]
    assert not (await client.write_coils(100, bits)).isError()
    assert tables[Table.COIL][100:110] == [int(b) for b in bits]
    assert not (await client.write_registers(20, [1, 2, 3])).isError()
    assert tables[Table.HOLDING_REGISTER][20:23] == [1, 2, 3]
    rr = await client.readwrite_registers(
        read_address=19, read_count=5, write_address=21, values=[0xAAAA, 0xBBBB]
    )
    assert rr.registers == [
        tables[Table.HOLDING_REGISTER][19],
        1,
        0xAAAA,
        0xBBBB,
        tables[Table.HOLDING_REGISTER][23],
    ]
    assert units[1].writes[-1][0] == Table.HOLDING_REGISTER
    assert units[1].writes[-1][3].startswith("127.0.0.1:")
    assert units[2].writes == []


async def test_read_write_with_an_unreadable_read_range_writes_nothing(
    client: AsyncModbusTcpClient, units: dict[int, MemoryBackend]
) -> None:
    """FC23: an exception answer means nothing was done (spec 6.17 checks both ranges first)."""
    holding = units[1].tables[Table.HOLDING_REGISTER]
    before = list(holding)
    beyond = len(holding) - 2  # the read runs past the table: 0x02
    rr = await client.readwrite_registers(
        read_address=beyond, read_count=5, write_address=0, values=[0x2C]
    )
    assert rr.isError()
    assert rr.exception_code == ExceptionCode.ILLEGAL_DATA_ADDRESS
    units[1].read_exception = ExceptionCode.GATEWAY_TARGET_NO_RESPONSE  # stale data: 0x0B
    rr = await client.readwrite_registers(read_address=0, read_count=1, write_address=0, values=[1])
    assert rr.exception_code == ExceptionCode.GATEWAY_TARGET_NO_RESPONSE
    assert holding == before
    assert units[1].writes == []


async def test_diagnostics_echo_and_identification(client: AsyncModbusTcpClient) -> None:
    echo = cast(ReturnQueryDataResponse, await client.diag_query_data(b"\x12\x34"))
    assert not echo.isError()
    assert echo.message == b"\x12\x34"
    rr = cast(ReadDeviceInformationResponse, await client.read_device_information(read_code=1))
    assert rr.information == {0: b"Acme", 1: b"RCBO-63", 2: b"1.2.3"}
    rr = cast(
        ReadDeviceInformationResponse,
        await client.read_device_information(read_code=4, object_id=1),
    )
    assert rr.information == {1: b"RCBO-63"}


async def test_two_units_behind_one_port(
    client: AsyncModbusTcpClient, units: dict[int, MemoryBackend]
) -> None:
    one = await client.read_holding_registers(0, count=3, device_id=1)
    two = await client.read_holding_registers(0, count=3, device_id=2)
    assert one.registers == units[1].tables[Table.HOLDING_REGISTER][:3]
    assert two.registers == units[2].tables[Table.HOLDING_REGISTER][:3]
    assert one.registers != two.registers
    await client.write_register(0, 42, device_id=2)
    assert units[2].tables[Table.HOLDING_REGISTER][0] == 42
    assert units[1].tables[Table.HOLDING_REGISTER][0] != 42


async def test_unknown_unit_answers_0x0B(client: AsyncModbusTcpClient) -> None:
    rr = await client.read_holding_registers(0, count=1, device_id=9)
    assert rr.isError()
    assert rr.exception_code == 0x0B


async def test_unknown_unit_exception_configurable(units: dict[int, MemoryBackend]) -> None:
    svc = await start_tcp(units, unknown_unit_exception=0x0A)
    try:
        reply = await raw_exchange(svc.tcp_port, adu(1, 77, b"\x04\x00\x00\x00\x01"))
        assert reply == adu(1, 77, b"\x84\x0a")
    finally:
        await svc.stop()


@pytest.mark.parametrize("code", [0x02, 0x03, 0x04, 0x06, 0x0B])
async def test_backend_exceptions_pass_through(
    client: AsyncModbusTcpClient, units: dict[int, MemoryBackend], code: int
) -> None:
    units[1].read_exception = ExceptionCode(code)
    units[1].write_exception = ExceptionCode(code)
    rr = await client.read_input_registers(0, count=2)
    assert (rr.function_code, rr.exception_code) == (0x84, code)
    rr = await client.write_coil(0, True)
    assert (rr.function_code, rr.exception_code) == (0x85, code)
    rr = await client.write_registers(0, [1, 2])
    assert (rr.function_code, rr.exception_code) == (0x90, code)
    assert units[1].counts[ExceptionCode(code)] == 3


async def test_address_past_table_is_0x02(client: AsyncModbusTcpClient) -> None:
    rr = await client.read_holding_registers(999, count=2)
    assert (rr.function_code, rr.exception_code) == (0x83, 0x02)


def adu(tid: int, unit: int, pdu: bytes, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


async def read_adu(reader: asyncio.StreamReader) -> bytes:
    header = await asyncio.wait_for(reader.readexactly(7), 5)
    length = struct.unpack(">H", header[4:6])[0]
    return header + await asyncio.wait_for(reader.readexactly(length - 1), 5)


async def raw_exchange(port: int, request: bytes, answers: int = 1) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return b"".join([await read_adu(reader) for _ in range(answers)])
    finally:
        writer.close()


async def test_pipelined_requests_answered_in_order(
    service: ModbusService, units: dict[int, MemoryBackend]
) -> None:
    hr = units[1].tables[Table.HOLDING_REGISTER]
    ir = units[2].tables[Table.INPUT_REGISTER]
    request = (
        adu(1, 1, b"\x03\x00\x00\x00\x02")
        + adu(2, 2, b"\x04\x00\x05\x00\x01")
        + adu(3, 1, b"\x06\x00\x09\x12\x34")
        + adu(4, 1, b"\x03\x00\x09\x00\x01")
    )
    reply = await raw_exchange(service.tcp_port, request, answers=4)
    assert reply == (
        adu(1, 1, struct.pack(">BBHH", 3, 4, hr[0], hr[1]))
        + adu(2, 2, struct.pack(">BBH", 4, 2, ir[5]))
        + adu(3, 1, b"\x06\x00\x09\x12\x34")
        + adu(4, 1, b"\x03\x02\x12\x34")
    )


async def test_slow_write_does_not_block_other_connections(
    service: ModbusService, units: dict[int, MemoryBackend]
) -> None:
    units[1].write_gate = asyncio.Event()
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
    slow_writer.write(adu(1, 1, b"\x05\x00\x01\xff\x00") + adu(2, 1, b"\x01\x00\x01\x00\x01"))
    await asyncio.wait_for(units[1].write_started.wait(), 5)
    slow_reply = asyncio.ensure_future(read_adu(slow_reader))
    reply = await raw_exchange(service.tcp_port, adu(9, 1, b"\x03\x00\x00\x00\x01"))
    hr0 = units[1].tables[Table.HOLDING_REGISTER][0]
    assert reply == adu(9, 1, struct.pack(">BBH", 3, 2, hr0))
    assert not slow_reply.done()
    units[1].write_gate.set()
    assert await slow_reply == adu(1, 1, b"\x05\x00\x01\xff\x00")
    assert await read_adu(slow_reader) == adu(2, 1, b"\x01\x01\x01")  # queued read, in order
    slow_writer.close()


async def test_connection_limit(units: dict[int, MemoryBackend]) -> None:
    svc = await start_tcp(units, max_connections=2)
    streams = []
    try:
        for _ in range(2):
            streams.append(await asyncio.open_connection("127.0.0.1", svc.tcp_port))
            streams[-1][1].write(adu(1, 1, b"\x03\x00\x00\x00\x01"))
            await read_adu(streams[-1][0])  # accepted and served
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.tcp_port)
        writer.write(adu(1, 1, b"\x03\x00\x00\x00\x01"))
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # closed at once
        writer.close()
        streams[0][1].close()
        await _wait_connections(svc, 1)
        assert await raw_exchange(svc.tcp_port, adu(5, 1, b"\x03\x00\x00\x00\x01"))
    finally:
        for _, w in streams:
            w.close()
        await svc.stop()


async def _wait_connections(svc: ModbusService, count: int) -> None:
    # The server sees the close a moment after the client: no event to wait on.
    await eventually(lambda: svc.connections().get("tcp", 0) == count, f"{count} connections")


async def test_idle_timeout_closes(units: dict[int, MemoryBackend]) -> None:
    svc = await start_tcp(units, idle_timeout_s=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", svc.tcp_port)
        writer.write(adu(1, 1, b"\x03\x00\x00\x00\x01"))
        await read_adu(reader)
        assert await asyncio.wait_for(reader.read(100), 10) == b""
        writer.close()
    finally:
        await svc.stop()


async def test_identification_per_unit_and_fallback(units: dict[int, MemoryBackend]) -> None:
    svc = ModbusService(
        dict(units), TcpListener("127.0.0.1", 0), None, identification={0: "Gateway", 1: "GW"}
    )
    await svc.start()
    try:
        one = await raw_exchange(svc.tcp_port, adu(1, 1, b"\x2b\x0e\x04\x00"))
        two = await raw_exchange(svc.tcp_port, adu(1, 2, b"\x2b\x0e\x04\x00"))
        assert one == adu(1, 1, b"\x2b\x0e\x04\x81\x00\x00\x01\x00\x04Acme")
        assert two == adu(1, 2, b"\x2b\x0e\x04\x81\x00\x00\x01\x00\x07Gateway")
    finally:
        await svc.stop()


async def test_identification_streams_in_parts(units: dict[int, MemoryBackend]) -> None:
    units[1].identification = {0: "A" * 200, 1: "B" * 200, 2: "C"}
    svc = await start_tcp(units)
    try:
        first = await raw_exchange(svc.tcp_port, adu(1, 1, b"\x2b\x0e\x01\x00"))
        assert first[7:14] == b"\x2b\x0e\x01\x81\xff\x01\x01"  # more follows, next id 1
        second = await raw_exchange(svc.tcp_port, adu(2, 1, b"\x2b\x0e\x01\x01"))
        assert second[7:14] == b"\x2b\x0e\x01\x81\x00\x00\x02"
    finally:
        await svc.stop()


def test_config_errors_listed_together() -> None:
    with pytest.raises(ConfigError) as info:
        ModbusService(
            {0: MemoryBackend()},
            TcpListener("127.0.0.1", 0, unknown_unit_exception=4),
            RtuListener("/dev/null", parity="X"),
        )
    assert len(info.value.errors) == 2  # unit ids are checked once, by gateway.config


async def test_mbpoll_tcp(service: ModbusService, units: dict[int, MemoryBackend]) -> None:
    out = await run_mbpoll(
        "-m",
        "tcp",
        "-p",
        str(service.tcp_port),
        "-a",
        "1",
        "-t",
        "3",
        "-r",
        "1",
        "-c",
        "10",
        "-1",
        "127.0.0.1",
    )
    expected = units[1].tables[Table.INPUT_REGISTER][:10]  # mbpoll -t 3: input registers
    assert parse_mbpoll(out) == {i + 1: v for i, v in enumerate(expected)}


async def run_mbpoll(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        require("mbpoll"), *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def parse_mbpoll(out: str) -> dict[int, int]:
    values = {}
    for line in out.splitlines():
        if line.startswith("["):
            ref, value = line.split(":", 1)
            values[int(ref.strip("[]"))] = int(value.split()[0]) & 0xFFFF
    return values


# --- RTU over pseudo-terminals ------------------------------------------------------------


def start_socat(a: str, b: str) -> subprocess.Popen[bytes]:
    """Two linked pseudo-terminals at paths a and b."""
    proc = subprocess.Popen(
        [require("socat"), f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.DEVNULL,
    )
    for _ in range(500):
        if os.path.exists(a) and os.path.exists(b):
            return proc
        assert proc.poll() is None
        time.sleep(0.01)
    raise AssertionError("socat made no ptys")


def stop_socat(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals made by socat: (server side, client side)."""
    a, b = str(tmp_path / "srv"), str(tmp_path / "cli")
    proc = start_socat(a, b)
    try:
        yield a, b
    finally:
        stop_socat(proc)


async def start_rtu(units: dict[int, MemoryBackend], port: str, **kw: object) -> ModbusService:
    rtu = RtuListener(port, **kw)  # type: ignore[arg-type]
    svc = ModbusService(dict(units), None, rtu)
    await svc.start()
    return svc


async def test_rtu_pymodbus_client_and_foreign_unit_silence(
    pty_pair: tuple[str, str], units: dict[int, MemoryBackend]
) -> None:
    svc = await start_rtu(units, pty_pair[0], stopbits=2)
    cli = AsyncModbusSerialClient(pty_pair[1], baudrate=9600, stopbits=2, timeout=1, retries=0)
    try:
        assert await cli.connect()
        rr = await cli.read_holding_registers(5, count=10, device_id=1)
        assert rr.registers == units[1].tables[Table.HOLDING_REGISTER][5:15]
        assert not (await cli.write_registers(0, [7, 8], device_id=2)).isError()
        assert units[2].tables[Table.HOLDING_REGISTER][:2] == [7, 8]
        assert not (await cli.write_coil(1, True, device_id=1)).isError()
        rr = await cli.read_coils(0, count=3, device_id=1)
        assert rr.bits[:3] == [bool(v) for v in units[1].tables[Table.COIL][:3]]
        with pytest.raises(ModbusIOException):
            await cli.read_holding_registers(0, count=1, device_id=9)
        rr = await cli.read_input_registers(0, count=2, device_id=2)
        assert rr.registers == units[2].tables[Table.INPUT_REGISTER][:2]
        rr = await cli.read_holding_registers(999, count=2, device_id=1)
        assert (rr.function_code, rr.exception_code) == (0x83, 0x02)
    finally:
        cli.close()
        await svc.stop()


async def test_rtu_mbpoll(pty_pair: tuple[str, str], units: dict[int, MemoryBackend]) -> None:
    svc = await start_rtu(units, pty_pair[0], turnaround_delay_s=0.005)
    try:
        out = await run_mbpoll(
            "-m",
            "rtu",
            "-b",
            "9600",
            "-P",
            "none",
            "-a",
            "2",
            "-t",
            "4",
            "-r",
            "1",
            "-c",
            "5",
            "-1",
            pty_pair[1],
        )
        expected = units[2].tables[Table.HOLDING_REGISTER][:5]
        assert parse_mbpoll(out) == {i + 1: v for i, v in enumerate(expected)}
    finally:
        await svc.stop()


async def test_tcp_and_rtu_share_backends(
    pty_pair: tuple[str, str], units: dict[int, MemoryBackend]
) -> None:
    svc = ModbusService(dict(units), TcpListener("127.0.0.1", 0), RtuListener(pty_pair[0]))
    await svc.start()
    cli = AsyncModbusSerialClient(pty_pair[1], baudrate=9600, timeout=2, retries=0)
    try:
        await raw_exchange(svc.tcp_port, adu(1, 1, b"\x06\x00\x02\xca\xfe"))
        assert await cli.connect()
        rr = await cli.read_holding_registers(2, count=1, device_id=1)
        assert rr.registers == [0xCAFE]
    finally:
        cli.close()
        await svc.stop()


async def test_long_pipeline_behind_a_slow_write_all_answered(
    service: ModbusService, units: dict[int, MemoryBackend]
) -> None:
    units[1].write_gate = asyncio.Event()
    reader, writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
    writer.write(adu(1000, 1, b"\x06\x00\x00\x00\x01"))
    await asyncio.wait_for(units[1].write_started.wait(), 5)
    for tid in range(600):  # more than the backlog limit: reading pauses, nothing is lost
        writer.write(adu(tid, 1, b"\x03\x00\x00\x00\x01"))
    await writer.drain()
    units[1].write_gate.set()
    assert await read_adu(reader) == adu(1000, 1, b"\x06\x00\x00\x00\x01")
    for tid in range(600):
        assert await read_adu(reader) == adu(tid, 1, b"\x03\x02\x00\x01")
    writer.write(adu(7000, 1, b"\x03\x00\x00\x00\x01"))  # reading resumed
    assert await read_adu(reader) == adu(7000, 1, b"\x03\x02\x00\x01")
    writer.close()


async def test_write_finishes_after_client_hangs_up(
    service: ModbusService, units: dict[int, MemoryBackend]
) -> None:
    units[1].write_gate = asyncio.Event()
    _, writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
    writer.write(adu(1, 1, b"\x06\x00\x03\x00\x2a"))
    await asyncio.wait_for(units[1].write_started.wait(), 5)
    writer.close()
    await _wait_connections(service, 0)
    units[1].write_gate.set()
    while not units[1].writes:  # noqa: ASYNC110 - the backend has no event for "written"
        await asyncio.sleep(0.01)
    assert units[1].writes[0][:3] == (Table.HOLDING_REGISTER, 3, [42])  # not abandoned half-way


async def test_rtu_port_lost_is_reopened(
    tmp_path: Path,
    units: dict[int, MemoryBackend],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(modbus_rtu, "REOPEN_S", 0.05)
    a, b = str(tmp_path / "srv"), str(tmp_path / "cli")
    proc = start_socat(a, b)
    svc = await start_rtu(units, a)
    try:
        stop_socat(proc)  # the adapter is unplugged...
        while "lost" not in caplog.text:  # noqa: ASYNC110 - only the log tells
            await asyncio.sleep(0.02)
        proc = start_socat(a, b)  # ...and comes back
        cli = AsyncModbusSerialClient(b, baudrate=9600, timeout=0.5, retries=0)
        assert await cli.connect()
        rr = None
        try:
            for _ in range(40):
                with contextlib.suppress(ModbusIOException):
                    rr = await cli.read_holding_registers(0, count=1, device_id=1)
                    break
            assert rr is not None
            assert rr.registers == units[1].tables[Table.HOLDING_REGISTER][:1]
            assert "reopened" in caplog.text
        finally:
            cli.close()
    finally:
        await svc.stop()
        stop_socat(proc)


async def test_single_unit_answers_unit_0_and_255_on_tcp() -> None:
    backend = MemoryBackend(3)
    svc = await start_tcp({7: backend})
    try:
        value = backend.tables[Table.INPUT_REGISTER][0]
        for unit in (0, 255, 7):
            reply = await raw_exchange(svc.tcp_port, adu(1, unit, b"\x04\x00\x00\x00\x01"))
            assert reply == adu(1, unit, struct.pack(">BBH", 4, 2, value))
        reply = await raw_exchange(svc.tcp_port, adu(1, 8, b"\x04\x00\x00\x00\x01"))
        assert reply == adu(1, 8, b"\x84\x0b")
    finally:
        await svc.stop()


async def test_stop_cancels_a_write_in_flight(units: dict[int, MemoryBackend]) -> None:
    units[1].write_gate = asyncio.Event()
    svc = await start_tcp(units)
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.tcp_port)
    writer.write(adu(1, 1, b"\x06\x00\x00\x00\x01"))
    await asyncio.wait_for(units[1].write_started.wait(), 5)
    await asyncio.wait_for(svc.stop(), 5)
    assert await asyncio.wait_for(reader.read(100), 5) == b""
    assert units[1].writes == []
    writer.close()
