"""The audit log: one JSON line per accepted or refused write, from Modbus or any other door.

``AuditLog.record(AuditEvent(...))`` never blocks: the line goes to a bounded queue and a
writer thread appends it with ``write()`` on an ``O_APPEND`` descriptor. A process killed in
the middle of that ``write()`` (or a power loss) can still leave part of a line: opening the
log again cuts that tail off and records it, quoted, in a ``torn line recovered`` event, so
the file holds whole JSON lines only. The file rotates to ``FILE.1`` .. ``FILE.<backups>``
when the next line would take it past ``max_bytes``.

Other doors (MQTT, HTTP) log into the same file through the same object: build an
``AuditEvent`` with their own ``source`` and call ``record``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import queue
import threading
from typing import Any

__all__ = ["AuditEvent", "AuditLog"]

_LOGGER = logging.getLogger(__name__)
MAX_QUEUED = 10_000  # lines waiting for a stuck disk before new ones are dropped (and counted)
TAIL_SEARCH = 1 << 20  # how far back from the end a torn line's start is looked for


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEvent:
    """One write as audited; ``result`` is "ok" or the refusal (e.g. "exception 0x01")."""

    source: str  # "modbus/tcp", "modbus/tls", "mqtt", ...
    client: str
    unit: int | None
    point: str
    old: object
    new: object
    result: str
    confirm_ms: float | None = None
    subject: str | None = None
    role: str | None = None
    detail: str | None = None

    def line(self, when: datetime.datetime | None = None) -> str:
        """The JSON line, with the time first."""
        stamp = (when or datetime.datetime.now(datetime.UTC)).isoformat(timespec="milliseconds")
        fields: dict[str, Any] = {"time": stamp}
        fields.update((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return json.dumps(fields, default=str, separators=(",", ":")) + "\n"


class AuditLog:
    """Appends AuditEvents to a file from a writer thread."""

    def __init__(self, path: str, max_bytes: int = 10_000_000, backups: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = 0
        self._queue: queue.Queue[str | None] = queue.Queue(MAX_QUEUED)
        self._fd = self._open()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, event: AuditEvent) -> None:
        """Queue one event; never blocks (a full queue drops it and counts)."""
        try:
            self._queue.put_nowait(event.line())
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the file."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        os.close(self._fd)

    def _open(self) -> int:
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as err:
            why = f"cannot open the audit log (--audit): {err.strerror}"
            raise OSError(err.errno, why, self.path) from None
        torn = _cut_torn_tail(self.path)
        if torn:
            note = AuditEvent("audit", "-", None, "-", None, None, "torn line recovered")
            _write_all(fd, dataclasses.replace(note, detail=torn.decode("utf-8", "replace")))
        return fd

    def _run(self) -> None:
        while (line := self._queue.get()) is not None:
            data = line.encode("utf-8")
            try:
                if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
                    self._rotate()
                _write_all(self._fd, data)
            except OSError as err:
                _LOGGER.error("audit log %s: %s", self.path, err)

    def _rotate(self) -> None:
        os.close(self._fd)
        for index in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        if self.backups:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self._fd = self._open()


def _write_all(fd: int, data: bytes | AuditEvent) -> None:
    """Write everything (``write()`` may write less when a signal arrives)."""
    view = memoryview(data.line().encode("utf-8") if isinstance(data, AuditEvent) else data)
    while view:
        view = view[os.write(fd, view) :]


def _cut_torn_tail(path: str) -> bytes:
    """Remove and return the bytes after the file's last newline."""
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_SEARCH)
        handle.seek(start)
        chunk = handle.read()
        cut = start + chunk.rfind(b"\n") + 1 if b"\n" in chunk else start
        torn = chunk[cut - start :]
        if torn:
            handle.truncate(cut)
        return torn
