"""Modbus/TCP Security on the twin with real TLS and real clients (issue 17).

A CA, a server certificate and client certificates (role operator, role viewer, no role, and
one from another CA) are made with ``cryptography``; the pymodbus TLS client, Python's ssl
module and ``openssl s_client`` talk to the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import uvloop
from certs import Issued, make_ca, make_cert
from conftest import FAST_TIMINGS
from cryptography import x509
from pymodbus.client import AsyncModbusTlsClient
from tools import require

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.security.settings import SecuritySettings, TlsSettings
from gateway.service import GatewayService

TWIN = "sim://family_a?report_interval=0&seed=4&motor_time=0.05"
WAIT_S = 15.0
SWITCH, PREPAYMENT = 0, 1  # coils
OVERCURRENT = 0  # holding register: a threshold (configure)


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    operator: Issued
    viewer: Issued
    anonymous: Issued  # no role extension
    stranger: Issued  # role operator, but signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = make_ca(directory, "ca"), make_ca(directory, "other")
    return Pki(
        ca,
        make_cert(directory, "server", ca, server=True),
        make_cert(directory, "operator", ca, role="operator"),
        make_cert(directory, "viewer", ca, role="viewer"),
        make_cert(directory, "anonymous", ca),
        make_cert(directory, "stranger", other, role="operator"),
    )


def client_context(
    pki: Pki, who: Issued | None, maximum: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca.cert))
    if who is not None:
        context.load_cert_chain(who.cert, who.key)
    if maximum is not None:
        context.maximum_version = maximum
    return context


async def start_secure(
    pki: Pki,
    *,
    tcp: TcpListener | None = None,
    tls_allow: tuple[str, ...] = (),
    audit: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    ca: Path | None = None,
) -> GatewayService:
    tls = TlsSettings(
        TcpListener("127.0.0.1", 0, allow=tls_allow, max_connections_per_ip=4),
        str(cert or pki.server.cert),
        str(key or pki.server.key),
        str(ca or pki.ca.cert),
    )
    security = SecuritySettings(tls=tls, audit=str(audit) if audit else None)
    config = GatewayConfig(
        (DeviceConfig(1, TWIN),), tcp, None, WritePolicy(switch_interval_s=0), security=security
    )
    service = GatewayService(config)
    link = service.units[1].link
    link.config = dataclasses.replace(link.config, timings=FAST_TIMINGS)
    await service.start()
    await link.wait_ready(WAIT_S)
    return service


@pytest.fixture
async def secure(pki: Pki) -> AsyncIterator[GatewayService]:
    service = await start_secure(pki)
    yield service
    await service.stop()


@contextlib.asynccontextmanager
async def tls_client(
    service: GatewayService, pki: Pki, who: Issued
) -> AsyncIterator[AsyncModbusTlsClient]:
    client = AsyncModbusTlsClient(
        "127.0.0.1",
        port=service.modbus.tls_port,
        sslctx=client_context(pki, who),
        timeout=WAIT_S,
        retries=0,
    )
    assert await client.connect(), "TLS connection failed"
    try:
        yield client
    finally:
        client.close()


async def test_operator_reads_and_switches(secure: GatewayService, pki: Pki) -> None:
    async with tls_client(secure, pki, pki.operator) as client:
        voltage = await client.read_input_registers(0, count=1, device_id=1)
        assert not voltage.isError()
        assert voltage.registers[0] > 0
        before = (await client.read_coils(SWITCH, count=1, device_id=1)).bits[0]
        reply = await client.write_coil(SWITCH, not before, device_id=1)
        assert not reply.isError(), reply
        after = await client.read_coils(SWITCH, count=1, device_id=1)
        assert after.bits[0] is (not before)
        threshold = await client.read_holding_registers(OVERCURRENT, count=1, device_id=1)
        reply = await client.write_register(OVERCURRENT, threshold.registers[0], device_id=1)
        assert not reply.isError(), reply  # configure


@pytest.mark.parametrize("who", ["viewer", "anonymous"])
async def test_viewer_and_no_role_read_but_get_0x01_on_writes(
    secure: GatewayService, pki: Pki, who: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cert: Issued = getattr(pki, who)
    async with tls_client(secure, pki, cert) as client:
        assert not (await client.read_input_registers(0, count=9, device_id=1)).isError()
        before = (await client.read_coils(SWITCH, count=2, device_id=1)).bits[:2]
        for reply in (
            await client.write_coil(SWITCH, not before[0], device_id=1),
            await client.write_coil(PREPAYMENT, not before[1], device_id=1),
            await client.write_register(OVERCURRENT, 10, device_id=1),
        ):
            assert reply.isError(), reply
            assert reply.exception_code == 0x01, reply
        assert (await client.read_coils(SWITCH, count=2, device_id=1)).bits[:2] == before
    refusals = [r.getMessage() for r in caplog.records if "refused (0x01)" in r.getMessage()]
    assert refusals
    assert f"CN={who}" in refusals[0], refusals
    assert secure.security.policy.counters.refused_writes == 3


async def handshake(port: int, context: ssl.SSLContext) -> bytes:
    """Connect, send a read, return the reply (b"" if the server closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(struct.pack(">HHHBBHH", 1, 0, 6, 1, 4, 0, 1))
        return await reader.read(100)
    finally:
        writer.close()


@pytest.mark.parametrize("who", [None, "stranger"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_no_certificate_or_other_ca_fails_the_handshake(
    secure: GatewayService,
    pki: Pki,
    who: str | None,
    version: ssl.TLSVersion,
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = client_context(pki, getattr(pki, who) if who else None, version)
    # TLS 1.2 fails in the handshake itself; TLS 1.3 clients learn it from the server's
    # alert on their first read (the client's handshake ends before the server checks).
    caplog.set_level(logging.INFO)
    with contextlib.suppress(ssl.SSLError, ConnectionResetError):
        assert await handshake(secure.modbus.tls_port, context) == b""  # never an answer
    counters = secure.modbus.counters["tls"]
    async with asyncio.timeout(WAIT_S):
        while not counters.handshake_failed:  # noqa: ASYNC110 - the server side ends a moment later
            await asyncio.sleep(0.01)
    failures = [r.getMessage() for r in caplog.records if "handshake with" in r.getMessage()]
    assert len(failures) == 1, failures
    assert "CERTIFICATE" in failures[0], failures


async def test_tls_1_1_is_refused(secure: GatewayService) -> None:
    openssl = require("openssl")
    args = [openssl, "s_client", "-connect", f"127.0.0.1:{secure.modbus.tls_port}"]
    proc = await asyncio.create_subprocess_exec(
        *args, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode(errors="replace")
    assert proc.returncode != 0, out
    assert "Cipher is (NONE)" in out, out  # no session
    # the same openssl with TLS 1.2 gets as far as the server's certificate
    proc = await asyncio.create_subprocess_exec(
        *args, "-tls1_2", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out = (await proc.communicate())[0].decode(errors="replace")
    assert "CN = server" in out or "CN=server" in out, out


async def refused_at_accept(port: int, host: str) -> bool:
    """True if a connection from ``host`` is closed before it gets an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    try:
        writer.write(struct.pack(">HHHBBHH", 1, 0, 6, 1, 4, 0, 1))
        async with asyncio.timeout(WAIT_S):
            return await reader.read(100) == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


async def test_allow_list_refuses_127_0_0_2_and_serves_127_0_0_1(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tcp = TcpListener("127.0.0.1", 0, allow=("127.0.0.1/32",))
    service = await start_secure(pki, tcp=tcp, tls_allow=("127.0.0.1",))
    try:
        for _ in range(3):
            assert await refused_at_accept(service.tcp_port, "127.0.0.2")
        assert not await refused_at_accept(service.tcp_port, "127.0.0.1")
        async with tls_client(service, pki, pki.operator) as client:  # from 127.0.0.1
            assert not (await client.read_input_registers(0, count=1, device_id=1)).isError()
        # closed before the handshake: the TLS client sees the connection end at once
        context = client_context(pki, pki.operator)
        tls_port = service.modbus.tls_port
        opening = asyncio.open_connection(
            "127.0.0.1", tls_port, ssl=context, local_addr=("127.0.0.2", 0)
        )
        with pytest.raises((ConnectionResetError, ssl.SSLError)):
            await opening
        counters = service.modbus.counters
        assert counters["tcp"].refused_not_allowed == 3
        assert counters["tls"].refused_not_allowed == 1
        async with tls_client(service, pki, pki.viewer) as client:  # the map's status points
            refused = await client.read_input_registers(225, count=2, device_id=1)
        assert refused.registers == [0, 4]  # refused_connections, uint32
    finally:
        await service.stop()
    logged = [r.getMessage() for r in caplog.records if "not in the allow list" in r.getMessage()]
    assert len(logged) == 2, logged  # once per address and listener, not once per connection


async def plain_write(port: int, host: str, pdu: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    try:
        writer.write(struct.pack(">HHHB", 7, 0, len(pdu) + 1, 1) + pdu)
        async with asyncio.timeout(WAIT_S):
            header = await reader.readexactly(7)
            return await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
    finally:
        writer.close()


async def test_write_allow_and_audit_log_every_write(pki: Pki, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    tcp = TcpListener("127.0.0.1", 0, write_allow=("127.0.0.1/32",))
    service = await start_secure(pki, tcp=tcp, audit=audit)
    port = service.tcp_port
    try:
        prepayment_on = b"\x05\x00\x01\xff\x00"
        assert await plain_write(port, "127.0.0.2", prepayment_on) == b"\x85\x01"
        assert await plain_write(port, "127.0.0.1", prepayment_on) == prepayment_on
        async with tls_client(service, pki, pki.viewer) as client:
            assert (await client.write_coil(SWITCH, True, device_id=1)).exception_code == 0x01
        async with tls_client(service, pki, pki.operator) as client:
            assert not (await client.write_coil(PREPAYMENT, False, device_id=1)).isError()
            reply = await client.write_register(OVERCURRENT, 0xFFFF, device_id=1)
            assert reply.exception_code == 0x03  # out of range: refused by the unit
            refused = await client.read_input_registers(227, count=2, device_id=1)
        assert service.security.policy.counters.refused_writes == 2
        assert refused.registers == [0, 2]  # the map's refused_writes point, uint32
    finally:
        await service.stop()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["client"].split(":")[0], e["point"], e["result"]) for e in lines] == [
        ("127.0.0.2", "prepayment", "exception 0x01"),
        ("127.0.0.1", "prepayment", "ok"),
        ("127.0.0.1", "switch", "exception 0x01"),
        ("127.0.0.1", "prepayment", "ok"),
        ("127.0.0.1", "overcurrent_threshold", "exception 0x03"),
    ]
    assert (lines[1]["old"], lines[1]["new"], lines[3]["new"]) == (0, 1, 0)
    assert lines[2]["subject"] == "CN=viewer,O=gateway tests"
    assert lines[2]["role"] == "viewer"
    assert lines[3]["source"] == "modbus/tls"
    assert lines[3]["confirm_ms"] > 0
    assert all(line["time"].endswith("+00:00") for line in lines)


async def peer_serial(port: int, pki: Pki) -> int:
    context = client_context(pki, pki.operator)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()


async def test_sighup_reloads_the_certificate_without_dropping_clients(
    pki: Pki, tmp_path: Path
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    service = await start_secure(pki, cert=cert, key=key)
    port = service.modbus.tls_port
    try:
        assert await peer_serial(port, pki) == pki.server.certificate.serial_number
        async with tls_client(service, pki, pki.operator) as kept:
            renewed = make_cert(tmp_path, "renewed", pki.ca, server=True)
            shutil.copy(renewed.cert, cert)
            shutil.copy(renewed.key, key)
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.1)  # the handler runs on the loop
            assert await peer_serial(port, pki) == renewed.certificate.serial_number
            assert not (await kept.read_input_registers(0, count=1, device_id=1)).isError()
        assert service.units[1].link.state.name == "READY"
    finally:
        await service.stop()


async def test_sighup_adds_a_new_ca_for_new_handshakes(pki: Pki, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    shutil.copy(pki.ca.cert, ca_file)
    rolled = make_ca(tmp_path, "rolled")
    newcomer = make_cert(tmp_path, "newcomer", rolled, role="viewer")
    service = await start_secure(pki, ca=ca_file)
    port = service.modbus.tls_port
    try:
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            assert await handshake(port, client_context(pki, newcomer)) == b""
        ca_file.write_bytes(pki.ca.cert.read_bytes() + rolled.cert.read_bytes())
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.1)  # the handler runs on the loop
        reply = await handshake(port, client_context(pki, newcomer))
        assert reply[7:9] == b"\x04\x02", reply.hex(" ")
        reply = await handshake(port, client_context(pki, pki.operator))  # the old CA stays
        assert reply[7:9] == b"\x04\x02", reply.hex(" ")
    finally:
        await service.stop()


async def test_silent_connections_in_the_handshake_count_against_the_address_cap(
    secure: GatewayService, pki: Pki
) -> None:
    port = secure.modbus.tls_port
    silent = [
        await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        for _ in range(4)
    ]  # TCP only: they never send a ClientHello
    try:
        assert await refused_at_accept(port, "127.0.0.2")  # the fifth is closed at accept
        async with tls_client(secure, pki, pki.viewer) as client:  # others are served
            assert not (await client.read_input_registers(0, count=1, device_id=1)).isError()
        assert secure.modbus.counters["tls"].refused_limit == 1
    finally:
        for _, writer in silent:
            writer.close()


async def test_tls_pipelining_flood_does_not_starve_another_client(
    secure: GatewayService, pki: Pki
) -> None:
    port, requests, done = secure.modbus.tls_port, 20_000, [0]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(pki, pki.viewer)
    )
    writer.write(b"".join(struct.pack(">HHHBBHH", t, 0, 6, 1, 4, 0, 1) for t in range(requests)))

    async def drain_replies() -> None:
        while done[0] < requests:
            await reader.readexactly(11)
            done[0] += 1

    flooding = asyncio.create_task(drain_replies())
    while done[0] == 0:  # noqa: ASYNC110 - the flood has started when it gets replies
        await asyncio.sleep(0.001)
    async with tls_client(secure, pki, pki.operator) as client:
        for _ in range(10):
            assert not (await client.read_input_registers(0, count=9, device_id=1)).isError()
    assert done[0] < requests, "the other client was only served after the flood"
    await flooding
    writer.close()


@pytest.mark.parametrize("loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop])
def test_tls_on_every_event_loop_the_gateway_runs(
    pki: Pki, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """uvloop (the default on Linux) too: a ClientHello sent at once is not lost at accept."""

    async def serve_and_read() -> bytes:
        service = await start_secure(pki)
        try:
            async with asyncio.timeout(WAIT_S):
                return await handshake(service.modbus.tls_port, client_context(pki, pki.operator))
        finally:
            await service.stop()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        reply = runner.run(serve_and_read())
    assert reply[7:9] == b"\x04\x02", reply.hex(" ")  # FC4, two bytes of voltage
