"""Malformed Modbus over real TCP and a real pty, and a byte-for-byte diff against pymodbus."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator, Iterator

import pytest
from bench_modules import load_bench
from pymodbus.server import ModbusTcpServer
from serial_line import PtyMaster
from test_modbus_server import MemoryBackend, adu, raw_exchange, read_adu, start_rtu, start_tcp

from gateway.modbus.rtu import crc16
from gateway.modbus.server import ModbusService
from gateway.modbus.tables import Table

SENTINEL = adu(0x7777, 1, b"\x03\x00\x00\x00\x01")


@pytest.fixture(autouse=True)
def no_traceback_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Malformed input is answered or dropped, never logged as an error or a traceback."""
    caplog.set_level(logging.DEBUG)
    yield
    assert "Traceback" not in caplog.text
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("gateway")
    ]
    assert errors == []


@pytest.fixture
def units() -> dict[int, MemoryBackend]:
    return {1: MemoryBackend(0), 2: MemoryBackend(5)}


@pytest.fixture
async def service(units: dict[int, MemoryBackend]) -> AsyncIterator[ModbusService]:
    svc = await start_tcp(units, idle_timeout_s=5.0)
    yield svc
    await svc.stop()


def sentinel_reply(units: dict[int, MemoryBackend]) -> bytes:
    return adu(0x7777, 1, struct.pack(">BBH", 3, 2, units[1].tables[Table.HOLDING_REGISTER][0]))


def exc(fc: int, code: int) -> bytes:
    return adu(1, 1, bytes((fc | 0x80, code)))


