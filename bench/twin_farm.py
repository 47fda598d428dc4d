"""Many MCU twins in one process, each on its own TCP port, as a rack of UART bridges would be.

Run as ``python bench/twin_farm.py FIRST_PORT COUNT [--report-interval S]``: twin ``i`` listens
on 127.0.0.1:FIRST_PORT+i, one breaker per port, and a gateway reaches it as
``socket://127.0.0.1:PORT``. ``tuya-modbus-gateway simulate`` serves one twin per process;
this puts dozens in one, so a 247-link bench does not need 247 processes.
"""

from __future__ import annotations

import argparse
import asyncio

from gateway.twin.endpoints import serve_tcp
from gateway.twin.mcu import McuTwin
from gateway.twin.options import TwinOptions


async def serve(first_port: int, count: int, report_interval_s: float) -> None:
    """Serve ``count`` twins until cancelled."""
    servers = []
    for index in range(count):
        options = TwinOptions(seed=first_port + index, report_interval_s=report_interval_s)
        twin = McuTwin(options)
        servers.append(await serve_tcp("127.0.0.1", first_port + index, lambda t=twin: t))
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("first_port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--report-interval", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(serve(args.first_port, args.count, args.report_interval))


if __name__ == "__main__":
    main()
