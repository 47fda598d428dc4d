"""The HTTP endpoint on the gateway's own event loop (aiohttp): metrics, health, API, console.

Every route is a GET: the console shows, it never switches anything. The page and its script
come from this package, and the Content-Security-Policy keeps the browser from loading
anything from elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.unit.backend import UnitBackend
from gateway.web.bad_requests import BadRequestLines
from gateway.web.frames import FrameHub, Subscription
from gateway.web.metrics import GatewayCollector, metrics_registry, render_metrics
from gateway.web.observe import ObservedBackend, WriteTimes
from gateway.web.options import ALL_INTERFACES, HttpListener
from gateway.web.views import WatchedUnit, health, register_table, unit_view

__all__ = ["WebConsole"]

_LOGGER = logging.getLogger(__name__)

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SSE_KEEPALIVE_S = 15.0  # a comment line now and then keeps proxies from closing the stream
SHUTDOWN_S = 2.0
_STATIC = {
    "index.html": "text/html",
    "console.js": "application/javascript",
    "console.css": "text/css",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class WebConsole:
    """The HTTP endpoint of one gateway: build it, wrap the backends, start, stop."""

    def __init__(self, listener: HttpListener, units: Mapping[int, WatchedUnit]) -> None:
        self.listener = listener
        self.units = units
        self.write_times = WriteTimes()
        self.observed: dict[int, ObservedBackend] = {}
        self.connections: Callable[[], Mapping[str, int]] = dict
        self.frames = FrameHub(units)
        collector = GatewayCollector(units, self.observed, self.write_times, self._connections)
        self._registry = metrics_registry(collector)
        self._runner: web.AppRunner | None = None
        self._bad_requests = BadRequestLines()

    def observe(self, unit_id: int, backend: UnitBackend) -> ObservedBackend:
        """The backend to serve Modbus with: ``backend``, counted for the metrics."""
        observed = ObservedBackend(backend, self.write_times)
        self.observed[unit_id] = observed
        return observed

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        addresses = self._runner.addresses if self._runner is not None else []
        return int(addresses[0][1]) if addresses else self.listener.port

    async def start(self) -> None:
        """Bind and serve; OSError if the port is taken."""
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        site = web.TCPSite(runner, self.listener.host, self.listener.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bad_requests.install()
        self.frames.start()
        host = f"[{self.listener.host}]" if ":" in self.listener.host else self.listener.host
        _LOGGER.info("HTTP console and /metrics on http://%s:%d/", host, self.port)
        if self.listener.host in ALL_INTERFACES:
            _LOGGER.warning(
                "HTTP listens on all interfaces (%s): anyone who reaches port %d sees every"
                " value and the MCU traffic",
                self.listener.host or "*",
                self.port,
            )

    async def stop(self) -> None:
        """End the frame streams, then close the server; safe to call twice."""
        self.frames.stop()
        self._bad_requests.remove()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _connections(self) -> Mapping[str, int]:
        return self.connections()

    def _app(self) -> web.Application:
        app = web.Application()
        app.on_response_prepare.append(_secure)
        app.router.add_get("/", self._static)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/units", self._units)
        app.router.add_get("/api/registers", self._registers)
        app.router.add_get("/api/frames", self._frames)
        return app

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        if name not in _STATIC:
            raise web.HTTPNotFound()
        body = importlib.resources.files(__package__).joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=_STATIC[name], charset="utf-8")

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = render_metrics(self._registry)
        return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})

    async def _healthz(self, _request: web.Request) -> web.Response:
        ok, body = health(self.units)
        return _json(body, 200 if ok else 503)

    async def _units(self, _request: web.Request) -> web.Response:
        views = [
            unit_view(unit_id, unit, self.observed.get(unit_id))
            for unit_id, unit in sorted(self.units.items())
        ]
        return _json({"units": views})

    async def _registers(self, _request: web.Request) -> web.Response:
        tables = {str(u): register_table(unit.register_map) for u, unit in self.units.items()}
        return _json(tables)

    async def _frames(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        client = self.frames.subscribe()
        try:
            await self._stream(client, response)
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            self.frames.unsubscribe(client)
        return response

    async def _stream(self, client: Subscription, response: web.StreamResponse) -> None:
        while not client.dropped:
            try:
                async with asyncio.timeout(SSE_KEEPALIVE_S):
                    event = await client.queue.get()
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if event is None or client.dropped:
                return
            await response.write(f"data: {self.frames.encode(event)}\n\n".encode())


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


async def _secure(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_HEADERS)
