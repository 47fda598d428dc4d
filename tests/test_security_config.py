"""Security settings from the command line and gateway.yaml, the audit log's file handling,
the status points of refusals, and ``run --tls`` as a real process (issue 17)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from certs import make_ca, make_cert
from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from test_security import Pki, client_context, refused_at_accept
from tools import require

from gateway.cli import build_parser, config_from_args
from gateway.config import DeviceConfig, GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.modbus.server import TcpListener
from gateway.security.audit import AuditEvent, AuditLog
from gateway.security.roles import Permission, decode_role, encode_role
from gateway.security.settings import SecuritySettings, TlsSettings
from gateway.service import GatewayService

ROOT = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> GatewayConfig:
    return config_from_args(build_parser().parse_args(["run", "--link", "sim://", *argv]))


def test_run_options_tls_only_with_allow_list_and_audit() -> None:
    config = parse(
        "--tcp", "off", "--tls", "0.0.0.0", "--tls-cert", "s.pem", "--tls-key", "s.key",
        "--tls-ca", "ca.pem", "--allow", "10.0.0.0/8", "--allow", "127.0.0.1", "--audit", "a.log",
    )  # fmt: skip
    assert config.tcp is None
    tls = config.security.tls
    assert tls is not None
    assert (tls.listener.host, tls.listener.port) == ("0.0.0.0", 802)  # the specification's
    assert tls.listener.allow == ("10.0.0.0/8", "127.0.0.1")
    assert (tls.cert, tls.key, tls.ca) == ("s.pem", "s.key", "ca.pem")
    assert config.security.audit == "a.log"
    plain = parse("--allow", "192.168.1.0/24")
    assert plain.tcp is not None
    assert plain.tcp.allow == ("192.168.1.0/24",)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls", "127.0.0.1:802"], "--tls needs --tls-cert, --tls-key, --tls-ca"),
        (["--tcp", "off"], "--tcp off needs --rtu DEVICE or --tls HOST:PORT"),
        (["--tls", "x:port", "--tls-cert", "a", "--tls-key", "b", "--tls-ca", "c"], "--tls"),
        (["--tls-cert", "a", "--tls-key", "b"], "--tls-cert, --tls-key without --tls"),
    ],
)
def test_bad_run_options_are_config_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(*argv)


def test_gateway_yaml_tls_only_with_roles_and_audit(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            modbus:
              tls:
                host: 0.0.0.0
                cert: pki/server.pem
                key: pki/server.key
                ca: pki/ca.pem
                allow: [10.1.0.0/16]
                roles:
                  viewer: [read]
                  maintainer: [read, configure]
            audit: {{file: audit.jsonl, max_bytes: 100000}}
            devices:
              - {{unit: 1, link: "sim://", map: {ROOT / "register_map.yaml"}}}
            """
        )
    )
    config = load_config(str(path))
    assert config.tcp is None
    tls = config.security.tls
    assert tls is not None
    assert tls.listener.port == 802
    assert tls.cert == str(tmp_path / "pki" / "server.pem")
    assert tls.listener.allow == ("10.1.0.0/16",)
    assert tls.roles == {
        "viewer": frozenset({Permission.READ}),
        "maintainer": frozenset({Permission.READ, Permission.CONFIGURE}),
    }
    assert config.security.audit == str(tmp_path / "audit.jsonl")
    assert config.security.audit_max_bytes == 100000


def test_gateway_yaml_errors_name_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "modbus:\n"
        "  tls: {cert: a, key: b, ca: c, roles: {viewer: [read, fly]}}\n"
        "  tcp: {write_allow: 10.0.0.0/8}\n"
        "devices: [{unit: 1, link: 'sim://'}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    text = "\n".join(caught.value.errors)
    assert "gateway.yaml:2" in text
    assert "fly" in text
    assert "gateway.yaml:3" in text


def test_bad_cidr_is_a_config_error() -> None:
    tcp = TcpListener("127.0.0.1", 0, allow=("10.0.0.300/8",))
    with pytest.raises(ConfigError, match=r"modbus.tcp.allow: .*10.0.0.300"):
        GatewayService(GatewayConfig((DeviceConfig(1, "sim://"),), tcp))


