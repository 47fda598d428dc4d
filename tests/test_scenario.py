"""simulate scenarios: timed events on the twin's clock, and the README's trip seen by a PLC."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from gateway.errors import ConfigError
from gateway.tools import parse_scenario
from gateway.twin.families import Protection
from gateway.twin.mcu import McuTwin
from gateway.twin.options import TwinOptions, parse_sim_url
from gateway.twin.scenario import Action, Event, Scenario

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 30.0
FAULT_OVER_CURRENT = 8  # discrete input = fault bit (register_map.yaml)
FAULT_LEAKAGE = 3


def test_a_scenario_parses_every_action_in_time_order() -> None:
    events = parse_scenario(
        "events:\n"
        "  - {at: 9, reboot: true}\n"
        "  - {at: 1, load: 12.5}\n"
        "  - {at: 2, voltage: 190, for: 3}\n"
        "  - {at: 3, leakage: 25}\n"
        "  - {at: 4, trip: over_current}\n"
        "  - {at: 5, lever: off}\n"
        "  - {at: 6, line: silent, for: 1}\n"
        "  - {at: 7, temperature: 80}\n"
    )
    assert [e.at_s for e in events] == [1, 2, 3, 4, 5, 6, 7, 9]
    assert events[1] == Event(2.0, Action.VOLTAGE, 190.0, 3.0)
    assert events[3].value == "over_current"
    assert events[4].value is False


def test_every_bad_event_is_reported_with_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(
            "events:\n"
            "  - {at: 1, lod: 3}\n"
            "  - {at: 2, trip: overcurrent}\n"
            "  - {at: -1, reboot: true}\n"
            "  - {at: 4, load: 3, voltage: 200}\n"
            "  - {at: 5, line: noisy}\n",
            "s.yaml",
        )
    errors = caught.value.errors
    assert errors[0].startswith("s.yaml:2: events[0]: unknown action 'lod'")
    assert errors[1].startswith("s.yaml:3: events[1]: trip: unknown protection 'overcurrent'")
    assert errors[2].startswith("s.yaml:4: events[2]: at:")
    assert errors[3].startswith("s.yaml:5: events[3]: expected exactly one action")
    assert errors[4].startswith("s.yaml:6: events[4]: line:")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("{at: .nan, reboot: true}", "at: expected a finite number, got nan"),
        ("{at: .inf, reboot: true}", "at: expected a finite number, got inf"),
        ("{at: 1, load: .inf}", "load: expected a finite number, got inf"),
        ("{at: 1, voltage: -.inf}", "voltage: expected a finite number, got -inf"),
        ("{at: 1, leakage: 5, for: .nan}", "for: expected a finite number, got nan"),
        ("{at: 1, load: 5000}", "load: expected a number >= 0 and <= 1000, got 5000"),
        ("{at: 1, line: silent, for: 0}", "for: expected a number > 0 and <="),
        ("{at: 1.0e+300, reboot: true}", "at: expected a number >= 0 and <= 2.592e+06"),
        ("{at: 2001-01-01, reboot: true}", "at: expected a finite number, got datetime"),
    ],
)
def test_every_number_is_finite_and_in_range(event: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(f"events:\n  - {{at: 0, reboot: true}}\n  - {event}\n", "s.yaml")
    assert caught.value.errors[0].startswith(f"s.yaml:3: events[1]: {expected}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("events:\n  - {at: 1, load: !foo 1}\n", "s.yaml:2: <top>: tags are not allowed"),
        ("events: !!python/object:os.system [ls]\n", "s.yaml:1: <top>: tags are not allowed"),
        ("events:\n" + "  " + "[" * 60 + "]" * 60 + "\n", "s.yaml:2: <top>: nested deeper"),
        (
            "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
                for i in range(6)
            ),
            "<top>: more than 100000 nodes",
        ),
        ("events: [\n", "s.yaml:2: <top>: invalid YAML"),
        ("events: 3\n", "s.yaml:1: <top>: expected a mapping with an 'events' list"),
    ],
)
def test_the_file_is_read_with_the_maps_limits(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(text, "s.yaml")
    assert expected in caught.value.errors[0], caught.value.errors


def _simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "simulate", "--listen", "tcp://127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        # a loader that reads /dev/zero whole dies of this limit, not the shared machine
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)),
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("events:\n  - {at: 1, load: !foo 1}\n", ":2: <top>: tags are not allowed"),
        ("events:\n  - {at: .nan, trip: over_current}\n", ":2: events[0]: at: expected a finite"),
        ("events:\n  - {at: 1, load: .inf}\n", ":2: events[0]: load: expected a finite"),
        ("big", ":1: <top>: the scenario has 2097152 bytes, more than the limit"),
        ("/dev/zero", ":1: <top>: the scenario is not a regular file"),
    ],
    ids=["tag", "nan", "inf", "2 MB", "/dev/zero"],
)
def test_simulate_refuses_a_bad_scenario_with_file_line_and_exit_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("#" * (2 << 20) if content == "big" else content)
    name = content if content == "/dev/zero" else str(path)
    result = _simulate("--scenario", name)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(name + expected), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--trip", "over_current", "--at", "nan"], "argument --at: expected a finite number"),
        (["--trip", "over_current", "--at", "-1"], "argument --at: expected a finite number >= 0"),
        (["--trip", "over_current", "--at", "inf"], "argument --at: expected a finite number"),
        (["--load", "nan"], "argument --load: expected a finite number >= 0, got 'nan'"),
        (["--bad-checksum", "2"], "argument --bad-checksum: expected a probability from 0 to 1"),
        (["--drop-replies", "-0.1"], "argument --drop-replies: expected a probability"),
        (["--at", "5"], "--at S says when --trip fires: give --trip too"),
    ],
)
def test_simulate_refuses_bad_quick_flags_with_one_clear_line(
    flags: list[str], expected: str
) -> None:
    result = _simulate(*flags)
    assert result.returncode == 2, result.stderr
    # argparse's usage comes first, indented when long; then the one line that says why
    lines = result.stderr.splitlines()
    errors = [line for line in lines if not line.startswith(("usage:", " "))]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]


def test_a_sim_url_takes_finite_numbers_only() -> None:
    with pytest.raises(ConfigError, match="option bad_checksum: expected a finite number"):
        parse_sim_url("sim://?bad_checksum=nan")
    assert parse_sim_url("sim://?current=2.5").current_a == 2.5


def test_a_trip_the_variant_cannot_do_is_refused_before_anything_runs() -> None:
    twin = McuTwin(TwinOptions("family_a"))
    with pytest.raises(ConfigError, match="no over_temperature protection"):
        Scenario(twin, (Event(1, Action.TRIP, Protection.OVER_TEMPERATURE.value),))


async def test_events_play_on_the_twins_clock_and_for_restores() -> None:
    twin = McuTwin(TwinOptions("family_a", noise=0))
    boots = twin.boots
    events = parse_scenario(
        "events:\n"
        "  - {at: 0, voltage: 190, for: 0.2}\n"
        "  - {at: 0, line: silent, for: 0.2}\n"
        "  - {at: 0, load: 20}\n"
        "  - {at: 0.05, trip: leakage}\n"
        "  - {at: 0.25, reboot: true}\n"
    )
    scenario = Scenario(twin, events)
    scenario.start()
    await asyncio.sleep(0.15)
    assert twin.voltage_v == pytest.approx(190)
    assert twin.faults.silent
    assert twin.current_a == pytest.approx(20)
    assert twin.fault_bits & (1 << FAULT_LEAKAGE)
    assert not twin.switch_on
    await asyncio.sleep(0.2)
    assert twin.boots == boots + 1
    assert twin.voltage_v == pytest.approx(230)
    assert not twin.faults.silent
    assert len(scenario.played) == 5
    scenario.stop()


# -- end to end: simulate + run + a PLC (pymodbus) --------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT_S)


def _plc_sees_the_trip(simulate_args: list[str], fault_input: int) -> None:
    with _process("simulate", "--listen", "tcp://127.0.0.1:0", *simulate_args) as twin:
        assert twin.stdout is not None
        link = twin.stdout.readline().strip()
        assert link.startswith("socket://"), link
        port = _free_port()
        with _process("run", "--link", link, "--tcp", f"127.0.0.1:{port}"):
            client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
            deadline = time.monotonic() + TIMEOUT_S
            seen: tuple[bool, bool] | None = None
            while seen != (True, False):
                assert time.monotonic() < deadline, f"the PLC never saw the trip: {seen}"
                time.sleep(0.2)
                if not client.connect():
                    continue
                faults = client.read_discrete_inputs(0, count=18, device_id=1)
                switch = client.read_coils(0, count=1, device_id=1)
                if not faults.isError() and not switch.isError():
                    seen = (faults.bits[fault_input], switch.bits[0])
            client.close()


def test_the_readme_scenario_makes_a_plc_see_a_trip(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- scenario:plc_trip -->\n```yaml\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    scenario = tmp_path / "plc_trip.yaml"
    scenario.write_text(block.group(1))
    assert any(e.action is Action.TRIP for e in parse_scenario(block.group(1)))
    _plc_sees_the_trip(["--scenario", str(scenario)], FAULT_OVER_CURRENT)


def test_the_quick_trip_flag(tmp_path: Path) -> None:
    _plc_sees_the_trip(["--trip", "leakage", "--at", "1"], FAULT_LEAKAGE)
