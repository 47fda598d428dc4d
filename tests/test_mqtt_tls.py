"""TLS to the broker: ``mqtts://`` with the broker's CA and a client certificate."""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mqtt_broker import Broker, listening
from served import Served, start_served
from test_mqtt import GW, SWITCH_CONFIG, gateway_config, heard_text


def _issue(
    folder: Path, name: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey]:
    """Write ``name``.pem and ``name``.key: a CA when ``issuer`` is None, else a leaf."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0] if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        alt = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(alt, critical=False)
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{name}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return subject, key


class TlsBroker(Broker):
    """Mosquitto with a TLS listener that requires a client certificate from our CA."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        ca = _issue(folder, "ca", None)
        _issue(folder, "broker", ca)
        _issue(folder, "test-gw", ca)
        _issue(folder, "listener", ca)
        self._config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {folder / 'ca.pem'}\ncertfile {folder / 'broker.pem'}\n"
            f"keyfile {folder / 'broker.key'}\n"
            "require_certificate true\nuse_identity_as_username true\n"
            f"persistence false\nuser {getpass.getuser()}\n"
        )


@pytest.fixture
async def served() -> AsyncIterator[list[Served]]:
    started: list[Served] = []
    yield started
    for one in started:
        await one.stop()


async def test_the_gateway_publishes_over_tls_with_a_client_certificate(
    tmp_path: Path, served: list[Served]
) -> None:
    broker = TlsBroker(tmp_path)
    await broker.start()
    try:
        cfg = gateway_config(tmp_path, broker)
        assert cfg.mqtt is not None
        mqtt = dataclasses.replace(
            cfg.mqtt,
            tls=True,
            ca=str(tmp_path / "ca.pem"),
            client_cert=str(tmp_path / "test-gw.pem"),
            client_key=str(tmp_path / "test-gw.key"),
        )
        await start_served(dataclasses.replace(cfg, mqtt=mqtt), Served, served)
        tls = aiomqtt.TLSParameters(
            ca_certs=str(tmp_path / "ca.pem"),
            certfile=str(tmp_path / "listener.pem"),
            keyfile=str(tmp_path / "listener.key"),
        )
        async with listening(broker.port, "#", tls=tls) as (_, heard):
            await heard_text(heard, SWITCH_CONFIG)
            await heard_text(heard, f"{GW}/1/status", "online")
            assert heard.text(f"{GW}/status") == "online"
    finally:
        await broker.stop()