# --- the audit log's file ----------------------------------------------------------------
def event(number: int) -> AuditEvent:
    return AuditEvent("mqtt", "10.0.0.9:1883", 1, "switch", 0, number, "ok", 812.5)


def test_audit_rotates_at_its_size_limit_and_keeps_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), max_bytes=2000, backups=2)
    for number in range(100):
        log.record(event(number))
    log.close()
    files = [path, path.with_name("audit.jsonl.1"), path.with_name("audit.jsonl.2")]
    assert all(f.stat().st_size <= 2000 for f in files)
    assert not path.with_name("audit.jsonl.3").exists()
    newest = [
        json.loads(line)["new"] for f in reversed(files) for line in f.read_text().splitlines()
    ]
    assert newest == list(range(100 - len(newest), 100))  # the oldest rotated away, in order


def test_audit_log_folder_is_made_and_an_unwritable_path_says_which_option(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "log" / "gateway" / "audit.jsonl"  # a fresh host: no folder yet
    log = AuditLog(str(path))
    log.record(event(1))
    log.close()
    assert json.loads(path.read_text())["new"] == 1
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(OSError, match=r"audit log \(--audit\)"):
        AuditLog(str(blocked / "audit.jsonl"))


_WRITER = """
import sys
from gateway.security.audit import AuditEvent, AuditLog
log = AuditLog(sys.argv[1])
print("ready", flush=True)
number = 0
while True:
    log.record(AuditEvent("mqtt", "c", 1, "switch", 0, number, "ok", detail="x" * 3000))
    number += 1
"""


def test_audit_survives_a_crash_without_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    while not path.exists() or path.stat().st_size < 200_000:  # a few hundred lines
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no flush, no clean-up, maybe in the middle of a write()
    proc.wait()
    AuditLog(str(path)).close()  # the gateway starting again
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # all whole
    numbers = [line["new"] for line in lines if line["source"] == "mqtt"]
    assert numbers == sorted(set(numbers))  # in order (a full queue may drop, never reorder)
    assert all(line["result"] == "torn line recovered" for line in lines[len(numbers) :])
    # a line cut by a power loss is cut off and kept, quoted, in a recovery event
    with path.open("a") as handle:
        handle.write('{"time": "cut sho')
    log = AuditLog(str(path))
    log.record(event(-1))
    log.close()
    *_, recovered, last = (json.loads(line) for line in path.read_text().splitlines())
    assert (recovered["result"], recovered["detail"]) == (
        "torn line recovered",
        '{"time": "cut sho',
    )
    assert last["new"] == -1


# --- status points and the real process --------------------------------------------------
async def test_status_points_count_refused_connections_and_writes(tmp_path: Path) -> None:
    tcp = TcpListener("127.0.0.1", 0, allow=("127.0.0.1",), write_allow=("127.0.0.9",))
    default_map = str(ROOT / "register_map.yaml")  # it has both points, uint32 at 225 and 227
    service = GatewayService(GatewayConfig((DeviceConfig(1, "sim://", default_map),), tcp))
    await service.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=service.tcp_port, timeout=5, retries=0)
    try:
        for _ in range(2):
            assert await refused_at_accept(service.tcp_port, "127.0.0.2")
        await client.connect()
        assert (await client.write_coil(1, True, device_id=1)).exception_code == 0x01
        reply = await client.read_input_registers(225, count=4, device_id=1)
        assert reply.registers == [0, 2, 0, 1]
    finally:
        client.close()
        await service.stop()


async def toggle_prepayment(client: AsyncModbusTlsClient) -> Any:
    """Flip the prepayment coil once the link is READY (its first successful read)."""
    for _ in range(100):
        before = await client.read_coils(1, count=1, device_id=1)
        if not before.isError():
            break
        await asyncio.sleep(0.1)
    return await client.write_coil(1, not before.bits[0], device_id=1)


