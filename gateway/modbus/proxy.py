"""UnitProxy: a served unit that hands every request to another; wrappers override a part."""

from __future__ import annotations

from gateway.modbus.pdu import UnitBackend
from gateway.modbus.tables import ExceptionCode, Table

__all__ = ["UnitProxy"]


class UnitProxy:
    """Forwards the whole :class:`UnitBackend` protocol to ``inner``."""

    def __init__(self, inner: UnitBackend) -> None:
        self.inner = inner

    @property
    def identification(self) -> dict[int, str]:
        return self.inner.identification

    @identification.setter
    def identification(self, value: dict[int, str]) -> None:
        self.inner.identification = value

    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        return self.inner.read(table, address, count)

    async def write(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        arrived: float | None = None,
    ) -> ExceptionCode | None:
        return await self.inner.write(table, address, values, client, arrived)

    def count_request(self, exception: ExceptionCode | None, function_code: int = 0) -> None:
        self.inner.count_request(exception, function_code)

    def moves_motor(self, table: Table, address: int, count: int) -> bool:
        return self.inner.moves_motor(table, address, count)

    def count_broadcast_refused(self) -> None:
        self.inner.count_broadcast_refused()

    def refused(
        self,
        table: Table,
        address: int,
        values: list[int],
        client: str,
        code: ExceptionCode,
        why: str,
    ) -> None:
        self.inner.refused(table, address, values, client, code, why)
