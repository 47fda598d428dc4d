"""MQTT northbound: end-to-end latency DP report -> MQTT message, and messages/s.

Run as ``python bench/bench_mqtt.py [--samples N] [--units N] [--seconds S]``. A Mosquitto
broker runs on a free port; the gateway runs in this process (its twins are sim:// links) so
a report listener on the link can stamp the moment a DP report is decoded. A paho-mqtt
subscriber in its own process stamps each message's arrival (CLOCK_MONOTONIC, comparable
across processes).

- latency: the twin's lever is flipped every 20 ms; each dp16 report is stamped on the link
  and matched with the ``…/1/switch`` message (``min_interval_s`` 0).
- throughput: ``--units`` twins report every 20 ms with noise; messages/s reaching the
  subscriber, the outbox's coalesced and dropped counts, and the gateway's DP reports/s.
- Modbus under that load: a thread reads FC4 x 10 every 5 ms on one socket, once with MQTT
  on and once with it off (same twins): what MQTT costs the Modbus side.
- reference, same run: a bare aiomqtt publisher on the same broker, publish -> subscriber
  latency and messages/s: what the broker and client library allow at most.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiomqtt
from benchlib import ROOT, free_port, pct, recv_adu, server, table

from gateway.config import DeviceConfig, GatewayConfig
from gateway.modbus.server import TcpListener
from gateway.mqtt import MqttSettings
from gateway.service import GatewayService
from gateway.tuya.protocol import DpValue

HEADERS = ("path", "samples", "p50 ms", "p99 ms", "max ms", "msgs/s")
FLIP_SPACING_S = 0.02


class ModbusProbe:
    """A thread reading FC4 x 10 from unit 1 every 5 ms on one socket: the Modbus side's delay."""

    def __init__(self, port: int) -> None:
        self.delays: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), 5.0)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        request = bytes.fromhex("0001 0000 0006 01 04 0000 000a".replace(" ", ""))
        while not self._stop.wait(0.005):
            begin = time.monotonic()
            try:
                self._sock.sendall(request)
                recv_adu(self._sock)
            except OSError:
                self.errors += 1
                return
            self.delays.append(1000 * (time.monotonic() - begin))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


_LISTENER = r"""
import sys, time
from paho.mqtt import client as paho
port, topic_filter, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = open(path, "w", buffering=1)
def on_message(client, userdata, message):
    payload = message.payload.decode(errors="replace")
    out.write(f"{time.monotonic():.6f} {message.topic} {payload}\n")
def on_subscribe(client, userdata, mid, reasons, properties):
    print("ready", flush=True)
client = paho.Client(paho.CallbackAPIVersion.VERSION2)
client.on_message, client.on_subscribe = on_message, on_subscribe
client.connect("127.0.0.1", port)
client.subscribe(topic_filter)
client.loop_forever()
"""