# (name, request bytes, expected answers before the sentinel's)
ANSWERED: list[tuple[str, bytes, bytes]] = [
    ("protocol id 1 is dropped", adu(1, 1, b"\x03\x00\x00\x00\x01", protocol=1), b""),
    ("protocol id 0xffff is dropped", adu(1, 1, b"\x03\x00\x00\x00\x01", protocol=0xFFFF), b""),
    *[(f"fc{fc} truncated", adu(1, 1, bytes((fc, 0, 0))), exc(fc, 3)) for fc in (1, 2, 3, 4, 5, 6)],
    ("fc15 truncated", adu(1, 1, b"\x0f\x00\x00\x00\x08"), exc(15, 3)),
    ("fc16 truncated", adu(1, 1, b"\x10\x00\x00\x00\x01"), exc(16, 3)),
    ("fc23 truncated", adu(1, 1, b"\x17\x00\x00\x00\x01\x00\x00"), exc(23, 3)),
    ("fc8 truncated", adu(1, 1, b"\x08\x00"), exc(8, 3)),
    ("fc43 no MEI type", adu(1, 1, b"\x2b"), exc(43, 3)),
    ("fc43 truncated", adu(1, 1, b"\x2b\x0e\x01"), exc(43, 3)),
    *[
        (f"unknown fc {fc:#x}", adu(1, 1, bytes((fc, 0, 0, 0, 1))), exc(fc, 1))
        for fc in (0x00, 0x07, 0x0B, 0x11, 0x14, 0x18, 0x41, 0x64, 0x80, 0x83, 0xFF)
    ],
    ("fc1 count 0", adu(1, 1, b"\x01\x00\x00\x00\x00"), exc(1, 3)),
    ("fc1 count 2001", adu(1, 1, b"\x01\x00\x00\x07\xd1"), exc(1, 3)),
    ("fc2 count 2001", adu(1, 1, b"\x02\x00\x00\x07\xd1"), exc(2, 3)),
    ("fc3 count 0", adu(1, 1, b"\x03\x00\x00\x00\x00"), exc(3, 3)),
    ("fc3 count 126", adu(1, 1, b"\x03\x00\x00\x00\x7e"), exc(3, 3)),
    ("fc4 count 126", adu(1, 1, b"\x04\x00\x00\x00\x7e"), exc(4, 3)),
    ("fc3 count 0xffff", adu(1, 1, b"\x03\x00\x00\xff\xff"), exc(3, 3)),
    ("fc15 count 0", adu(1, 1, b"\x0f\x00\x00\x00\x00\x00"), exc(15, 3)),
    ("fc15 count 1969", adu(1, 1, b"\x0f\x00\x00\x07\xb1\xf7" + bytes(247)), exc(15, 3)),
    ("fc15 byte count wrong", adu(1, 1, b"\x0f\x00\x00\x00\x08\x02\xff\x00"), exc(15, 3)),
    ("fc16 count 124", adu(1, 1, b"\x10\x00\x00\x00\x7c\xf8" + bytes(248)[:240]), exc(16, 3)),
    ("fc16 byte count wrong", adu(1, 1, b"\x10\x00\x00\x00\x02\x03\x00\x01\x00"), exc(16, 3)),
    ("fc16 data short", adu(1, 1, b"\x10\x00\x00\x00\x02\x04\x00\x01"), exc(16, 3)),
    (
        "fc23 read count 126",
        adu(1, 1, b"\x17\x00\x00\x00\x7e\x00\x00\x00\x01\x02\x00\x01"),
        exc(23, 3),
    ),
    (
        "fc23 write count 122",
        adu(1, 1, b"\x17\x00\x00\x00\x01\x00\x00\x00\x7a\xf4" + bytes(200)),
        exc(23, 3),
    ),
    ("fc5 value 0x1234", adu(1, 1, b"\x05\x00\x00\x12\x34"), exc(5, 3)),
    ("fc8 sub-function 1", adu(1, 1, b"\x08\x00\x01\x00\x00"), exc(8, 1)),
    ("fc43 MEI 13", adu(1, 1, b"\x2b\x0d\x01\x00"), exc(43, 1)),
    ("fc43 read code 5", adu(1, 1, b"\x2b\x0e\x05\x00"), exc(43, 3)),
    ("fc43 object absent", adu(1, 1, b"\x2b\x0e\x04\x55"), exc(43, 2)),
    ("fc3 address past table", adu(1, 1, b"\x03\x03\xe8\x00\x01"), exc(3, 2)),
    ("fc3 crosses table end", adu(1, 1, b"\x03\x03\xe7\x00\x02"), exc(3, 2)),
    ("fc1 past 0xffff", adu(1, 1, b"\x01\xff\xff\x00\x02"), exc(1, 2)),
    ("fc6 past table", adu(1, 1, b"\x06\x03\xe8\x00\x01"), exc(6, 2)),
    ("fc15 past 0xffff", adu(1, 1, b"\x0f\xff\xff\x00\x02\x01\x03"), exc(15, 2)),
    ("unit 0 with two units", adu(1, 0, b"\x03\x00\x00\x00\x01"), adu(1, 0, b"\x83\x0b")),
    ("unit 247 unknown", adu(1, 247, b"\x03\x00\x00\x00\x01"), adu(1, 247, b"\x83\x0b")),
]

CLOSED: list[tuple[str, bytes]] = [
    ("MBAP length 0", b"\x00\x01\x00\x00\x00\x00\x01\x03\x00\x00\x00\x01"),
    ("MBAP length 1", b"\x00\x01\x00\x00\x00\x01\x01\x03\x00\x00\x00\x01"),
    ("MBAP length 255", b"\x00\x01\x00\x00\x00\xff\x01" + bytes(254)),
    ("MBAP length 0xffff", b"\x00\x01\x00\x00\xff\xff\x01\x03\x00\x00\x00\x01"),
]


@pytest.mark.parametrize(("name", "request_", "expected"), ANSWERED, ids=[c[0] for c in ANSWERED])
async def test_malformed_answered_or_dropped(
    service: ModbusService,
    units: dict[int, MemoryBackend],
    name: str,
    request_: bytes,
    expected: bytes,
) -> None:
    reply = await raw_exchange(service.tcp_port, request_ + SENTINEL, answers=2 if expected else 1)
    assert reply == expected + sentinel_reply(units), name


