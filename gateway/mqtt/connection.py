"""The aiomqtt client for a broker: MQTT v5, TLS, login, the last will, arrival times."""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Coroutine
from typing import Any

import aiomqtt
from aiomqtt import ProtocolVersion, TLSParameters, Will

from gateway.mqtt.settings import MqttSettings
from gateway.mqtt.topics import OFFLINE, Topics

__all__ = [
    "arrival_time",
    "expiry_interval",
    "first_failure",
    "open_client",
    "raise_if_cancelled",
]

_KEEPALIVE_S = 30
_INCOMING_LIMIT = 256  # commands and HA status only: a flood is dropped, not buffered
_ARRIVALS: weakref.WeakKeyDictionary[aiomqtt.Message, float] = weakref.WeakKeyDictionary()


class _StampedQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, noting when each message arrived (for its expiry)."""

    def _put(self, item: aiomqtt.Message) -> None:
        _ARRIVALS[item] = time.monotonic()
        super()._put(item)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation aiomqtt swallowed.

    aiomqtt waits with ``asyncio.wait_for``, which on 3.11 drops a cancellation that arrives as
    the awaited future completes: the task would carry on (and ``stop()`` would wait forever).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def arrival_time(message: aiomqtt.Message) -> float:
    """When ``message`` came off the socket (monotonic); now if unknown."""
    return _ARRIVALS.pop(message, time.monotonic())


def expiry_interval(message: aiomqtt.Message) -> float | None:
    """The MQTT v5 message-expiry interval left when the broker sent it, if it has one."""
    interval = getattr(message.properties, "MessageExpiryInterval", None)
    return None if interval is None else float(interval)


def _tls(settings: MqttSettings) -> TLSParameters | None:
    if not settings.tls:
        return None
    return TLSParameters(
        ca_certs=settings.ca,
        certfile=settings.client_cert,
        keyfile=settings.client_key,
        cert_reqs=ssl.CERT_REQUIRED,
    )


def open_client(settings: MqttSettings, topics: Topics) -> aiomqtt.Client:
    """A client (not yet connected) whose last will marks the gateway offline."""
    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=f"tuya-modbus-gateway-{settings.gateway_id}",
        protocol=ProtocolVersion.V5,
        will=Will(topics.status, OFFLINE, qos=1, retain=True),
        keepalive=_KEEPALIVE_S,
        timeout=10,
        queue_type=_StampedQueue,
        max_queued_incoming_messages=_INCOMING_LIMIT,
        tls_params=_tls(settings),
    )


async def first_failure(*jobs: Coroutine[Any, Any, None]) -> None:
    """Run ``jobs`` until one ends or fails; cancel the rest; raise what the first raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