class Subscriber:
    """A paho subscriber in its own process (no GIL shared with the gateway) writing the
    arrival time of every message to a file; CLOCK_MONOTONIC compares across processes."""

    def __init__(self, port: int, topic_filter: str, folder: Path) -> None:
        self._path = folder / f"heard-{time.monotonic_ns()}.txt"
        self._process = subprocess.Popen(
            [sys.executable, "-c", _LISTENER, str(port), topic_filter, str(self._path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "ready"

    def close(self) -> list[tuple[float, str, str]]:
        """Stop listening; every (arrival, topic, payload) heard."""
        time.sleep(0.3)  # the last messages in flight
        self._process.terminate()
        self._process.wait()
        records = []
        for line in self._path.read_text().splitlines():
            stamp, topic, payload = [*line.split(" ", 2), ""][:3]
            records.append((float(stamp), topic, payload))
        return records


def gateway_config(
    port: int, units: int, report_interval: float, min_interval_s: float | None = 0.0
) -> GatewayConfig:
    """Twins on the default map; MQTT with ``min_interval_s`` (None: no MQTT)."""
    twin = f"sim://family_a?report_interval={report_interval:g}&motor_time=0.05"
    devices = tuple(
        DeviceConfig(unit, f"{twin}&seed={unit}", str(ROOT / "register_map.yaml"))
        for unit in range(1, units + 1)
    )
    mqtt = None
    if min_interval_s is not None:
        mqtt = MqttSettings("127.0.0.1", port, gateway_id="bench", min_interval_s=min_interval_s)
    return GatewayConfig(devices, TcpListener("127.0.0.1", 0), None, mqtt=mqtt)


async def ready(service: GatewayService) -> None:
    async with asyncio.timeout(30):
        for unit in service.units.values():
            await unit.link.wait_ready(30)
    await asyncio.sleep(1.0)  # the first full publication goes out


async def latency(port: int, samples: int, folder: Path) -> list[object]:
    service = GatewayService(gateway_config(port, 1, 60))
    reports: list[tuple[float, str]] = []
    unit = service.units[1]

    def stamp(dp: DpValue) -> None:
        if dp.dpid == 16:
            reports.append((time.monotonic(), "ON" if dp.payload != b"\x00" else "OFF"))

    unit.link.add_report_listener(stamp)
    await service.start()
    try:
        await ready(service)
        subscriber = Subscriber(port, "tuya-modbus-gateway/bench/1/switch", folder)
        await asyncio.sleep(0.3)  # the retained value goes by
        twin = unit.link.twin  # the in-process twin (sim://)
        assert twin is not None
        begin = time.monotonic()
        for _ in range(samples):
            twin.flip_lever(not twin.switch_on)
            await asyncio.sleep(FLIP_SPACING_S)
        heard = subscriber.close()
    finally:
        await service.stop()
    delays = [
        1000 * (at - _report_before(reports, at, payload)) for at, _, payload in heard if at > begin
    ]
    return ["gateway: dp16 report -> MQTT", len(delays), *_spread(delays), "-"]


async def throughput(
    port: int, units: int, seconds: float, folder: Path, min_interval_s: float | None = 0.0
) -> list[list[object]]:
    service = GatewayService(gateway_config(port, units, 0.02, min_interval_s))
    reports = [0]
    for unit in service.units.values():
        unit.link.add_report_listener(lambda _dp: reports.__setitem__(0, reports[0] + 1))
    await service.start()
    try:
        await ready(service)
        subscriber = Subscriber(port, "tuya-modbus-gateway/bench/#", folder)
        begin, start_reports = time.monotonic(), reports[0]
        probe = ModbusProbe(service.tcp_port)
        await asyncio.sleep(seconds)
        probe.close()
        end, offered = time.monotonic(), reports[0] - start_reports
        received = sum(begin <= at <= end for at, _, _ in subscriber.close())
        extra = f"{offered / seconds:,.0f} DP reports/s, probe errors {probe.errors}"
        if service.mqtt is not None:
            extra += f"; coalesced {service.mqtt.outbox.replaced}"
            extra += f", dropped {service.mqtt.outbox.dropped}"
    finally:
        await service.stop()
    mode = "MQTT off" if min_interval_s is None else f"MQTT min_interval {min_interval_s:g} s"
    print(f"{units} units, {mode}: {extra}", flush=True)
    rows: list[list[object]] = [
        [f"modbus FC4 x10 under load, {mode}", len(probe.delays), *_spread(probe.delays), "-"]
    ]
    if min_interval_s is not None:
        rate = received / (end - begin)
        what = f"gateway: {units} twins, 20 ms reports, {mode}"
        rows.insert(0, [what, received, "-", "-", "-", rate])
    return rows


async def reference(port: int, samples: int, seconds: float, folder: Path) -> list[list[object]]:
    subscriber = Subscriber(port, "bench/reference/#", folder)
    sent: dict[str, float] = {}
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for index in range(samples):
            sent[str(index)] = time.monotonic()
            await client.publish("bench/reference/latency", str(index))
            await asyncio.sleep(FLIP_SPACING_S)
        begin, count = time.monotonic(), 0
        while time.monotonic() - begin < seconds:
            await client.publish(f"bench/reference/t{count % 500}", str(count), retain=True)
            count += 1
        end = time.monotonic()
    heard = subscriber.close()
    delays = [1000 * (at - sent[p]) for at, t, p in heard if t.endswith("/latency")]
    got = sum(begin <= at <= end for at, t, _ in heard if not t.endswith("/latency"))
    return [
        ["reference: aiomqtt publish -> MQTT", len(delays), *_spread(delays), "-"],
        ["reference: aiomqtt publish loop", got, "-", "-", "-", got / (end - begin)],
    ]


def _report_before(reports: list[tuple[float, str]], at: float, payload: str) -> float:
    """When the newest report of ``payload`` before ``at`` was decoded."""
    return max(t for t, value in reports if t <= at and value == payload)


def _spread(delays: list[float]) -> list[float]:
    if not delays:
        return [float("nan")] * 3
    return [pct(delays, 0.5), pct(delays, 0.99), max(delays)]


async def run(args: argparse.Namespace, port: int, folder: Path) -> list[list[object]]:
    rows = [await latency(port, args.samples, folder)]
    for min_interval_s in (0.0, 1.0, None):
        rows.extend(await throughput(port, args.units, args.seconds, folder, min_interval_s))
    rows.extend(await reference(port, args.samples, args.seconds, folder))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n")
        with server(["/usr/sbin/mosquitto", "-c", str(conf)], port):
            rows = asyncio.run(run(args, port, folder))
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