@pytest.mark.parametrize(("name", "request_"), CLOSED, ids=[c[0] for c in CLOSED])
async def test_bad_mbap_length_closes_connection(
    service: ModbusService, units: dict[int, MemoryBackend], name: str, request_: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
    writer.write(request_ + SENTINEL)
    assert await asyncio.wait_for(reader.read(1000), 5) == b"", name
    writer.close()
    assert await raw_exchange(service.tcp_port, SENTINEL) == sentinel_reply(units)


async def test_mbap_length_shorter_than_pdu(service: ModbusService) -> None:
    """The header cuts the PDU: 0x03 for the stub, then the rest is junk and we hang up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
    writer.write(b"\x00\x01\x00\x00\x00\x03\x01\x03\x00" + b"\x00\x00\x01" + SENTINEL)
    assert await read_adu(reader) == exc(3, 3)
    assert await asyncio.wait_for(reader.read(100), 5) == b""
    writer.close()


async def test_partial_adu_waits_for_the_rest(
    service: ModbusService, units: dict[int, MemoryBackend]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
    for byte in SENTINEL:  # one byte per segment
        writer.write(bytes((byte,)))
        await writer.drain()
    assert await read_adu(reader) == sentinel_reply(units)
    writer.close()


async def test_garbage_then_other_clients_still_served(
    service: ModbusService, units: dict[int, MemoryBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(1234)
    for _ in range(60):
        _, writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
        writer.write(rng.randbytes(rng.randint(1, 600)))
        await writer.drain()
        writer.close()
    assert await raw_exchange(service.tcp_port, SENTINEL) == sentinel_reply(units)
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_every_well_framed_adu_gets_one_answer_in_order(
    service: ModbusService, caplog: pytest.LogCaptureFixture
) -> None:
    """Random PDUs in valid MBAP frames, pipelined: one answer each, same tid, fc or fc|0x80."""
    caplog.set_level(logging.DEBUG)
    rng = random.Random(99)
    fcs = [1, 2, 3, 4, 5, 6, 8, 15, 16, 23, 43, 7, 0x11, 0x80, 0xFF]
    requests = []
    for tid in range(400):
        fc = rng.choice(fcs)
        requests.append(
            (
                tid,
                fc,
                adu(tid, rng.choice((1, 2, 3)), bytes((fc,)) + rng.randbytes(rng.randint(0, 12))),
            )
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", service.tcp_port)
    writer.write(b"".join(r[2] for r in requests))
    for tid, fc, _ in requests:
        reply = await read_adu(reader)
        assert struct.unpack(">H", reply[:2])[0] == tid
        assert reply[7] in (fc, fc | 0x80)
    writer.close()
    assert "Traceback" not in caplog.text


# --- differential: our server vs a bare pymodbus 3.16 server on the same data ---------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def pymodbus_port() -> AsyncIterator[int]:
    bench = load_bench("bench_bare_pymodbus")
    port = _free_port()
    server = ModbusTcpServer(bench.build_device(), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    yield port
    await server.shutdown()  # type: ignore[no-untyped-call]


def _read_shapes() -> list[bytes]:
    shapes = []
    for fc in (1, 2, 3, 4):
        for address in (0, 1, 17, 500, 875, 990, 999, 1000, 1007, 1008, 65534, 65535):
            for count in (0, 1, 2, 8, 16, 17, 125, 126, 999, 2000, 2001, 0xFFFF):
                shapes.append(struct.pack(">BHH", fc, address, count))
        shapes += [bytes((fc,)), bytes((fc, 0)), bytes((fc, 0, 0, 0))]
        shapes += [
            struct.pack(">BHH", fc, 3, 4) + b"\x00",
            struct.pack(">BHH", fc, 3, 4) + bytes(5),
        ]
    return shapes + [bytes((fc, 0, 0, 0, 1)) for fc in (0x09, 0x0A, 0x41, 0x64)]


# Serial-line and file functions pymodbus serves that the gateway does not: we answer 0x01.
PYMODBUS_ONLY_FCS = (0x07, 0x0B, 0x0C, 0x11, 0x18)


async def _answers(port: int, pdus: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for tid, pdu in enumerate(pdus, start=1):
        writer.write(adu(tid, 1, pdu))  # one at a time: pymodbus answers one per segment
        out.append(await read_adu(reader))
    writer.close()
    return out


async def test_differential_against_bare_pymodbus(pymodbus_port: int) -> None:
    """Byte-for-byte pymodbus' answers, except where pymodbus answers function byte 0x80.

    For an unknown function, a quantity out of range or a truncated PDU, pymodbus 3.16
    answers ``80 01``; we answer the spec's ``FC|0x80`` with 0x01 (unknown function) or
    0x03 (quantity / length). Coil tables are 1008 long: pymodbus pads bits to 16.
    """
    bench = load_bench("bench_bare_pymodbus")
    backend = MemoryBackend(0, size=bench.TABLE_SIZE, bit_size=1008)
    assert backend.tables[Table.HOLDING_REGISTER][:50] == [
        bench.register_value(2, a) for a in range(50)
    ]
    assert backend.tables[Table.COIL][:50] == [int(bench.bit_value(0, a)) for a in range(50)]
    ours = await start_tcp({1: backend})
    try:
        shapes = _read_shapes() + [bytes((fc, 0, 0)) for fc in PYMODBUS_ONLY_FCS]
        theirs_all, ours_all = await asyncio.gather(
            _answers(pymodbus_port, shapes), _answers(ours.tcp_port, shapes)
        )
    finally:
        await ours.stop()
    deviations = 0
    for pdu, theirs, mine in zip(shapes, theirs_all, ours_all, strict=True):
        if pdu[0] in PYMODBUS_ONLY_FCS:
            assert theirs[7] == pdu[0]
            assert mine == theirs[:4] + b"\x00\x03" + theirs[6:7] + bytes((pdu[0] | 0x80, 1))
        elif theirs[7:] == b"\x80\x01":
            deviations += 1
            code = 0x01 if pdu[0] not in (1, 2, 3, 4) else 0x03
            assert mine == theirs[:7] + bytes((pdu[0] | 0x80, code)), pdu.hex(" ")
        else:
            assert mine == theirs, pdu.hex(" ")
    assert 0 < deviations < len(shapes) // 2


async def test_differential_silence_on_bad_protocol_id(pymodbus_port: int) -> None:
    """Neither server answers an ADU whose protocol id is not 0."""
    ours = await start_tcp({1: MemoryBackend(0)})
    try:
        for port in (pymodbus_port, ours.tcp_port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(adu(1, 1, b"\x03\x00\x00\x00\x01", protocol=2))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(100), 0.3)
            writer.close()
    finally:
        await ours.stop()


# --- RTU over os.openpty -------------------------------------------------------------------


def rtu(frame: bytes) -> bytes:
    return frame + crc16(frame).to_bytes(2, "little")


@pytest.fixture
async def bus() -> AsyncIterator[PtyMaster]:
    master = PtyMaster()
    yield master
    master.close()


def hr_answer(units: dict[int, MemoryBackend], unit: int) -> bytes:
    return rtu(struct.pack(">BBBH", unit, 3, 2, units[unit].tables[Table.HOLDING_REGISTER][0]))


READ_HR = rtu(b"\x01\x03\x00\x00\x00\x01")


async def test_rtu_bad_crc_and_noise_dropped(
    bus: PtyMaster, units: dict[int, MemoryBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    svc = await start_rtu(units, bus.path, parity="O")
    try:
        bad = bytearray(READ_HR)
        bad[-1] ^= 0xFF
        bus.write(bytes(bad))
        assert await bus.first_answer(READ_HR, 7) == hr_answer(units, 1)
        bus.write(random.Random(5).randbytes(300))
        assert await bus.first_answer(READ_HR, 7) == hr_answer(units, 1)
        bus.write(rtu(b"\x09\x03\x00\x00\x00\x01"))  # another slave's unit: silence
        bus.write(rtu(b"\x01\x41\x00\x00"))  # unknown FC for us, taken after the line idles
        assert await bus.read(5) == rtu(b"\x01\xc1\x01")
        assert await bus.first_answer(READ_HR, 7) == hr_answer(units, 1)
    finally:
        await svc.stop()
    assert "Traceback" not in caplog.text


OTHER_SERVERS = [  # what a master and unit 6 put on a shared bus: requests and replies
    rtu(b"\x06\x03\x02\x00\x01"),
    rtu(b"\x06\x03\x04\x00\x01\x00\x02"),
    rtu(b"\x06\x01\x01\x01"),
    rtu(b"\x06\x83\x02"),
    rtu(b"\x06\x10\x00\x00\x00\x02"),
    rtu(b"\x06\x16\x00\x00\xff\xff\x00\x00"),
]


@pytest.mark.parametrize("other", OTHER_SERVERS, ids=lambda frame: frame[:2].hex())
async def test_rtu_steps_over_another_server_s_frames_without_waiting_for_silence(
    bus: PtyMaster, units: dict[int, MemoryBackend], other: bytes
) -> None:
    svc = await start_rtu(units, bus.path)
    try:
        bus.write(rtu(b"\x06\x03\x00\x00\x00\x01") + other + READ_HR)  # back to back
        assert await bus.read(7) == hr_answer(units, 1)
    finally:
        await svc.stop()


async def test_rtu_byte_count_that_does_not_match_is_answered_0x03(
    bus: PtyMaster, units: dict[int, MemoryBackend]
) -> None:
    svc = await start_rtu(units, bus.path)
    try:
        bus.write(rtu(b"\x01\x10\x00\x00\x00\x02\x03\x00\x29\x00\xfa"))  # 3 bytes for 2 regs
        assert await bus.read(5) == rtu(b"\x01\x90\x03")
        bus.write(rtu(b"\x01\x0f\x00\x01\x00\x01\x00"))  # no byte for one coil
        assert await bus.read(5) == rtu(b"\x01\x8f\x03")
        assert units[1].writes == []
    finally:
        await svc.stop()


@pytest.mark.parametrize("suppress", [True, False])
async def test_rtu_echo_suppression(
    bus: PtyMaster, units: dict[int, MemoryBackend], suppress: bool
) -> None:
    svc = await start_rtu(units, bus.path, echo_suppression=suppress)
    try:
        write = rtu(b"\x01\x06\x00\x05\x12\x34")
        bus.write(write)
        assert await bus.read(len(write)) == write  # FC6 answers with the request itself
        bus.write(write)  # a half-duplex adapter hears our own answer
        if not suppress:  # the echo is taken for a request, executed and answered
            assert await bus.read(len(write)) == write
        assert await bus.first_answer(READ_HR, 7) == hr_answer(units, 1)
        # Without suppression the echo is executed as a second write.
        assert len(units[1].writes) == (1 if suppress else 2)
    finally:
        await svc.stop()


async def test_rtu_broadcast_writes_all_units_silently(
    bus: PtyMaster, units: dict[int, MemoryBackend]
) -> None:
    svc = await start_rtu(units, bus.path)
    try:
        bus.write(rtu(b"\x00\x06\x00\x00\xab\xcd"))
        answer = await bus.first_answer(READ_HR, 7)
        assert answer == rtu(b"\x01\x03\x02\xab\xcd")  # nothing answered the broadcast
        assert units[2].tables[Table.HOLDING_REGISTER][0] == 0xABCD
    finally:
        await svc.stop()


async def test_rtu_rs485_mode_falls_back_on_a_pty(
    bus: PtyMaster, units: dict[int, MemoryBackend], caplog: pytest.LogCaptureFixture
) -> None:
    svc = await start_rtu(units, bus.path, rs485_rts=True, turnaround_delay_s=0.01)
    try:
        assert await bus.first_answer(READ_HR, 7) == hr_answer(units, 1)
    finally:
        await svc.stop()
    assert "RS485 RTS mode not available" in caplog.text
