"""MqttBridge: the gateway as a client of an MQTT broker (state, discovery, commands).

The Modbus side only ever touches the bridge through link listeners that mark a unit dirty:
a sampler task (:mod:`gateway.mqtt.sampler`) turns dirty units into messages in the bounded
:class:`Outbox` while it has room, and a sender task publishes them while a broker session is
up. Each session (first connect, or reconnect
after a broker restart or a network drop, with exponential backoff) publishes ``online``,
subscribes, and republishes discovery, availability and every point's state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.mqtt.commands import OK, AuditHook, Command, CommandOutcome, execute, refused_early
from gateway.mqtt.connection import (
    arrival_time,
    expiry_interval,
    first_failure,
    open_client,
    raise_if_cancelled,
)
from gateway.mqtt.feed import UnitFeed
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.sampler import Sampler
from gateway.mqtt.settings import MqttSettings
from gateway.mqtt.topics import OFFLINE, ONLINE, Topics
from gateway.tuya.link import LinkState
from gateway.tuya.protocol import DpValue
from gateway.unit.view import UnitView

__all__ = ["BridgeStats", "BridgedUnit", "MqttBridge"]

_LOGGER = logging.getLogger(__name__)
_MAX_COMMANDS = 32  # commands being written at once; more are refused, not queued
_MAX_REPLIES = 256  # refusals whose result is being published at once
_STOP_TIMEOUT_S = 2.0
_COMMAND_OPTIONS = SubscribeOptions(qos=1, retainAsPublished=True)


BridgedUnit = UnitView  # the service's Unit, as this package reads it


@dataclasses.dataclass(slots=True)
class BridgeStats:
    """Live counters of the MQTT side."""

    sessions: int = 0
    messages_sent: int = 0
    commands: int = 0
    commands_refused: int = 0


class MqttBridge:
    """Publishes every unit's state and discovery, and executes commands, on one broker."""

    def __init__(
        self,
        settings: MqttSettings,
        units: Mapping[int, BridgedUnit],
        audit: AuditHook | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.base, settings.gateway_id, settings.discovery_prefix)
        self.units = dict(units)
        self.outbox = Outbox(settings.queue_size)
        self.stats = BridgeStats()
        self.audit_hook = audit  # gateway/security/audit.py plugs in here when it exists
        feeds = {
            u: UnitFeed(unit, u, self.topics, settings.min_interval_s)
            for u, unit in self.units.items()
        }
        self._sampler = Sampler(feeds, self.outbox)
        self._removers: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._commands: set[asyncio.Task[None]] = set()
        self._replies: set[asyncio.Task[None]] = set()  # refusals' results being published
        self._client: aiomqtt.Client | None = None

    @property
    def outbox_dropped(self) -> int:
        """Messages the full outbox held back (each sent later, with its newest value)."""
        return self.outbox.dropped

    @property
    def _client_name(self) -> str:
        return f"mqtt:{self.settings.host}"

    async def start(self) -> None:
        """Listen to every unit's link and run the broker session in the background."""
        for unit_id, unit in self.units.items():
            self._removers.append(unit.link.add_report_listener(self._dirty_hook(unit_id)))
            self._removers.append(unit.link.add_state_listener(self._state_hook(unit_id)))
            self._sampler.feeds[unit_id].set_online(unit.link.state is LinkState.READY)
            self._sampler.mark_all(unit_id)
        self._tasks = [
            asyncio.create_task(self._sampler.run(), name="mqtt-sampler"),
            asyncio.create_task(self._run(), name="mqtt-session"),
        ]
        _LOGGER.info(
            "mqtt: publishing to %s as %s (discovery under %s/)",
            self.settings.url,
            self.topics.root,
            self.settings.discovery_prefix,
        )

    async def stop(self) -> None:
        """Say ``offline`` (when connected) and close the session; safe to call twice."""
        for remove in self._removers:
            remove()
        self._removers.clear()
        client = self._client
        if client is not None:
            try:
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            except (aiomqtt.MqttError, TimeoutError) as err:
                _LOGGER.warning("mqtt: could not say offline: %s", err)
        tasks = [*self._tasks, *self._commands, *self._replies]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # -- the Modbus side's hooks: O(1), never blocking ------------------------------------
    def _dirty_hook(self, unit_id: int) -> Callable[[DpValue], None]:
        def mark(dp: DpValue) -> None:
            self._sampler.mark(unit_id, dp.dpid)

        return mark

    def _state_hook(self, unit_id: int) -> Callable[[LinkState], None]:
        def on_state(state: LinkState) -> None:
            self._sampler.feeds[unit_id].set_online(state is LinkState.READY)
            self._sampler.mark_all(unit_id)

        return on_state

    # -- broker sessions ------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self.settings.backoff_min_s
        while True:
            try:
                async with open_client(self.settings, self.topics) as client:
                    backoff = self.settings.backoff_min_s
                    await self._session(client)
            except aiomqtt.MqttError as err:
                _LOGGER.warning(
                    "mqtt: broker %s: %s; retrying in %.1f s", self.settings.url, err, backoff
                )
            finally:
                self._client = None
            raise_if_cancelled()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.settings.backoff_max_s)

    async def _session(self, client: aiomqtt.Client) -> None:
        self.stats.sessions += 1
        await client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        # retain-as-published: a retained command keeps its flag live too, and is refused
        await client.subscribe(self.topics.command_filter, options=_COMMAND_OPTIONS)
        await client.subscribe(self.topics.ha_status, qos=1)
        raise_if_cancelled()
        self._client = client
        _LOGGER.info("mqtt: connected to %s (session %d)", self.settings.url, self.stats.sessions)
        self._sampler.republish()
        await first_failure(self._send_loop(client), self._receive_loop(client))

    async def _send_loop(self, client: aiomqtt.Client) -> None:
        while True:
            message = await self.outbox.get()
            try:
                await client.publish(
                    message.topic, message.payload, qos=message.qos, retain=message.retain
                )
            except aiomqtt.MqttError:
                self.outbox.put(message)  # the next session sends it (or a newer value)
                raise
            self.stats.messages_sent += 1
            raise_if_cancelled()
            await asyncio.sleep(0)  # a QoS 0 publish may not suspend: let Modbus in

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            if topic == self.topics.ha_status:
                if message.payload == ONLINE.encode():
                    _LOGGER.info("mqtt: Home Assistant is online: discovery again")
                    self._sampler.announce()
                continue
            self._on_command(client, topic, message)

    def _on_command(self, client: aiomqtt.Client, topic: str, message: aiomqtt.Message) -> None:
        target = self.topics.parse_command(topic)
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if target is None or not payload:  # an empty payload clears a retained command
            return
        command = Command(
            target[0],
            target[1],
            payload,
            retained=message.retain,
            expiry_s=expiry_interval(message),
            waited_s=time.monotonic() - arrival_time(message),
        )
        if command.unit not in self.units:
            self._refuse(client, command, f"no unit {command.unit}")
        elif len(self._commands) >= _MAX_COMMANDS:
            self._refuse(client, command, f"too many commands in progress ({_MAX_COMMANDS})")
        else:
            self._spawn(self._commands, self._command(client, command))

    def _refuse(self, client: aiomqtt.Client, command: Command, reason: str) -> None:
        if len(self._replies) >= _MAX_REPLIES:  # a flood: not even a result for each
            _LOGGER.warning("mqtt: command on unit %d refused: %s", command.unit, reason)
            return
        outcome = refused_early(command, reason, self._client_name)
        self._spawn(self._replies, self._finish(client, outcome))

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _command(self, client: aiomqtt.Client, command: Command) -> None:
        unit = self.units[command.unit]  # its current map and backend (--map auto)
        outcome = await execute(
            command, unit.register_map, unit.cache, unit.backend, self._client_name
        )
        await self._finish(client, outcome)

    async def _finish(self, client: aiomqtt.Client, outcome: CommandOutcome) -> None:
        """Count, audit and publish the outcome of a command."""
        self.stats.commands += 1
        if outcome.result != OK:
            self.stats.commands_refused += 1
        if self.audit_hook is not None:
            self.audit_hook(outcome)
        result_topic = self.topics.result(outcome.unit, outcome.point)
        try:
            await client.publish(result_topic, outcome.result, qos=1, retain=False)
        except aiomqtt.MqttError as err:
            _LOGGER.warning("mqtt: result of %s not published: %s", result_topic, err)
