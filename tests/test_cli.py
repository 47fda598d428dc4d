"""Every subcommand run as a subprocess (``python -m gateway ...``) against real parts."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from serial_line import pty_pair
from tools import require

from gateway.modbus.server import TcpListener
from gateway.tuya.capture import read_capture
from gateway.tuya.protocol import Command, Frame, FrameDecoder, decode_dps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAP = ROOT / "register_map.yaml"
TIMEOUT_S = 20.0
CSV_HEADER = "table,address,count,name,format,word_order,scale,unit,access,range,step,description"


def gateway(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``python -m gateway ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


class Background:
    """A ``python -m gateway`` process that keeps running; its stdout is read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self._buffer = b""

    def line(self, timeout: float = TIMEOUT_S) -> str:
        """The next stdout line; fails if none arrives in time."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"no output line in {timeout} s: {self.stderr_now()}")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise AssertionError(f"process ended: {self.stderr_now()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Send ``sig``, wait, and return (exit code, rest of stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=TIMEOUT_S)
        return self.proc.returncode, (self._buffer + out).decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT_S)


@contextlib.contextmanager
def background(*args: str) -> Iterator[Background]:
    proc = Background(*args)
    try:
        yield proc
    finally:
        proc.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def exchange(sock: socket.socket, frame: Frame, command: int) -> Frame:
    """Send ``frame`` and return the first frame with ``command`` that comes back."""
    sock.sendall(frame.encode())
    decoder = FrameDecoder()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        decoder.feed(sock.recv(4096))
        for got in decoder:
            if got.command == command:
                return got
    raise AssertionError(f"no reply with command 0x{command:02X}")


def connect(url: str) -> socket.socket:
    host, _, port = url.removeprefix("socket://").rpartition(":")
    return socket.create_connection((host, int(port)), timeout=TIMEOUT_S)


def test_version_and_help() -> None:
    result = gateway("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "tuya-modbus-gateway 0.1.0"
    result = gateway("--help")
    for name in ("run", "simulate", "check", "docs", "schema", "discover", "sniff"):
        assert name in result.stdout


def test_simulate_tcp_answers_heartbeat_and_stops_on_sigterm() -> None:
    with background("simulate", "--listen", "tcp://127.0.0.1:0") as sim:
        url = sim.line()
        assert url.startswith("socket://127.0.0.1:")
        with connect(url) as sock:
            reply = exchange(sock, Frame(Command.HEARTBEAT), Command.HEARTBEAT)
        assert reply.data == b"\x00"  # first heartbeat after boot
        code, _, _ = sim.stop()
    assert code == 0


def test_simulate_pty_prints_path_of_a_working_tty() -> None:
    with background("simulate", "--listen", "pty", "--variant", "family_b") as sim:
        path = sim.line()
        assert path.startswith("/dev/")
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, Frame(Command.PRODUCT_INFO).encode())
            decoder = FrameDecoder()
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                while not (frames := list(decoder)):
                    assert sel.select(TIMEOUT_S), "the twin did not answer on its pty"
                    decoder.feed(os.read(fd, 4096))
        finally:
            os.close(fd)
        assert frames[0].command == Command.PRODUCT_INFO
        assert b"tgq7smr1twinb0b1" in frames[0].data  # family B's product key
        assert sim.stop(signal.SIGINT)[0] == 0


def test_run_with_bad_config_lists_every_error_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "modbus:\n"
        "  tcp: {host: 127.0.0.1, port: 70000}\n"
        "devices:\n"
        "  - unit: 1\n"
        "    link: sim://\n"
        "  - unit: 1\n"
        "    link: sim://\n"
        "    colour: red\n"
    )
    result = gateway("run", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    port_errors = [line for line in lines if line.startswith(f"{config}:2: modbus.tcp.port: ")]
    assert len(port_errors) == 1, lines
    assert "70000" in port_errors[0]
    assert f"{config}:6: devices[1].unit: unit 1 already used by devices[0]" in lines
    assert any(line.startswith(f"{config}:8: devices[1].colour: unknown key") for line in lines)


def test_run_rejects_flags_that_clash_with_config(tmp_path: Path) -> None:
    result = gateway("run", "--config", str(tmp_path / "none.yaml"), "--link", "sim://")
    assert result.returncode == 2
    assert "--link: not allowed with --config" in result.stderr


def mbpoll_values(port: int, *args: str) -> dict[int, int]:
    """One mbpoll read (-1) on 127.0.0.1:port; {} when it fails (e.g. link not READY yet)."""
    result = subprocess.run(
        [require("mbpoll"), "-m", "tcp", "-p", str(port), "-a", "1", *args, "-1", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    found = re.findall(r"^\[(\d+)\]:\s+(-?\d+)", result.stdout, flags=re.MULTILINE)
    return {int(ref): int(value) for ref, value in found} if result.returncode == 0 else {}


def poll_until_served(port: int, *args: str) -> dict[int, int]:
    """mbpoll until the gateway answers (its link needs a handshake first)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        values = mbpoll_values(port, *args)
        if values:
            return values
        time.sleep(0.2)
    raise AssertionError(f"the gateway on port {port} never answered mbpoll {args}")


