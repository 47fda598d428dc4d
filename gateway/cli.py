"""Command line: run | simulate | check | docs | schema | export | discover | sniff | maps.

Exit status: 0 success, 2 invalid input (a map, a config file, a link URL or an option), 1
other failure (a port that cannot be opened or bound), 130 or 143 when SIGINT or SIGTERM
arrives before the command's work runs. A bad file never exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import termios
from collections.abc import Callable, Sequence

from gateway import __version__, logs
from gateway.config import add_run_options, config_from_args
from gateway.errors import ConfigError, GatewayError
from gateway.mqtt import add_cli_options as add_mqtt_options
from gateway.regmap.catalog import maps_command
from gateway.regmap.export import add_export_options, cmd_export
from gateway.tools import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    add_discover,
    add_event_loop_option,
    add_simulate,
    add_sniff,
    cmd_discover,
    cmd_simulate,
    cmd_sniff,
    exit_on_signals,
    run_until_signalled,
)
from gateway.unit.state_store import add_state_options, state_dir_for
from gateway.web.options import add_cli_options as add_http_options

__all__ = ["build_parser", "main"]

_LOGGER = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace], int]
AddOptions = Callable[[argparse.ArgumentParser], None]

# Each feature adds its ``run`` options from its own package: one line here per feature.
RUN_OPTIONS: tuple[AddOptions, ...] = (
    add_run_options,
    add_http_options,
    add_state_options,
    add_mqtt_options,
    add_event_loop_option,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tuya-modbus-gateway`` and ``python -m gateway``."""
    exit_on_signals()
    args = build_parser().parse_args(argv)
    logs.setup(getattr(args, "log_level", "INFO"), getattr(args, "log_format", "text"))
    command: Command = args.command
    try:
        return command(args)
    except ConfigError as err:
        for line in err.errors:
            print(line, file=sys.stderr)
        return EXIT_INVALID
    except (GatewayError, OSError, termios.error) as err:  # a port that refuses its settings
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _add_run(parser: argparse.ArgumentParser) -> None:
    for add_options in RUN_OPTIONS:
        add_options(parser)


def _cmd_run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    config = dataclasses.replace(config, state_dir=state_dir_for(args.state_dir, config.state_dir))
    from gateway.service import GatewayService

    service = GatewayService(config)  # loads every map: ConfigError here, before anything runs

    async def work(stop: asyncio.Event) -> int:
        await service.start()
        try:
            await stop.wait()
        finally:
            await service.stop()
        return EXIT_OK

    return run_until_signalled(work, args.event_loop)


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


_COMMANDS: dict[str, tuple[str, AddOptions | None, Command]] = {
    "run": ("serve breakers over Modbus TCP/RTU", _add_run, _cmd_run),
    "simulate": ("run the MCU twin on TCP or a pty", add_simulate, cmd_simulate),
    "check": ("validate register maps", _add_check, _cmd_check),
    "docs": ("print a map's register table", _add_docs, _cmd_docs),
    "schema": ("print the map format's JSON Schema", None, _cmd_schema),
    "export": ("write client configs from a map", add_export_options, cmd_export),
    "discover": ("list an unknown breaker's datapoints", add_discover, cmd_discover),
    "sniff": ("decode TuyaMCU traffic", add_sniff, cmd_sniff),
    "maps": ("list the shipped maps (--map NAME)", None, maps_command),
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
    logs.add_cli_options(common)
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
