"""Modbus robustness of the real service on the twin (test_modbus_malformed.py covers the
framing against in-memory units): RTU bad CRC and noise over a pty, TCP garbage and stalled
clients next to a reader, all answered from the real cache."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import struct
from collections.abc import AsyncIterator

import pytest
from conftest import FAST_TIMINGS
from pymodbus.client import AsyncModbusTcpClient
from serial_line import PtyMaster

from gateway.config import DeviceConfig, GatewayConfig
from gateway.modbus.rtu import crc16
from gateway.modbus.server import RtuListener, TcpListener
from gateway.modbus.tables import Table
from gateway.service import GatewayService

TWIN = "sim://family_a?report_interval=0&seed=4"  # values only change when asked: stable
WAIT_S = 15.0


def rtu(frame: bytes) -> bytes:
    return frame + crc16(frame).to_bytes(2, "little")


READ_IR = rtu(b"\x01\x04\x00\x00\x00\x09")  # voltage .. fault (not data_age, it ticks)
ANSWER_SIZE = 5 + 2 * 9


async def start(tcp: TcpListener | None, rtu_port: str | None = None) -> GatewayService:
    """The real service on one twin, started, its link READY."""
    listener = RtuListener(rtu_port) if rtu_port else None
    service = GatewayService(GatewayConfig((DeviceConfig(1, TWIN),), tcp, listener))
    link = service.units[1].link
    link.config = dataclasses.replace(link.config, timings=FAST_TIMINGS)
    await service.start()
    await link.wait_ready(WAIT_S)
    return service


def expected_registers(service: GatewayService, count: int = 9) -> list[int]:
    """What the real backend answers now for input registers 0..count-1."""
    values = service.units[1].backend.read(Table.INPUT_REGISTER, 0, count)
    assert isinstance(values, list), values
    return values


@pytest.fixture
def clean_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def assert_no_errors(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- RTU over a real pty --------------------------------------------------------------------


@pytest.fixture
async def rtu_service() -> AsyncIterator[tuple[GatewayService, PtyMaster]]:
    bus = PtyMaster()
    service = await start(None, bus.path)
    yield service, bus
    await service.stop()
    bus.close()


def ir_answer(service: GatewayService) -> bytes:
    words = expected_registers(service)
    return rtu(bytes((1, 4, 18)) + struct.pack(">9H", *words))


async def test_rtu_bad_crc_dropped_next_request_answered(
    rtu_service: tuple[GatewayService, PtyMaster], caplog: pytest.LogCaptureFixture, clean_log: None
) -> None:
    service, bus = rtu_service
    for flip in (-1, -2, 3):
        bad = bytearray(READ_IR)
        bad[flip] ^= 0x5A
        bus.write(bytes(bad))
        await asyncio.sleep(0.05)  # well past t3.5 at 9600 (4 ms): the line went idle
        assert bus.pending() == b"", "a frame with a bad CRC was answered"
        assert await bus.first_answer(READ_IR, ANSWER_SIZE) == ir_answer(service)
    assert_no_errors(caplog)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_rtu_noise_between_frames(
    rtu_service: tuple[GatewayService, PtyMaster],
    caplog: pytest.LogCaptureFixture,
    clean_log: None,
    seed: int,
) -> None:
    service, bus = rtu_service
    rng = random.Random(seed)
    assert await bus.first_answer(READ_IR, ANSWER_SIZE) == ir_answer(service)
    for _ in range(5):
        bus.write(rng.randbytes(rng.randint(1, 300)))  # noise right after an answered frame
        assert await bus.first_answer(READ_IR, ANSWER_SIZE) == ir_answer(service)
    # noise glued to the front of a request: that request may be lost, never misread
    bus.write(rng.randbytes(40) + READ_IR)
    await asyncio.sleep(0.05)
    assert bus.pending() in (b"", ir_answer(service))
    await bus.read(len(bus.pending()), 1.0)
    assert await bus.first_answer(READ_IR, ANSWER_SIZE) == ir_answer(service)
    assert service.units[1].link.state.name == "READY"
    assert_no_errors(caplog)


# --- TCP -------------------------------------------------------------------------------------
@pytest.fixture
async def tcp_service() -> AsyncIterator[GatewayService]:
    service = await start(TcpListener("127.0.0.1", 0, max_connections=64))
    yield service
    await service.stop()


async def reader_loop(
    port: int, stop: asyncio.Event, answers: list[list[int]], enough: asyncio.Event | None = None
) -> None:
    """A pymodbus client reading input registers 0..8 until ``stop``; ``enough`` after 50."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await client.connect()
    try:
        while not stop.is_set():
            reply = await client.read_input_registers(0, count=9, device_id=1)
            assert not reply.isError(), reply
            answers.append(list(reply.registers))
            if enough is not None and len(answers) >= 50:
                enough.set()
    finally:
        client.close()


async def garbage_client(port: int, rng: random.Random) -> None:
    """One connection that sends random bytes, sometimes stalls mid-ADU, then goes away."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(rng.randint(1, 5)):
            writer.write(rng.randbytes(rng.randint(1, 700)))
            await writer.drain()
            await asyncio.sleep(rng.random() * 0.02)
        if rng.random() < 0.3:  # a half ADU, then silence while the reader keeps reading
            writer.write(b"\x00\x01\x00\x00\x00\x06\x01\x04")
            await writer.drain()
            await asyncio.sleep(0.1)
    except (ConnectionError, OSError):
        pass  # the server may close a connection whose framing is hopeless
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        del reader


async def test_tcp_garbage_while_another_client_reads(
    tcp_service: GatewayService, caplog: pytest.LogCaptureFixture, clean_log: None
) -> None:
    port = tcp_service.tcp_port
    stop, answers = asyncio.Event(), list[list[int]]()
    reader = asyncio.create_task(reader_loop(port, stop, answers))
    rng = random.Random(77)
    for _ in range(8):
        await asyncio.gather(*(garbage_client(port, rng) for _ in range(6)))
    before = len(answers)
    await asyncio.sleep(0.2)
    stop.set()
    await reader
    assert before > 0
    assert len(answers) > before  # the reader was served throughout
    assert all(a == expected_registers(tcp_service) for a in answers)
    assert tcp_service.units[1].link.state.name == "READY"
    assert_no_errors(caplog)


async def test_tcp_stalled_half_adus_do_not_block_readers(
    tcp_service: GatewayService, caplog: pytest.LogCaptureFixture, clean_log: None
) -> None:
    port = tcp_service.tcp_port
    stalled = []
    for cut in range(1, 12):  # every prefix of a valid ADU, each on its own connection
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((b"\x00\x07\x00\x00\x00\x06" + READ_IR[:-2])[:cut])
        await writer.drain()
        stalled.append(writer)
    stop, answers = asyncio.Event(), list[list[int]]()
    enough = asyncio.Event()
    reader = asyncio.create_task(reader_loop(port, stop, answers, enough))
    await asyncio.wait_for(enough.wait(), WAIT_S)
    stop.set()
    await reader
    assert all(a == expected_registers(tcp_service) for a in answers)
    for writer in stalled:
        writer.close()
    assert_no_errors(caplog)
