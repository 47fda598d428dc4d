"""The gateway's small persistent state (lifetime energy per unit), in one SQLite file.

The file is opened by :meth:`StateStore.open` (the service's start) or on first use.

Each save is one transaction: a process killed mid-write leaves the previous row or the new
one, never half of either. ``synchronous=FULL`` makes a committed save survive a power cut too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
from fractions import Fraction
from pathlib import Path

from gateway.unit.energy import EnergyState

__all__ = ["STATE_FILE", "StateStore", "add_state_options", "default_state_dir", "state_dir_for"]

_LOGGER = logging.getLogger(__name__)
STATE_FILE = "state.sqlite3"
_APP = "tuya-modbus-gateway"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS energy ("
    " unit_key TEXT PRIMARY KEY, lifetime TEXT NOT NULL, raw TEXT NOT NULL, at REAL NOT NULL)"
)


def add_state_options(parser: argparse.ArgumentParser) -> None:
    """``run --state-dir``: where the lifetime energy is kept."""
    parser.add_argument("--state-dir", help="lifetime energy store (default: the state dir)")


def state_dir_for(option: str | None, configured: str | None) -> str:
    """The state dir: ``--state-dir``, else gateway.yaml's, else the platform's."""
    return option or configured or default_state_dir()


def default_state_dir() -> str:
    """systemd's ``$STATE_DIRECTORY``, else ``$XDG_STATE_HOME/tuya-modbus-gateway``, else
    ``~/.local/state/tuya-modbus-gateway``.

    Under the shipped unit (``DynamicUser``, ``ProtectSystem=strict``) the home directory is
    read-only: ``StateDirectory=`` is the one writable place systemd gives the service.
    """
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return systemd
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(base, _APP)


class StateStore:
    """Rows keyed by unit; ``directory`` None keeps them in memory (nothing survives)."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.path = ":memory:" if directory is None else os.path.join(directory, STATE_FILE)
        self._connection: sqlite3.Connection | None = None

    def open(self) -> None:
        """Create the directory and the file if needed (OSError, sqlite3.Error if it cannot)."""
        if self._connection is not None:
            return
        if self.directory is not None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(_SCHEMA)
        self._connection = db
        _LOGGER.debug("state store %s", self.path)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self.open()
        assert self._connection is not None
        return self._connection

    def load_energy(self, key: str) -> EnergyState | None:
        row = self._db.execute(
            "SELECT lifetime, raw, at FROM energy WHERE unit_key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return EnergyState(Fraction(row[0]), Fraction(row[1]), float(row[2]))

    def save_energy(self, key: str, state: EnergyState) -> None:
        with self._db:  # one transaction: BEGIN ... COMMIT
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO energy (unit_key, lifetime, raw, at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (unit_key) DO UPDATE SET"
                " lifetime = excluded.lifetime, raw = excluded.raw, at = excluded.at",
                (key, str(state.lifetime), str(state.raw), state.at),
            )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
