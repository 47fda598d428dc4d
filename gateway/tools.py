"""The field tools' commands (simulate, discover, sniff) and the runner every command uses.

Each command contributes its options with an ``add_*`` function and runs with a ``cmd_*``
function; :mod:`gateway.cli` puts them in its table. SIGINT and SIGTERM end a command cleanly
at any moment: while it runs they set the ``stop`` event its work waits on; before and after
(imports, map loading) they end the process at once with 130 or 143, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TYPE_CHECKING

from gateway.config import parse_host_port
from gateway.errors import ConfigError
from gateway.regmap.yaml_read import compose_checked, read_text
from gateway.tuya.openers import link_problem
from gateway.twin import scenario
from gateway.twin.options import add_twin_arguments, twin_options_from_args

if TYPE_CHECKING:
    from gateway.twin.endpoints import McuPeer

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INVALID",
    "EXIT_OK",
    "EventLoop",
    "add_event_loop_option",
    "default_event_loop",
    "exit_on_signals",
    "load_scenario",
    "parse_listen",
    "parse_scenario",
    "run_until_signalled",
    "serve_peer",
]

_LOGGER = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now(signum: int, _frame: FrameType | None) -> None:
    os._exit(128 + signum)  # nothing is open yet (or any more): no cleanup, no traceback


def exit_on_signals() -> None:
    """Until a loop takes them over, SIGINT and SIGTERM end the process with 130 and 143."""
    for sig in _SIGNALS:
        signal.signal(sig, _exit_now)


class EventLoop(enum.StrEnum):
    """Which event loop ``run`` serves on (``--event-loop``)."""

    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


def default_event_loop() -> EventLoop:
    """uvloop on Linux when it is installed (it answers reads faster), else asyncio's own."""
    if sys.platform == "linux" and importlib.util.find_spec("uvloop") is not None:
        return EventLoop.UVLOOP
    return EventLoop.ASYNCIO


def add_event_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--event-loop",
        type=EventLoop,
        choices=tuple(EventLoop),
        default=default_event_loop(),
        help="the event loop to serve on (default: uvloop on Linux when installed)",
    )


def _loop_factory(event_loop: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if event_loop is EventLoop.UVLOOP:
        import uvloop

        return uvloop.new_event_loop
    return None


def run_until_signalled(
    work: Callable[[asyncio.Event], Awaitable[int]], event_loop: EventLoop = EventLoop.ASYNCIO
) -> int:
    """Run ``work(stop)`` on a fresh loop; SIGINT and SIGTERM set ``stop``."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        return await work(stop)

    try:
        with asyncio.Runner(loop_factory=_loop_factory(event_loop)) as loop_runner:
            return loop_runner.run(runner())
    finally:
        exit_on_signals()  # asyncio.run restored the defaults: a late signal is no traceback


def parse_listen(text: str) -> tuple[str, int] | None:
    """``tcp://HOST:PORT`` → (host, port); ``pty`` → None; ConfigError otherwise."""
    if text == "pty":
        return None
    if text.startswith("tcp://"):
        try:
            return parse_host_port(text.removeprefix("tcp://"))
        except ValueError:
            pass
    raise ConfigError([f"--listen: expected tcp://HOST:PORT or pty, got {text!r}"])


async def serve_peer(
    listen: tuple[str, int] | None, factory: Callable[[], McuPeer], stop: asyncio.Event
) -> int:
    """Serve an MCU peer on TCP or a new pty, print the ``--link`` URL for it, run until stop."""
    from gateway.twin import endpoints as simulator

    if listen is None:
        path = simulator.open_pty(factory())
        print(path, flush=True)
        try:
            await stop.wait()
        finally:
            simulator.close_pty(path)
        return EXIT_OK
    server = await simulator.serve_tcp(listen[0], listen[1], factory)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"socket://{host}:{port}", flush=True)
    _LOGGER.info("MCU peer listening on tcp://%s:%s", host, port)
    async with server:
        await stop.wait()
    return EXIT_OK


