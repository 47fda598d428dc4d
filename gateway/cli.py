"""Command line: run | simulate | check | docs | schema | discover | sniff.

Exit status: 0 success, 2 invalid input (a map, a config file or an option), 1 other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.config import (
    DeviceConfig,
    GatewayConfig,
    WritePolicy,
    load_config,
    parse_host_port,
)
from gateway.errors import ConfigError, GatewayError
from gateway.modbus.server import RtuListener, TcpListener
from gateway.mqtt import add_cli_options as add_mqtt_options
from gateway.mqtt import settings_from_args as mqtt_from_args
from gateway.twin.families import VARIANTS

if TYPE_CHECKING:
    from gateway.twin.endpoints import McuPeer

__all__ = ["build_parser", "main", "parse_listen", "run_until_signalled"]

_LOGGER = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
DEFAULT_MAP = "register_map.yaml"
DEFAULT_TCP = "127.0.0.1:5020"

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tuya-modbus-gateway`` and ``python -m gateway``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    command: Command = args.command
    try:
        return command(args)
    except ConfigError as err:
        for line in err.errors:
            print(line, file=sys.stderr)
        return EXIT_INVALID
    except (GatewayError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def run_until_signalled(work: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``work(stop)`` on a fresh loop; SIGINT and SIGTERM set ``stop``."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await work(stop)

    return asyncio.run(runner())


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


# -- run -------------------------------------------------------------------------------------
def _add_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", help="MCU link: /dev/ttyUSB0, socket://h:p, sim://[variant]")
    parser.add_argument("--map", help=f"register map (default {DEFAULT_MAP})")
    parser.add_argument("--unit", type=int, help="Modbus unit id (default 1)")
    parser.add_argument("--tcp", help=f"Modbus TCP HOST:PORT, or 'off' (default {DEFAULT_TCP})")
    parser.add_argument("--rtu", metavar="DEVICE", help="Modbus RTU serial port")
    parser.add_argument("--rtu-baud", type=int, default=9600)
    parser.add_argument("--rtu-parity", choices=("N", "E", "O"), default="N")
    parser.add_argument("--rtu-stopbits", type=int, choices=(1, 2), default=1)
    parser.add_argument("--config", help="gateway.yaml with listeners and several devices")
    parser.add_argument("--capture", metavar="FILE", help="record TuyaMCU traffic (JSON lines)")
    parser.add_argument("--read-only", action="store_true", help="reject every Modbus write")
    add_mqtt_options(parser)


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The gateway configuration from ``--config`` or from the single-device flags."""
    if args.config:
        clash = [f"--{n}" for n in ("link", "map", "unit", "tcp", "rtu") if getattr(args, n)]
        if clash:
            raise ConfigError([f"{', '.join(clash)}: not allowed with --config"])
        config = load_config(args.config)
        if args.read_only:
            policy = WritePolicy(read_only=True, switch_interval_s=config.policy.switch_interval_s)
            config = dataclasses.replace(config, policy=policy)
        return config
    if not args.link:
        raise ConfigError(["run: --link URL (or --config FILE) is required"])
    tcp: TcpListener | None = None
    if (args.tcp or DEFAULT_TCP) != "off":
        try:
            host, port = parse_host_port(args.tcp or DEFAULT_TCP)
        except ValueError as err:
            raise ConfigError([f"--tcp: expected HOST:PORT, got {args.tcp!r} ({err})"]) from None
        tcp = TcpListener(host=host, port=port)
    rtu = None
    if args.rtu:
        rtu = RtuListener(args.rtu, args.rtu_baud, args.rtu_parity, args.rtu_stopbits)
    if tcp is None and rtu is None:
        raise ConfigError(["run: --tcp off needs --rtu DEVICE"])
    device = DeviceConfig(
        unit=1 if args.unit is None else args.unit,
        link=args.link,
        map_path=args.map or DEFAULT_MAP,
        capture=args.capture,
    )
    if not 1 <= device.unit <= 247:
        raise ConfigError([f"--unit: expected 1..247, got {device.unit}"])
    return GatewayConfig((device,), tcp, rtu, WritePolicy(read_only=args.read_only))


def _cmd_run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    config = dataclasses.replace(config, mqtt=mqtt_from_args(args, config.mqtt))
    from gateway.service import GatewayService

    service = GatewayService(config)  # loads every map: ConfigError here, before anything runs

    async def work(stop: asyncio.Event) -> int:
        await service.start()
        try:
            await stop.wait()
        finally:
            await service.stop()
        return EXIT_OK

    return run_until_signalled(work)


