"""Greedy and slow Modbus TCP clients against the real service on the twin (issue 13).

Slowloris connections, a 100,000-request pipeline and refused connections must not lock out
or starve a well-behaved client. Behaviour only: how much faster is in bench/bench_attacks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from test_robustness_modbus import WAIT_S, expected_registers, start

from gateway.modbus.limits import RateLimitedLog
from gateway.modbus.server import TcpListener
from gateway.service import GatewayService

ATTACKER = "127.0.0.2"  # the loopback net is ours: the attacker and the good client differ
READ = struct.pack(">HHHBBHH", 1, 0, 6, 1, 4, 0, 9)


async def open_from(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))


async def good_reads(port: int, count: int) -> list[list[int]]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=WAIT_S, retries=0)
    assert await client.connect(), "the well-behaved client was refused"
    try:
        answers = []
        for _ in range(count):
            reply = await client.read_input_registers(0, count=9, device_id=1)
            assert not reply.isError(), reply
            answers.append(list(reply.registers))
        return answers
    finally:
        client.close()


@pytest.fixture
async def guarded() -> AsyncIterator[GatewayService]:
    listener = TcpListener(
        "127.0.0.1", 0, max_connections=12, max_connections_per_ip=4, adu_timeout_s=0.5
    )
    service = await start(listener)
    yield service
    await service.stop()


async def drip(port: int, stop: asyncio.Event, closed: list[int]) -> None:
    """A slowloris connection: one byte of a request at a time, reconnecting when closed."""
    while not stop.is_set():
        with contextlib.suppress(ConnectionError, OSError):
            reader, writer = await open_from(ATTACKER, port)
            try:
                for byte in READ:
                    writer.write(bytes((byte,)))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            if await reader.read(1) == b"":
                                break
            finally:
                closed.append(1)
                writer.close()
        await asyncio.sleep(0.05)


async def test_slowloris_does_not_lock_out_a_new_client(guarded: GatewayService) -> None:
    port, stop, closed = guarded.tcp_port, asyncio.Event(), list[int]()
    attackers = [asyncio.create_task(drip(port, stop, closed)) for _ in range(20)]
    try:
        await asyncio.sleep(1.0)  # every slot the attacker may take is taken
        assert await good_reads(port, 5) == [expected_registers(guarded)] * 5
    finally:
        stop.set()
        await asyncio.gather(*attackers)
    counters = guarded.modbus.counters["tcp"]
    assert counters.refused_limit > 0  # the per-address cap refused the attacker's extra slots
    assert counters.closed_incomplete > 0  # and the half requests timed out on their own


async def test_incomplete_adu_times_out_although_bytes_keep_coming(
    guarded: GatewayService,
) -> None:
    reader, writer = await open_from(ATTACKER, guarded.tcp_port)
    try:
        async with asyncio.timeout(WAIT_S):
            for byte in READ[:-1]:  # a byte every 0.2 s: the connection is never idle
                writer.write(bytes((byte,)))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        if await reader.read(1) == b"":
                            break
            else:
                raise AssertionError("an ADU trickling in was never closed")
    finally:
        writer.close()
    assert guarded.modbus.counters["tcp"].closed_incomplete == 1


async def flood(port: int, requests: int, replies: list[int]) -> None:
    """One client pipelining ``requests`` reads at once and reading the replies."""
    reader, writer = await open_from(ATTACKER, port)
    ask = b"".join(struct.pack(">HHHBBHH", t & 0xFFFF, 0, 6, 1, 4, 0, 1) for t in range(requests))
    writer.write(ask)
    try:
        while replies[0] < requests:
            await reader.readexactly(11)
            replies[0] += 1
    finally:
        writer.close()


async def test_pipelining_flood_does_not_starve_another_client(guarded: GatewayService) -> None:
    port, requests, replies = guarded.tcp_port, 100_000, [0]
    flooding = asyncio.create_task(flood(port, requests, replies))
    while replies[0] == 0:  # noqa: ASYNC110 - the flood has started when it gets replies
        await asyncio.sleep(0.001)
    answers = await good_reads(port, 20)
    assert replies[0] < requests, "the other client was only served after the flood"
    assert answers == [expected_registers(guarded)] * 20
    await flooding
    assert replies[0] == requests  # the greedy client was served in full too


async def test_refusals_are_logged_once_per_address_with_a_count(
    guarded: GatewayService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    held = [await open_from(ATTACKER, guarded.tcp_port) for _ in range(4)]
    for _ in range(10):
        reader, writer = await open_from(ATTACKER, guarded.tcp_port)
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(WAIT_S):
                assert await reader.read(1) == b""  # closed at accept
        writer.close()
    refusals = [r for r in caplog.records if "refusing" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert ATTACKER in refusals[0].getMessage()
    assert guarded.modbus.counters["tcp"].refused_limit == 10
    for _, writer in held:
        writer.close()


def test_rate_limited_log_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test"), 60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        shown = [log.warning("10.0.0.1", "refusing %s", "10.0.0.1") for _ in range(5)]
        log.warning("10.0.0.2", "refusing %s", "10.0.0.2")
        now[0] = 61.0
        log.warning("10.0.0.1", "refusing %s", "10.0.0.1")
    assert shown == [True, False, False, False, False]
    assert [r.getMessage() for r in caplog.records] == [
        "refusing 10.0.0.1",
        "refusing 10.0.0.2",
        "refusing 10.0.0.1 (4 more from this address in the last 61 s)",
    ]


async def test_a_write_during_a_flood_is_confirmed(guarded: GatewayService) -> None:
    port, requests, replies = guarded.tcp_port, 100_000, [0]
    flooding = asyncio.create_task(flood(port, requests, replies))
    while replies[0] == 0:  # noqa: ASYNC110 - the flood has started when it gets replies
        await asyncio.sleep(0.001)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=WAIT_S, retries=0)
    assert await client.connect()
    try:
        before = (await client.read_coils(1, count=1, device_id=1)).bits[0]
        reply = await client.write_coil(1, not before, device_id=1)  # prepayment
        assert not reply.isError(), reply  # confirmed by the MCU within its window
        assert replies[0] < requests
        assert (await client.read_coils(1, count=1, device_id=1)).bits[0] is (not before)
    finally:
        client.close()
    await flooding
    assert guarded.units[1].link.state.name == "READY"  # heartbeats kept going