def test_run_tls_process_writes_audit_and_reloads_on_sighup(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    server = make_cert(tmp_path, "server", ca, server=True)
    operator = make_cert(tmp_path, "operator", ca, role="operator")
    pki = Pki(ca, server, operator, operator, operator, operator)
    audit = tmp_path / "audit.jsonl"
    port = free_port()
    argv = [
        sys.executable, "-m", "gateway", "run", "--link", "sim://?motor_time=0.05",
        "--tcp", "off", "--tls", f"127.0.0.1:{port}", "--tls-cert", str(server.cert),
        "--tls-key", str(server.key), "--tls-ca", str(ca.cert), "--audit", str(audit),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        asyncio.run(operate(port, pki))
        proc.send_signal(signal.SIGHUP)
        asyncio.run(operate(port, pki))  # still serving, with the reloaded certificate
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "reloaded" in err, err
    assert "Traceback" not in err
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["point"], e["result"], e["role"]) for e in lines] == [
        ("prepayment", "ok", "operator"),
        ("prepayment", "ok", "operator"),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def operate(port: int, pki: Pki) -> None:
    """Connect as the operator (retrying while the gateway starts) and toggle prepayment."""
    for _ in range(100):
        client = AsyncModbusTlsClient(
            "127.0.0.1", port=port, sslctx=client_context(pki, pki.operator), timeout=5, retries=0
        )
        if await client.connect():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the TLS listener never came up")
    try:
        reply = await toggle_prepayment(client)
        assert not reply.isError(), reply
    finally:
        client.close()


def readme_openssl_recipe() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Securing the gateway", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def readme_pki(tmp_path: Path) -> Path:
    """The README's openssl commands, run in tmp_path."""
    require("openssl")
    subprocess.run(
        ["bash", "-euc", readme_openssl_recipe()], cwd=tmp_path, check=True, capture_output=True
    )
    return tmp_path


async def test_readme_openssl_recipe_makes_working_role_certificates(readme_pki: Path) -> None:
    tmp_path = readme_pki
    files = {name: str(tmp_path / name) for name in ("server.pem", "server.key", "ca.pem")}
    tls = TlsSettings(TcpListener("127.0.0.1", 0), *files.values())
    config = GatewayConfig(
        (DeviceConfig(1, "sim://?motor_time=0.05"),), None, None, security=SecuritySettings(tls)
    )
    service = GatewayService(config)
    await service.start()
    try:
        for role, expected in (("viewer", 0x01), ("operator", None)):
            context = ssl.create_default_context(cafile=files["ca.pem"])
            context.load_cert_chain(tmp_path / f"{role}.pem", tmp_path / f"{role}.key")
            client = AsyncModbusTlsClient(
                "127.0.0.1", port=service.modbus.tls_port, sslctx=context, timeout=5, retries=0
            )
            assert await client.connect()
            reply = await toggle_prepayment(client)
            client.close()
            assert (reply.exception_code if reply.isError() else None) == expected, role
    finally:
        await service.stop()


@pytest.mark.parametrize("role", ["", "operator", "ä" * 70, "x" * 300])
def test_role_extension_round_trips(role: str) -> None:
    assert decode_role(encode_role(role)) == role


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x16\x08operator",  # IA5String, not UTF8String
        b"\x0c\x09operator",  # length past the end
        b"\x0c\x07operator",  # trailing byte
        b"\x0c\x83\x00\x00\x01x",  # 3-byte length form
        b"\x0c\x02\xff\xfe",  # not UTF-8
    ],
)
def test_malformed_role_extensions_mean_no_role(der: bytes) -> None:
    assert decode_role(der) is None


def test_unreadable_certificate_is_a_config_error_before_anything_binds(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    tls = TlsSettings(TcpListener("127.0.0.1", 0), missing, missing, missing)
    config = GatewayConfig((DeviceConfig(1, "sim://"),), None, security=SecuritySettings(tls))
    with pytest.raises(ConfigError, match="tls: cannot load"):
        GatewayService(config)
