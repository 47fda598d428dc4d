"""``python -m gateway`` and the ``tuya-modbus-gateway`` command: signal-safe from the start.

The console script calls :func:`run` directly, so both ways in install the exit handlers before
the heavy imports (asyncio, aiohttp, pymodbus...) that a SIGINT could otherwise interrupt with
a traceback.
"""

from __future__ import annotations

import os
import signal


def _exit_now(signum: int, _frame: object) -> None:
    os._exit(128 + signum)


def run() -> int:
    """Install the exit handlers, then import and run the command line."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_now)
    from gateway.cli import main  # after the signal handlers, on purpose

    return main()


if __name__ == "__main__":
    raise SystemExit(run())