def test_check_accepts_the_default_map_and_lists_every_error_of_a_bad_one(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    text = DEFAULT_MAP.read_text()
    text = text.replace("format: uint32", "format: flaot32", 1)
    text = text.replace("  switch:\n    id: 16\n", "  switch:\n    id: 16\n    colour: red\n", 1)
    bad.write_text(text)
    result = gateway("check", "register_map.yaml", str(bad))
    assert result.returncode == 2
    assert "register_map.yaml: ok" in result.stdout.splitlines()
    errors = [line for line in result.stdout.splitlines() if line.startswith(f"{bad}:")]
    assert len(errors) >= 2, result.stdout
    assert any("'flaot32' is not one of" in line for line in errors)
    assert any("datapoints.switch.colour" in line for line in errors)
    for line in errors:
        assert re.match(rf"{re.escape(str(bad))}:\d+: ", line), line
    assert gateway("check", "register_map.yaml").returncode == 0


def test_docs_csv_has_the_exact_header_and_every_point() -> None:
    result = gateway("docs", "register_map.yaml", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert ",".join(rows[0]) == CSV_HEADER
    tables = {row[0] for row in rows[1:]}
    assert tables == {"coil", "discrete_input", "input_register", "holding_register"}
    switch = next(row for row in rows if row[3] == "switch")
    assert switch[:3] == ["coil", "0", "1"]
    assert switch[8] == "rw"
    markdown = gateway("docs", "register_map.yaml", "--format", "md").stdout.splitlines()
    assert markdown[0] == "| " + CSV_HEADER.replace(",", " | ") + " |"
    assert len(markdown) == len(rows) + 3  # header, rule, one line per point, blank, scale
    assert markdown[-1].startswith("Scale: register = value × scale")


def test_schema_is_json_schema() -> None:
    result = gateway("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"device", "datapoints", "coils", "input_registers"} <= set(schema["properties"])


def test_run_on_a_separate_twin_serves_live_values_and_captures(tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    port = free_port()
    with background("simulate", "--listen", "tcp://127.0.0.1:0", "--voltage", "241.5") as sim:
        url = sim.line()
        with background(
            "run", "--link", url, "--tcp", f"127.0.0.1:{port}", "--capture", str(capture)
        ) as run:
            values = poll_until_served(port, "-t", "3", "-r", "1", "-c", "10")
            assert 2385 <= values[1] <= 2445  # voltage ×10 near the twin's 241.5 V (noise)
            coils = poll_until_served(port, "-t", "0", "-r", "1", "-c", "2")
            assert coils[1] == 1  # the twin's switch starts closed
            code, _, err = run.stop()
        assert code == 0, err
    assert "gateway started: tcp 127.0.0.1:" in err
    assert f"unit 1: link {url}" in err
    sniffed = gateway("sniff", "--file", str(capture))
    assert sniffed.returncode == 0
    lines = sniffed.stdout.splitlines()
    assert any(" WIFI HEARTBEAT" in line for line in lines)
    assert any(" MCU  PRODUCT_INFO" in line and "lih4vjeoyao4jeku" in line for line in lines)
    assert any(" MCU  DP_REPORT v3 dp16 bool=True" in line for line in lines)


def test_run_on_sim_stops_cleanly_on_sigterm_and_sigint() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        port = free_port()
        with background("run", "--link", "sim://", "--tcp", f"127.0.0.1:{port}") as run:
            poll_until_served(port, "-t", "3", "-r", "1", "-c", "2")
            code, _, err = run.stop(sig)
        assert code == 0, err
        assert "gateway stopped" in err


def test_run_with_a_bad_map_exits_2_and_binds_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_MAP.read_text().replace("address: 0", "address: -1", 1))
    port = free_port()
    result = gateway("run", "--link", "sim://", "--map", str(bad), "--tcp", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert re.search(rf"{re.escape(str(bad))}:\d+: .*address", result.stderr), result.stderr
    assert "gateway started" not in result.stderr
    assert "link sim://" not in result.stderr  # no link was even started


def test_discover_against_the_twin_writes_a_draft_that_passes_check(tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    with background("simulate", "--listen", "tcp://127.0.0.1:0") as sim:
        url = sim.line()
        result = gateway("discover", "--link", url, "--listen-s", "1", "--output", str(draft))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "product key 'lih4vjeoyao4jeku'" in out
    rows = {int(m[0]): m[1] for m in re.findall(r"^\s*(\d+)\s+(\w+)\s", out, re.MULTILINE)}
    assert rows == {
        1: "value",
        6: "raw",
        9: "bitmap",
        11: "bool",
        15: "value",
        16: "bool",
        17: "raw",
        18: "raw",
        19: "string",
    }
    assert re.search(r"^\s*16\s+bool .* switch", out, re.MULTILINE)
    assert re.search(r"^\s*6\s+raw .* V .* A .* W\s+phase_a", out, re.MULTILINE)
    checked = gateway("check", str(draft))
    assert checked.returncode == 0, checked.stdout
    assert f"{draft}: ok" in checked.stdout


def test_sniff_live_from_a_link_shows_both_directions() -> None:
    result = gateway("sniff", "--link", "sim://", "--duration", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "# link READY (product key 'lih4vjeoyao4jeku')" in lines
    assert any(" WIFI WIFI_STATE v0 [04]" in line for line in lines)
    assert any(" MCU  DP_REPORT v3 dp19 string='TWIN-A-000001'" in line for line in lines)


def test_sniff_passive_decodes_two_uart_taps() -> None:
    with (
        pty_pair(raw=True) as (mcu_master, mcu_path),
        pty_pair(raw=True) as (mod_master, mod_path),
        background(
            "sniff", "--rx-mcu", mcu_path, "--rx-module", mod_path, "--duration", "20"
        ) as sniff,
    ):
        # the module's heartbeat cut in two writes, the MCU's report behind garbage bytes
        heartbeat = Frame(Command.HEARTBEAT).encode()
        report = bytes.fromhex("55AA03070008010200040000000119")
        deadline = time.monotonic() + TIMEOUT_S
        seen: list[str] = []
        while len(seen) < 2 and time.monotonic() < deadline:
            os.write(mod_master, heartbeat[:3])
            time.sleep(0.01)
            os.write(mod_master, heartbeat[3:])
            os.write(mcu_master, b"\x00\x13" + report)
            with contextlib.suppress(AssertionError):
                seen.append(sniff.line(timeout=1.0))
                seen.append(sniff.line(timeout=1.0))
        code, rest, _ = sniff.stop()
    lines = seen + rest.splitlines()
    assert code == 0
    assert any(" WIFI HEARTBEAT v0  | 55 aa 00 00 00 00 ff" in line for line in lines), lines
    assert any(" MCU  DP_REPORT v3 dp1 value=1" in line for line in lines), lines


def test_sniff_replay_plays_a_capture_back_to_a_gateway(tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    port = free_port()
    with background(
        "run", "--link", "sim://", "--tcp", f"127.0.0.1:{port}", "--capture", str(capture)
    ) as run:
        recorded = poll_until_served(port, "-t", "3", "-r", "1", "-c", "1")
        assert run.stop()[0] == 0
    port = free_port()
    with background("sniff", "--replay", str(capture), "--listen", "tcp://127.0.0.1:0") as peer:
        url = peer.line()
        with background("run", "--link", url, "--tcp", f"127.0.0.1:{port}") as run:
            replayed = poll_until_served(port, "-t", "3", "-r", "1", "-c", "1")
            code, _, err = run.stop()
    assert code == 0, err
    assert "link READY, product key 'lih4vjeoyao4jeku'" in err
    voltages = {  # every voltage (×10) the twin reported in the capture
        int.from_bytes(dp.payload[:2], "big")
        for record in read_capture(str(capture))
        if record.direction == "rx" and record.frame.command == Command.DP_REPORT
        for dp in decode_dps(record.frame.data).values
        if dp.dpid == 6
    }
    assert recorded[1] in voltages
    assert replayed[1] in voltages  # played back from the capture, not made up


def test_default_tcp_listener_is_localhost_only() -> None:
    from gateway.cli import build_parser
    from gateway.config import config_from_args

    config = config_from_args(build_parser().parse_args(["run", "--link", "sim://"]))
    assert config.tcp is not None
    assert (config.tcp.host, config.tcp.port) == ("127.0.0.1", 5020)
    assert config.devices[0].map_path == "register_map.yaml"
    assert config.devices[0].unit == 1
    explicit = build_parser().parse_args(["run", "--link", "sim://", "--tcp", "0.0.0.0:1502"])
    assert config_from_args(explicit).tcp == TcpListener("0.0.0.0", 1502)


def test_example_gateway_yaml_is_valid_and_its_maps_load() -> None:
    from gateway.config import load_config
    from gateway.service import GatewayService

    config = load_config(str(ROOT / "gateway.example.yaml"))
    assert [device.unit for device in config.devices] == [1, 2]
    assert config.tcp == TcpListener("127.0.0.1", 5020)  # localhost unless the user says so
    assert config.devices[0].map_path == str(DEFAULT_MAP)  # relative to the config file
    service = GatewayService(config)  # loads and validates every map, starts nothing
    assert sorted(service.units) == [1, 2]


def test_example_gateway_yaml_with_every_commented_key_switched_on_is_valid(tmp_path: Path) -> None:
    """The example documents every key: each commented one is valid once uncommented."""
    from gateway.config import load_config

    commented_key = re.compile(r"^(\s*)# (\s*)([a-z_0-9]+:.*)$")
    lines = []
    for line in (ROOT / "gateway.example.yaml").read_text(encoding="utf-8").splitlines():
        found = commented_key.match(line)
        lines.append(found.expand(r"\1\2\3") if found else line)
    uncommented = tmp_path / "gateway.yaml"
    uncommented.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "register_map.yaml").write_text(DEFAULT_MAP.read_text(encoding="utf-8"))
    for named in ("ca.pem", "gw-hall-2.pem", "gw-hall-2.key"):  # the MQTT TLS files must exist
        (tmp_path / named).write_text("")
    config = load_config(str(uncommented))
    switched_on = (config.rtu, config.http, config.mqtt, config.security.tls)
    assert None not in switched_on
    assert config.security.audit is not None
    assert config.tcp is not None
    assert config.tcp.write_allow == ("192.168.10.5/32",)


# -- start-up and shutdown (issue 13) --------------------------------------------------------
BAD_LINKS = {
    "tcp://127.0.0.1:6668": "did you mean socket://127.0.0.1:6668?",
    "foo://x": "unknown link scheme foo://",
    "sim://family_z": "unknown variant 'family_z'",
    "socket://nohost": "expected socket://HOST:PORT",
    "socket://h:99999": "socket://h:99999",
}


def test_a_link_that_can_never_open_exits_2_before_binding_anything(tmp_path: Path) -> None:
    port = free_port()
    for url, hint in BAD_LINKS.items():
        result = gateway("run", "--link", url, "--tcp", f"127.0.0.1:{port}")
        assert result.returncode == 2, (url, result.stderr)
        assert result.stderr.startswith("--link: "), result.stderr
        assert hint in result.stderr, result.stderr
        assert "gateway started" not in result.stderr
    config = tmp_path / "gateway.yaml"
    config.write_text("modbus: {tcp: {port: 0}}\ndevices:\n  - {unit: 1, link: 'tcp://h:1'}\n")
    result = gateway("run", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}:3: devices[0].link: unknown link scheme tcp://" in result.stderr


def test_config_refuses_the_single_device_flags_it_would_ignore(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text('modbus: {tcp: {port: 0}}\ndevices: [{unit: 1, link: "sim://"}]\n')
    for flags in (["--capture", "x.jsonl"], ["--rtu-baud", "19200"], ["--rtu-parity", "E"]):
        result = gateway("run", "--config", str(config), *flags)
        assert result.returncode == 2, (flags, result.stderr)
        assert f"{flags[0]}: not allowed with --config" in result.stderr


def test_a_serial_port_that_refuses_its_settings_is_one_line_and_exit_1() -> None:
    result = gateway("run", "--link", "sim://", "--tcp", "off", "--rtu", "/dev/null")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr


SIGNAL_RUNS = {
    "check": ("check", "register_map.yaml", "sdm120", "tongou_tosmr1"),
    "run": ("run", "--link", "sim://", "--tcp", "127.0.0.1:0"),
}


def _wait_until_importing(pid: int) -> None:
    """Until process ``pid`` has loaded PyYAML's C extension: the gateway's imports have begun."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if "_yaml" in Path(f"/proc/{pid}/maps").read_text():
                return
        except (FileNotFoundError, ProcessLookupError):
            return  # it has ended already
        time.sleep(0.001)


def _console_script() -> list[str]:
    """What pip's ``tuya-modbus-gateway`` wrapper runs, taken from pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["tuya-modbus-gateway"].split(":")
    return [
        sys.executable,
        "-c",
        f"import sys; from {module} import {function}; sys.exit({function}())",
    ]


@pytest.mark.parametrize("launcher", ["python -m gateway", "console script"])
def test_sigint_and_sigterm_at_any_moment_exit_cleanly(launcher: str) -> None:
    """Imports, map loading, start-up, serving: 0, 130 or 143, and never a traceback.

    The moments are counted from when the gateway's imports have begun (PyYAML is loaded):
    before that the interpreter itself is starting, and what a signal does there is Python's
    business, not ours. The same holds once the interpreter
    is finalizing (it restores the default handlers): a signal there ends the process by the
    signal itself (-2 or -15 here), which shells and systemd count as 130/143 and clean.
    """
    for name, args in SIGNAL_RUNS.items():
        for sig in (signal.SIGINT, signal.SIGTERM):
            for delay in (0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8):
                command = [sys.executable, "-m", "gateway"]
                if launcher == "console script":
                    command = _console_script()
                proc = subprocess.Popen(
                    [*command, *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=ROOT,
                )
                _wait_until_importing(proc.pid)
                time.sleep(delay)
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=TIMEOUT_S)
                what = f"{name} {sig.name} after {delay} s"
                assert proc.returncode in (0, 128 + sig, -sig), (what, proc.returncode, err)
                assert b"Traceback" not in err, (what, err.decode())
