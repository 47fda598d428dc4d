"""Unit routing and in-order replies, shared by the Modbus TCP and RTU transports."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping

from gateway.modbus.pdu import Answer, UnitBackend, answer_pdu, exception_pdu
from gateway.modbus.tables import ExceptionCode

__all__ = ["OrderedReplies", "Router"]

_LOGGER = logging.getLogger(__name__)

# (transaction id, unit id, function code) of the request a reply belongs to.
ReplyContext = tuple[int, int, int]
SendFn = Callable[[bytes, ReplyContext], None]
_BROADCAST_FCS = frozenset((5, 6, 15, 16))


class Router:
    """Finds the backend of a unit id and answers a PDU; ``None`` means stay silent.

    With ``unknown_unit_exception`` None (RTU) unknown units are silent and unit 0 is a
    broadcast: writes run on every unit and nothing is answered.
    """

    def __init__(
        self,
        backends: Mapping[int, UnitBackend],
        identification: dict[int, str],
        unknown_unit_exception: int | None,
        tasks: set[asyncio.Task[bytes]],
    ) -> None:
        self._backends = dict(backends)
        self._unique = list(backends.values())
        self._identification = identification
        self._unknown = unknown_unit_exception
        self.tasks = tasks
        if unknown_unit_exception is not None and len(self._backends) == 1:
            # Modbus TCP: 0 and 255 address "the device behind this IP" when it is unique.
            only = next(iter(self._backends.values()))
            self._backends.setdefault(0, only)
            self._backends.setdefault(255, only)

    def answer(self, unit: int, pdu: bytes, client: str) -> Answer | None:
        """The answer to a non-empty request PDU, or None for silence."""
        backend = self._backends.get(unit)
        if unit == 0 and self._unknown is None:
            return self._broadcast(pdu, client) if pdu[0] in _BROADCAST_FCS else None
        if backend is None:
            if self._unknown is None:
                return None
            return exception_pdu(pdu[0], self._unknown)
        try:
            return answer_pdu(backend, pdu, client, self._identification)
        except Exception as err:  # a backend bug must not kill the transport
            _LOGGER.error("unit %d: request %s failed: %r", unit, pdu[:8].hex(" "), err)
            return exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)

    async def _broadcast(self, pdu: bytes, client: str) -> bytes:
        """RTU unit 0: run a write on every unit; the empty reply means "send nothing"."""
        answers = [answer_pdu(b, pdu, client, self._identification) for b in self._unique]
        await asyncio.gather(*(a for a in answers if not isinstance(a, bytes)))
        return b""


class OrderedReplies:
    """Runs one connection's requests in order; a slow write holds back only its connection."""

    def __init__(
        self,
        router: Router,
        client: str,
        send: SendFn,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        self._router = router
        self._on_drained = on_drained
        self.client = client
        self._send = send
        self._tasks = router.tasks
        self._waiting: tuple[asyncio.Task[bytes], ReplyContext] | None = None
        self._backlog: deque[tuple[int, bytes, ReplyContext]] = deque()
        self._closed = False

    @property
    def backlog(self) -> int:
        """Requests waiting behind a running write."""
        return len(self._backlog)

    @property
    def pending(self) -> bool:
        """A write is running or requests wait behind one."""
        return self._waiting is not None or bool(self._backlog)

    def submit(self, unit: int, pdu: bytes, context: ReplyContext) -> None:
        """Answer a request now, or after the write ahead of it has finished."""
        if self._waiting is not None:
            self._backlog.append((unit, pdu, context))
        else:
            self._run(unit, pdu, context)

    def close(self) -> None:
        """Forget queued requests (the connection is gone); a running write still finishes."""
        self._closed = True
        self._backlog.clear()

    def _run(self, unit: int, pdu: bytes, context: ReplyContext) -> None:
        answer = self._router.answer(unit, pdu, self.client)
        if answer is None:
            return
        if isinstance(answer, bytes):
            if answer:
                self._send(answer, context)
            return
        task = asyncio.ensure_future(answer)
        self._tasks.add(task)
        self._waiting = (task, context)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[bytes]) -> None:
        self._tasks.discard(task)
        waiting, self._waiting = self._waiting, None
        reply = _task_reply(task, waiting[1][2] if waiting else 0)
        if self._closed or waiting is None:
            return
        if reply:
            self._send(reply, waiting[1])
        while self._backlog and self._waiting is None:
            self._run(*self._backlog.popleft())
        if not self._backlog and self._on_drained is not None:
            self._on_drained()


def _task_reply(task: asyncio.Task[bytes], function_code: int) -> bytes | None:
    if task.cancelled():
        return None
    if (err := task.exception()) is not None:
        _LOGGER.error("write failed: %r", err)
        return exception_pdu(function_code, ExceptionCode.SERVER_DEVICE_FAILURE)
    return task.result()