# -- simulate --------------------------------------------------------------------------------
def _add_simulate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="tcp://127.0.0.1:6668", help="tcp://HOST:PORT or pty")
    parser.add_argument("--variant", default="family_a", choices=sorted(VARIANTS))
    parser.add_argument("--product-key", help="product key the twin reports")
    parser.add_argument("--load", type=float, default=1.0, metavar="A", help="load current, A")
    parser.add_argument("--voltage", type=float, default=230.0, metavar="V", help="mains, V")
    parser.add_argument("--report-interval", type=float, default=5.0, metavar="S")
    parser.add_argument("--motor-time", type=float, default=0.8, metavar="S")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-wifi-gate", action="store_true", help="accept DP commands before WiFi state 4"
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--garbage", action="store_true", help="noise bytes before each frame")
    faults.add_argument("--bad-checksum", type=float, default=0.0, metavar="P")
    faults.add_argument("--drop-replies", type=float, default=0.0, metavar="P")
    faults.add_argument("--delay", type=float, default=0.0, metavar="S")
    faults.add_argument("--split-bytes", action="store_true", help="one byte per write")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.twin.endpoints import TwinOptions, twin_from_options

    options = TwinOptions(
        variant=args.variant,
        product_key=args.product_key,
        seed=args.seed,
        report_interval_s=args.report_interval,
        motor_time_s=args.motor_time,
        require_wifi_state=not args.no_wifi_gate,
        voltage_v=args.voltage,
        current_a=args.load,
        garbage=args.garbage,
        bad_checksum=args.bad_checksum,
        drop_replies=args.drop_replies,
        delay_s=args.delay,
        split_bytes=args.split_bytes,
    )
    listen = parse_listen(args.listen)

    async def work(stop: asyncio.Event) -> int:
        twin = twin_from_options(options)  # one breaker for every connection: its state lives on
        return await serve_peer(listen, lambda: twin, stop)

    return run_until_signalled(work)


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


# -- check, docs, schema ---------------------------------------------------------------------
def _add_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("maps", nargs="+", metavar="MAP")


def _cmd_check(args: argparse.Namespace) -> int:
    from gateway.regmap.load import load_map

    status = EXIT_OK
    for path in args.maps:
        try:
            load_map(path)
        except ConfigError as err:
            status = EXIT_INVALID
            for line in err.errors:
                print(line)
        else:
            print(f"{path}: ok")
    return status


def _add_docs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", metavar="MAP")
    parser.add_argument("--format", choices=("md", "csv"), default="md")


def _cmd_docs(args: argparse.Namespace) -> int:
    from gateway.regmap.docs import render_csv, render_markdown
    from gateway.regmap.load import load_map

    register_map = load_map(args.map)
    render = render_csv if args.format == "csv" else render_markdown
    sys.stdout.write(render(register_map))
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from gateway.regmap.load import map_json_schema

    print(json.dumps(map_json_schema(), indent=2, sort_keys=False))
    return EXIT_OK


# -- discover, sniff -------------------------------------------------------------------------
def _add_discover(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", required=True, help="MCU link URL")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--listen-s", type=float, default=10.0, metavar="S")
    parser.add_argument("--output", metavar="FILE", help="write a draft map here")


def _cmd_discover(args: argparse.Namespace) -> int:
    from gateway.discover import discover

    return run_until_signalled(
        lambda stop: discover(args.link, args.baud, args.listen_s, args.output, stop, sys.stdout)
    )


def _add_sniff(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--link", help="act as the gateway on this link and print its frames")
    source.add_argument("--rx-mcu", metavar="DEVICE", help="UART tap on the MCU's TX line")
    source.add_argument("--file", metavar="CAPTURE", help="print a capture (JSON lines)")
    source.add_argument("--replay", metavar="CAPTURE", help="play a capture's MCU side")
    parser.add_argument("--rx-module", metavar="DEVICE", help="UART tap on the module's TX line")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--listen", default="pty", help="for --replay: tcp://HOST:PORT or pty")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")


def _cmd_sniff(args: argparse.Namespace) -> int:
    from gateway import sniff

    if args.file:
        sniff.print_capture(args.file, sys.stdout)
        return EXIT_OK
    if args.replay:
        peer = sniff.ReplayPeer.from_file(args.replay)
        listen = parse_listen(args.listen)
        return run_until_signalled(lambda stop: serve_peer(listen, lambda: peer, stop))
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


_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None] | None, Command]] = {
    "run": ("serve breakers over Modbus TCP/RTU", _add_run, _cmd_run),
    "simulate": ("run the MCU twin on TCP or a pty", _add_simulate, _cmd_simulate),
    "check": ("validate register maps", _add_check, _cmd_check),
    "docs": ("print a map's register table", _add_docs, _cmd_docs),
    "schema": ("print the map format's JSON Schema", None, _cmd_schema),
    "discover": ("list an unknown breaker's datapoints", _add_discover, _cmd_discover),
    "sniff": ("decode TuyaMCU traffic", _add_sniff, _cmd_sniff),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging threshold (default INFO)",
    )
    parser = argparse.ArgumentParser(
        prog="tuya-modbus-gateway",
        description="Serve a TuyaMCU smart breaker as a Modbus TCP/RTU meter.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for name, (help_text, add_options, command) in _COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        if add_options is not None:
            add_options(child)
        child.set_defaults(command=command)
    return parser
