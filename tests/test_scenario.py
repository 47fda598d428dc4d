"""simulate scenarios: timed events on the twin's clock, and the README's trip seen by a PLC."""

from __future__ import annotations

import asyncio
import contextlib
import re
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
from gateway.twin.families import Protection
from gateway.twin.mcu import McuTwin
from gateway.twin.options import TwinOptions
from gateway.twin.scenario import Action, Event, Scenario, parse_scenario

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
