"""Lifetime energy: never backwards across MCU counter resets, jumps and gateway restarts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from fractions import Fraction
from pathlib import Path

import pytest
from served import Served, eventually, start_served

from gateway.config import DeviceConfig, GatewayConfig, WritePolicy
from gateway.modbus.server import TcpListener
from gateway.unit.energy import EnergyState, advance
from gateway.unit.state_store import STATE_FILE, StateStore, default_state_dir, state_dir_for

ROOT = Path(__file__).resolve().parents[1]
RATING = Fraction(19500)  # W
KWH = Fraction(1, 100)


def kwh(text: str) -> Fraction:
    return Fraction(text)


# -- the rule ---------------------------------------------------------------------------


def test_the_first_report_starts_the_lifetime_at_the_counter() -> None:
    state, note = advance(None, kwh("123.45"), 1000.0, RATING)
    assert state == EnergyState(kwh("123.45"), kwh("123.45"), 1000.0)
    assert note is None


def test_a_rise_within_the_rating_counts() -> None:
    state = EnergyState(kwh("10"), kwh("5"), 0.0)
    after, note = advance(state, kwh("5.5"), 3600.0, RATING)  # 0.5 kWh in an hour
    assert after == EnergyState(kwh("10.5"), kwh("5.5"), 3600.0)
    assert note is None


def test_a_drop_carries_the_lifetime_and_counts_what_came_since() -> None:
    state = EnergyState(kwh("10"), kwh("5"), 0.0)
    after, note = advance(state, kwh("0.2"), 3600.0, RATING)  # MCU reset, then 0.2 kWh
    assert after == EnergyState(kwh("10.2"), kwh("0.2"), 3600.0)
    assert note is not None
    assert "dropped from 5 to 0.2" in note


def test_a_jump_beyond_the_rating_is_not_counted_and_becomes_the_base() -> None:
    state = EnergyState(kwh("10"), kwh("5"), 0.0)
    after, note = advance(state, kwh("500"), 60.0, RATING)  # 19.5 kW for 60 s is 0.325 kWh
    assert after == EnergyState(kwh("10"), kwh("500"), 60.0)
    assert note is not None
    assert "not counted" in note
    again, _ = advance(after, kwh("500.01"), 70.0, RATING)
    assert again.lifetime == kwh("10.01")


def test_garbage_after_a_reboot_is_a_drop_or_a_jump_never_a_loss() -> None:
    state = EnergyState(kwh("10"), kwh("5"), 0.0)
    for garbage in (kwh("0"), kwh("4.99"), kwh("99999"), kwh("0.01")):
        state, _ = advance(state, garbage, state.at + 1.0, RATING)
        assert state.lifetime >= kwh("10")


def test_two_counts_of_rounding_are_not_a_jump() -> None:
    state = EnergyState(kwh("1"), kwh("1"), 0.0)
    after, note = advance(state, kwh("1.02"), 0.0, RATING)
    assert (after.lifetime, note) == (kwh("1.02"), None)


def test_an_unchanged_counter_keeps_its_base_time() -> None:
    state = EnergyState(kwh("1"), kwh("1"), 0.0)
    assert advance(state, kwh("1"), 500.0, RATING) == (state, None)


# -- the store --------------------------------------------------------------------------


def test_the_store_round_trips_exact_values(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    state = EnergyState(Fraction(1, 3), kwh("2.01"), 12.5)
    store.save_energy("unit 1", state)
    store.close()
    again = StateStore(str(tmp_path / "state"))
    assert again.load_energy("unit 1") == state
    assert again.load_energy("unit 2") is None
    assert (tmp_path / "state" / STATE_FILE).is_file()


def test_the_state_dir_defaults_to_the_platform_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tuya-modbus-gateway")  # systemd's
    monkeypatch.setenv("XDG_STATE_HOME", "/x/state")
    assert default_state_dir() == "/var/lib/tuya-modbus-gateway"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert default_state_dir() == "/x/state/tuya-modbus-gateway"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_state_dir() == os.path.expanduser("~/.local/state/tuya-modbus-gateway")
    assert state_dir_for("/opt", "/cfg") == "/opt"
    assert state_dir_for(None, "/cfg") == "/cfg"


WRITER = textwrap.dedent(
    """
    import sys, itertools
    from gateway.regmap.specs import DatapointSpec, EnergySpec
    from gateway.tuya.protocol import DpType, DpValue
    from gateway.unit.cache import DatapointCache
    from gateway.unit.energy import LifetimeEnergy
    from gateway.unit.state_store import StateStore

    clock = itertools.count(start=float(sys.argv[2]), step=1.0)  # one report a second
    spec = DatapointSpec("total_energy", 1, DpType.VALUE, scale=-2)
    store = StateStore(sys.argv[1])
    energy = LifetimeEnergy(
        EnergySpec("total_energy", 19500), spec, DatapointCache(), store, "unit 1",
        clock=lambda: next(clock),
    )
    for n in itertools.count(1):
        energy.on_report(DpValue.of_value(1, n % 50))  # the MCU resets every 50 reports
        print(energy.state.lifetime, flush=True)
    """
)


def test_a_process_killed_mid_write_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL while the writer saves on every report: the store has every acknowledged value."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    acknowledged = Fraction(0)
    for round_number, lines_before_kill in enumerate((37, 120, 5, 260, 64)):
        start = str(10_000.0 * (round_number + 1))
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), start],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert child.stdout is not None
        for _ in range(lines_before_kill):
            value = Fraction(child.stdout.readline().strip())
            assert value >= acknowledged  # never backwards, also across kills
            acknowledged = value
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        stored = StateStore(str(tmp_path)).load_energy("unit 1")
        assert stored is not None
        assert stored.lifetime >= acknowledged, f"round {round_number}"
        acknowledged = stored.lifetime
    assert acknowledged > Fraction(4)  # it counted across the resets every 50 reports


# -- served -----------------------------------------------------------------------------

TWIN = "sim://family_a?noise=0&report_interval=1&energy={energy}"


class Meter(Served):
    async def words(self, address: int, count: int) -> list[int]:
        reply = await self.client.read_input_registers(address, count=count, device_id=1)
        assert not reply.isError(), reply
        return list(reply.registers)

    async def lifetime_and_raw(self) -> tuple[int, int]:
        """Input 223 (lifetime) and 4 (the MCU's counter), in 0.01 kWh."""
        raw = await self.words(4, 2)
        life = await self.words(223, 2)
        return (life[0] << 16) | life[1], (raw[0] << 16) | raw[1]


Start = Callable[[str | None, float], Awaitable[Meter]]


@pytest.fixture
async def meter() -> AsyncIterator[Start]:
    started: list[Meter] = []

    async def start(state_dir: str | None, energy: float) -> Meter:
        device = DeviceConfig(1, TWIN.format(energy=energy), str(ROOT / "register_map.yaml"))
        config = GatewayConfig(
            (device,), TcpListener("127.0.0.1", 0), None, WritePolicy(), state_dir=state_dir
        )
        return await start_served(config, Meter, started)

    yield start
    for served in started:
        await served.stop()


async def until(gw: Meter, check: Callable[[int, int], bool], what: str) -> tuple[int, int]:
    seen: list[tuple[int, int]] = []

    async def ok() -> bool:
        try:
            seen.append(await gw.lifetime_and_raw())
        except AssertionError:
            return False
        return check(*seen[-1])

    await eventually(ok, what)
    return seen[-1]


async def test_lifetime_register_across_a_counter_reset_a_jump_and_a_restart(
    meter: Start, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state_dir = str(tmp_path / "state")
    gw = await meter(state_dir, 100.0)
    assert await until(gw, lambda life, raw: life == raw == 10000, "100.00 kWh") == (10000, 10000)
    gw.twin().set_load(60.0)  # 13.8 kW: 0.01 kWh every 2.6 s
    gw.twin().set_energy(0.0)  # the MCU resets its counter
    life, raw = await until(gw, lambda _, raw: 1 <= raw < 10000, "the counter counting again")
    assert life == 10000 + raw  # carried: 100 kWh plus what came since the reset
    assert "dropped from 100 to 0 kWh" in caplog.text
    gw.twin().set_energy(5000.0)  # garbage: 5 MWh in a fraction of a second
    await until(gw, lambda _, raw: raw >= 500000, "the garbage counter")
    life_after_jump, _ = await gw.lifetime_and_raw()
    assert life_after_jump < 10100
    assert "not counted" in caplog.text
    before_restart, counter = await gw.lifetime_and_raw()
    twin_energy = gw.twin().energy_kwh
    await gw.stop()
    # the gateway restarts; meanwhile the MCU rebooted and its counter went back to 0
    again = await meter(state_dir, 0.0)
    life, raw = await until(again, lambda life, raw: raw == 0, "the restarted gateway serving")
    assert life >= before_restart
    assert counter / 100 <= twin_energy + 0.01
