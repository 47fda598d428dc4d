"""Unit routing and in-order replies, shared by the Modbus TCP and RTU transports.

Two safety rules live here because only the session sees them. A write that moves a breaker
motor and would have to wait behind other requests on its connection is answered 0x06 at once
and never sent (every other request keeps its place; its window runs from its arrival). A
write that moves a motor through an address that reaches more than one breaker or no breaker
by its id (RTU broadcast unit 0: ignored and counted; TCP unit 0 or 255: 0x01) is refused
unless ``allow_broadcast_switch`` is set. Reads through those aliases are answered. With more
than one unit, TCP unit 0 and 255 address no single unit: every write is refused (0x01), reads
get the unknown-unit answer. Each refusal is logged by the unit (``UnitBackend.refused``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping

from gateway.modbus.pdu import (
    Answer,
    UnitBackend,
    answer_pdu,
    exception_pdu,
    is_write,
    write_request,
    write_target,
)
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
        *,
        allow_broadcast_switch: bool = False,
    ) -> None:
        self._backends = dict(backends)
        self._unique = list(backends.values())
        self._identification = identification
        self._unknown = unknown_unit_exception
        self.tasks = tasks
        self.allow_broadcast_switch = allow_broadcast_switch
        self.closing = False  # shutting down: new writes are refused
        # Modbus TCP: 0 and 255 address "the device behind this IP" when it is unique; with
        # several units they address none of them: reads are an unknown unit, writes 0x01.
        tcp_aliases = set() if unknown_unit_exception is None else {0, 255} - set(backends)
        self._aliases = frozenset(tcp_aliases if len(self._unique) == 1 else ())
        self._ambiguous = frozenset(tcp_aliases if len(self._unique) > 1 else ())
        for alias in self._aliases:
            self._backends[alias] = self._unique[0]

    def answer(
        self, unit: int, pdu: bytes, client: str, arrived: float | None = None
    ) -> Answer | None:
        """The answer to a non-empty request PDU, or None for silence."""
        backend = self._backends.get(unit)
        if unit == 0 and self._unknown is None:
            return self._broadcast(pdu, client, arrived) if pdu[0] in _BROADCAST_FCS else None
        if unit in self._ambiguous and is_write(pdu):
            return self._refuse_ambiguous(unit, pdu, client)
        if backend is None:
            if self._unknown is None:
                return None
            return exception_pdu(pdu[0], self._unknown)
        refused = self._refusal(unit, backend, pdu, client)
        if refused is not None:
            backend.count_request(refused)
            return exception_pdu(pdu[0], refused)
        try:
            return answer_pdu(backend, pdu, client, self._identification, arrived)
        except Exception as err:  # a backend bug must not kill the transport
            _LOGGER.error("unit %d: request %s failed: %r", unit, pdu[:8].hex(" "), err)
            return exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)

    def _refusal(
        self, unit: int, backend: UnitBackend, pdu: bytes, client: str
    ) -> ExceptionCode | None:
        if self.closing and is_write(pdu):
            code = ExceptionCode.GATEWAY_PATH_UNAVAILABLE
            _refuse(backend, pdu, client, code, "the gateway is stopping")
            return code
        if unit in self._aliases and not self.allow_broadcast_switch and _moves(backend, pdu):
            code = ExceptionCode.ILLEGAL_FUNCTION
            why = f"broadcast (unit {unit}): motor writes need an address"
            _refuse(backend, pdu, client, code, why + "; or set allow_broadcast_switch")
            backend.count_broadcast_refused()
            return code
        return None

    def _refuse_ambiguous(self, unit: int, pdu: bytes, client: str) -> bytes:
        """A write to TCP unit 0/255 with several units: it cannot reach exactly one (0x01)."""
        code = ExceptionCode.ILLEGAL_FUNCTION
        why = f"unit {unit} reaches {len(self._unique)} units here: writes need an address"
        for backend in self._unique:
            _refuse(backend, pdu, client, code, why)
            if _moves(backend, pdu):
                backend.count_broadcast_refused()
        return exception_pdu(pdu[0], code)

    def refuse_queued_motor(self, unit: int, pdu: bytes, client: str, waiting: int) -> bytes | None:
        """The answer to a motor write that would wait behind ``waiting`` requests, else None.

        0x06 at once, and nothing is sent; a broadcast is ignored (the empty answer).
        """
        broadcast = unit == 0 and self._unknown is None
        backend = self._backends.get(unit)
        targets = self._unique if broadcast else [backend] if backend is not None else []
        if not any(_moves(b, pdu) for b in targets):
            return None
        why = f"busy: would wait behind {waiting} request(s) on this connection; never queued"
        if backend is None or broadcast:
            _LOGGER.warning("%s: broadcast write %s ignored: %s", client, pdu.hex(" "), why)
            return b""
        code = ExceptionCode.SERVER_DEVICE_BUSY
        _refuse(backend, pdu, client, code, why)
        backend.count_request(code)
        return exception_pdu(pdu[0], code)

    async def _broadcast(self, pdu: bytes, client: str, arrived: float | None) -> bytes:
        """RTU unit 0: run a write on every unit; the empty reply means "send nothing"."""
        if self.closing:
            return b""
        movers = [b for b in self._unique if _moves(b, pdu)]
        if movers and not self.allow_broadcast_switch:
            _LOGGER.warning(
                "%s: broadcast write %s ignored: it would switch %d breaker(s) at once; set"
                " allow_broadcast_switch to allow it",
                client,
                pdu.hex(" "),
                len(movers),
            )
            for backend in movers:
                backend.count_broadcast_refused()
            return b""
        answers = [answer_pdu(b, pdu, client, self._identification, arrived) for b in self._unique]
        await asyncio.gather(*(a for a in answers if not isinstance(a, bytes)))
        return b""


def _refuse(backend: UnitBackend, pdu: bytes, client: str, code: ExceptionCode, why: str) -> None:
    """The unit logs the refusal (as served it names the unit, its link and the points)."""
    request = write_request(pdu)
    if request is None:
        _LOGGER.warning("%s: write %s refused (0x%02X): %s", client, pdu.hex(" "), code, why)
    else:
        backend.refused(*request, client, code, why)


def _moves(backend: UnitBackend, pdu: bytes) -> bool:
    """Whether the write request ``pdu`` would operate a breaker motor of ``backend``."""
    target = write_target(pdu)
    return target is not None and backend.moves_motor(*target)


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
        self._backlog: deque[tuple[int, bytes, ReplyContext, float]] = deque()
        self._closed = False
        self._loop = asyncio.get_running_loop()

    @property
    def backlog(self) -> int:
        """Requests waiting behind a running write."""
        return len(self._backlog)

    @property
    def pending(self) -> bool:
        """A write is running or requests wait behind one."""
        return self._waiting is not None or bool(self._backlog)

    def submit(self, unit: int, pdu: bytes, context: ReplyContext) -> None:
        """Answer a request now, or after the write ahead of it has finished.

        Its arrival time goes with it: a write's window starts when its request arrives.
        """
        arrived = self._loop.time()
        if self._waiting is None:
            self._run(unit, pdu, context, arrived)
            return
        refusal = self._router.refuse_queued_motor(unit, pdu, self.client, 1 + self.backlog)
        if refusal is None:
            self._backlog.append((unit, pdu, context, arrived))
        elif refusal:
            self._send(refusal, context)

    def close(self) -> None:
        """Forget queued requests (the connection is gone); a running write still finishes."""
        self._closed = True
        self._backlog.clear()

    def _run(self, unit: int, pdu: bytes, context: ReplyContext, arrived: float) -> None:
        answer = self._router.answer(unit, pdu, self.client, arrived)
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
