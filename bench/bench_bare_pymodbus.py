"""Bare pymodbus 3.16 SimDevice TCP server with static tables: the yardstick for the gateway.

Run as ``python bench/bench_bare_pymodbus.py PORT``; serves unit 1 on 127.0.0.1 with 1000 coils,
discrete inputs, holding and input registers (values from ``bit_value`` / ``register_value``).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

TABLE_SIZE = 1000
UNIT_ID = 1


def bit_value(table: int, address: int) -> bool:
    """Static value of a bit (table 0 = coils, 1 = discrete inputs)."""
    return (address * 7 + table) % 3 == 0


def register_value(table: int, address: int) -> int:
    """Static value of a register (table 2 = holding, 3 = input)."""
    return (address * 257 + table * 4099) & 0xFFFF


def build_device(unit_id: int = UNIT_ID) -> SimDevice:
    """Four separate blocks (coils, discrete inputs, holding, input) of TABLE_SIZE each."""
    bits = [
        [SimData(0, values=[bit_value(t, a) for a in range(TABLE_SIZE)], datatype=DataType.BITS)]
        for t in (0, 1)
    ]
    regs = [
        [
            SimData(
                0,
                values=[register_value(t, a) for a in range(TABLE_SIZE)],
                datatype=DataType.REGISTERS,
            )
        ]
        for t in (2, 3)
    ]
    return SimDevice(id=unit_id, simdata=(bits[0], bits[1], regs[0], regs[1]))


async def serve(port: int) -> None:
    """Serve until cancelled."""
    server = ModbusTcpServer(build_device(), address=("127.0.0.1", port))
    await server.serve_forever()


def main() -> None:
    """Entry point: ``bench_bare_pymodbus.py PORT``."""
    logging.basicConfig(level=logging.WARNING)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5021
    asyncio.run(serve(port))


if __name__ == "__main__":
    main()