# -- simulate --------------------------------------------------------------------------------
def add_simulate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="tcp://127.0.0.1:6668", help="tcp://HOST:PORT or pty")
    add_twin_arguments(parser)
    scenario.add_cli_options(parser)


# The twin reads no files (it may not import regmap): the scenario is read here, with the
# maps' limits (size, nesting, aliases, no tags), and the twin checks the composed nodes.
def parse_scenario(text: str, filename: str = "<scenario>") -> tuple[scenario.Event, ...]:
    """A scenario's events by time; ConfigError with ``file:line`` for every problem."""
    return scenario.events_from_yaml(compose_checked(text, filename), filename)


def load_scenario(path: str) -> tuple[scenario.Event, ...]:
    return parse_scenario(read_text(path, "the scenario"), path)


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.twin.mcu import McuTwin

    options = twin_options_from_args(args)
    listen = parse_listen(args.listen)
    quick = scenario.quick_events(args)
    loaded = load_scenario(args.scenario) if args.scenario else ()
    events = tuple(sorted(loaded + quick, key=lambda e: e.at_s))

    async def work(stop: asyncio.Event) -> int:
        twin = McuTwin(options)  # one breaker for every connection: its state lives on
        scenario.Scenario(twin, events).start()
        return await serve_peer(listen, lambda: twin, stop)

    return run_until_signalled(work)


# -- discover, sniff -------------------------------------------------------------------------
def add_discover(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", required=True, help="MCU link URL")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--listen-s", type=float, default=10.0, metavar="S")
    parser.add_argument("--wait-s", type=float, default=15.0, metavar="S", help="for an answer")
    parser.add_argument("--output", metavar="FILE", help="write a draft map here")


def _check_link(url: str) -> None:
    """A link URL that can never open is exit 2 at once (``TCP://`` works like ``tcp://``)."""
    if problem := link_problem(url):
        raise ConfigError([f"--link: {problem}"])


def cmd_discover(args: argparse.Namespace) -> int:
    from gateway.discover import discover

    _check_link(args.link)
    return run_until_signalled(
        lambda stop: discover(
            args.link, args.baud, args.listen_s, args.output, stop, sys.stdout, args.wait_s
        )
    )


def add_sniff(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--link", help="act as the gateway on this link and print its frames")
    source.add_argument("--rx-mcu", metavar="DEVICE", help="UART tap on the MCU's TX line")
    source.add_argument("--file", metavar="CAPTURE", help="print a capture (JSON lines)")
    source.add_argument("--replay", metavar="CAPTURE", help="play a capture's MCU side")
    parser.add_argument("--rx-module", metavar="DEVICE", help="UART tap on the module's TX line")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--listen", default="pty", help="for --replay: tcp://HOST:PORT or pty")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")


def cmd_sniff(args: argparse.Namespace) -> int:
    from gateway import sniff

    if args.file:
        sniff.print_capture(args.file, sys.stdout)
        return EXIT_OK
    if args.replay:
        from gateway.twin.replay import ReplayPeer

        peer = ReplayPeer.from_file(args.replay)
        listen = parse_listen(args.listen)
        return run_until_signalled(lambda stop: serve_peer(listen, lambda: peer, stop))
    if args.link:
        _check_link(args.link)
    taps = {"rx": args.rx_mcu} if args.rx_mcu else {}
    if args.rx_module:
        taps["tx"] = args.rx_module

    async def work(stop: asyncio.Event) -> int:
        if args.link:
            job = sniff.sniff_link(args.link, args.baud, sys.stdout)
        else:
            job = sniff.sniff_passive(taps, args.baud, sys.stdout)
        await _until(job, stop, args.duration)
        return EXIT_OK

    return run_until_signalled(work)


async def _until(job: Awaitable[None], stop: asyncio.Event, duration: float | None) -> None:
    """Run ``job`` until it ends, ``stop`` is set, or ``duration`` seconds pass."""
    task = asyncio.ensure_future(job)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopper}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopper):
        pending.cancel()
    await asyncio.gather(task, stopper, return_exceptions=True)
    if task.done() and not task.cancelled():
        task.result()  # the job's own error, if it had one
