"""MQTT northbound: end-to-end latency DP report -> MQTT message, and messages/s.

Run as ``python bench/bench_mqtt.py [--samples N] [--units N] [--seconds S]``. A Mosquitto
broker runs on a free port; the gateway runs in this process (its twins are sim:// links) so
a report listener on the link can stamp the moment a DP report is decoded. A paho-mqtt
subscriber in a thread of this process stamps each message's arrival (same monotonic clock).

- latency: the twin's lever is flipped every 20 ms; each dp16 report is stamped on the link
  and matched with the ``…/1/switch`` message (``min_interval_s`` 0).
- throughput: ``--units`` twins report every 20 ms with noise; messages/s reaching the
  subscriber, the outbox's coalesced and dropped counts, and the gateway's DP reports/s.
- reference, same run: a bare aiomqtt publisher on the same broker, publish -> subscriber
  latency and messages/s: what the broker and client library allow at most.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from benchlib import ROOT, free_port, pct, server, table

from gateway.config import DeviceConfig, GatewayConfig
from gateway.modbus.server import TcpListener
from gateway.mqtt import MqttSettings
from gateway.service import GatewayService
from gateway.tuya.protocol import DpValue

HEADERS = ("path", "samples", "p50 ms", "p99 ms", "max ms", "msgs/s")
FLIP_SPACING_S = 0.02


class Subscriber:
    """A paho client in its own thread: arrival time of every message, by topic."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.arrivals: dict[str, list[tuple[float, bytes]]] = {}
        self.count = 0
        self._lock = threading.Lock()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(topic_filter)
        self._client.loop_start()

    def _on_message(self, _client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self.arrivals.setdefault(message.topic, []).append((now, message.payload))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def gateway_config(port: int, units: int, report_interval: float) -> GatewayConfig:
    twin = f"sim://family_a?report_interval={report_interval:g}&motor_time=0.05"
    devices = tuple(
        DeviceConfig(unit, f"{twin}&seed={unit}", str(ROOT / "register_map.yaml"))
        for unit in range(1, units + 1)
    )
    mqtt = MqttSettings("127.0.0.1", port, gateway_id="bench", min_interval_s=0.0)
    return GatewayConfig(devices, TcpListener("127.0.0.1", 0), None, mqtt=mqtt)


async def ready(service: GatewayService) -> None:
    async with asyncio.timeout(30):
        for unit in service.units.values():
            await unit.link.wait_ready(30)
    await asyncio.sleep(1.0)  # the first full publication goes out


async def latency(port: int, samples: int) -> list[object]:
    service = GatewayService(gateway_config(port, 1, 60))
    subscriber = Subscriber(port, "tuya-modbus-gateway/bench/1/switch")
    reports: list[tuple[float, bytes]] = []
    unit = service.units[1]

    def stamp(dp: DpValue) -> None:
        if dp.dpid == 16:
            reports.append((time.monotonic(), b"ON" if dp.payload != b"\x00" else b"OFF"))

    unit.link.add_report_listener(stamp)
    await service.start()
    try:
        await ready(service)
        twin = unit.link.twin  # the in-process twin (sim://)
        assert twin is not None
        reports.clear()
        subscriber.arrivals.clear()
        for _ in range(samples):
            twin.flip_lever(not twin.switch_on)
            await asyncio.sleep(FLIP_SPACING_S)
        await asyncio.sleep(0.5)
    finally:
        await service.stop()
        subscriber.close()
    arrived = subscriber.arrivals.get("tuya-modbus-gateway/bench/1/switch", [])
    delays = [1000 * (at - _report_before(reports, at, payload)) for at, payload in arrived]
    return ["gateway: dp16 report -> MQTT", len(delays), *_spread(delays), "-"]


async def throughput(port: int, units: int, seconds: float) -> list[object]:
    service = GatewayService(gateway_config(port, units, 0.02))
    subscriber = Subscriber(port, "tuya-modbus-gateway/bench/#")
    reports = [0]
    for unit in service.units.values():
        unit.link.add_report_listener(lambda _dp: reports.__setitem__(0, reports[0] + 1))
    await service.start()
    try:
        await ready(service)
        start_count, start_reports = subscriber.count, reports[0]
        await asyncio.sleep(seconds)
        received, offered = subscriber.count - start_count, reports[0] - start_reports
        bridge = service.mqtt
        assert bridge is not None
        outbox = bridge.outbox
        extra = f"{offered / seconds:,.0f} DP reports/s; coalesced {outbox.replaced}"
        extra += f", dropped {outbox.dropped}"
    finally:
        await service.stop()
        subscriber.close()
    print(f"throughput, {units} units: {extra}", flush=True)
    return [f"gateway: {units} twins, 20 ms reports", received, "-", "-", "-", received / seconds]


async def reference(port: int, samples: int, seconds: float) -> list[list[object]]:
    subscriber = Subscriber(port, "bench/reference/#")
    await asyncio.sleep(0.3)
    sent: list[float] = []
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for index in range(samples):
            sent.append(time.monotonic())
            await client.publish("bench/reference/latency", str(index), retain=True)
            await asyncio.sleep(FLIP_SPACING_S)
        await asyncio.sleep(0.5)
        begin, count = time.monotonic(), 0
        while time.monotonic() - begin < seconds:
            await client.publish(f"bench/reference/t{count % 500}", str(count), retain=True)
            count += 1
        await asyncio.sleep(0.5)
    subscriber.close()
    arrived = [t for t, _ in subscriber.arrivals.get("bench/reference/latency", [])]
    delays = [1000 * (a - s) for s, a in zip(sent, arrived, strict=False)]
    got = sum(len(v) for k, v in subscriber.arrivals.items() if k != "bench/reference/latency")
    return [
        ["reference: aiomqtt publish -> MQTT", len(delays), *_spread(delays), "-"],
        ["reference: aiomqtt publish loop", got, "-", "-", "-", got / seconds],
    ]


def _report_before(reports: list[tuple[float, bytes]], at: float, payload: bytes) -> float:
    """When the newest report of ``payload`` before ``at`` was decoded."""
    return max(t for t, value in reports if t <= at and value == payload)


def _spread(delays: list[float]) -> list[float]:
    if not delays:
        return [float("nan")] * 3
    return [pct(delays, 0.5), pct(delays, 0.99), max(delays)]


async def run(args: argparse.Namespace, port: int) -> list[list[object]]:
    rows = [await latency(port, args.samples)]
    rows.append(await throughput(port, args.units, args.seconds))
    rows.extend(await reference(port, args.samples, args.seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n")
        with server(["/usr/sbin/mosquitto", "-c", str(conf)], port):
            rows = asyncio.run(run(args, port))
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
