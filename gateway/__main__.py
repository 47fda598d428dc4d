"""``python -m gateway``: the same program as the ``tuya-modbus-gateway`` command."""

from __future__ import annotations

import os
import signal


def _exit_now(signum: int, _frame: object) -> None:
    os._exit(128 + signum)


# Before the imports: a SIGINT or SIGTERM while they run ends the process, not in a traceback.
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _exit_now)

from gateway.cli import main  # noqa: E402  (after the signal handlers, on purpose)

raise SystemExit(main())
