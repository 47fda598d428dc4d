"""sniff shows what is wrong on a line; discover talks while it listens and helps on silence."""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from serial_line import pty_pair

from gateway.discover import SILENT_HINTS, draft_map
from gateway.regmap.load import parse_map
from gateway.sniff import format_event
from gateway.tuya.openers import link_problem
from gateway.tuya.protocol import Command, DpValue, Frame, FrameDecoder
from gateway.tuya.scan import BadChecksum, LineScanner, Skipped

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 30.0
GOOD = Frame(Command.DP_REPORT, DpValue.of_bool(16, True).encode(), version=3).encode()
HEARTBEAT = Frame(Command.HEARTBEAT, b"\x01", version=3).encode()
CORRUPT = GOOD[:-1] + bytes([GOOD[-1] ^ 0xFF])
NOISE = bytes.fromhex("13 37 00 fe")


def gateway(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        **kw,  # type: ignore[arg-type]
    )


# -- the scanner ------------------------------------------------------------------------------
def test_the_scanner_reports_noise_bad_frames_and_frames_in_order() -> None:
    scanner = LineScanner()
    scanner.feed(NOISE + GOOD + CORRUPT + HEARTBEAT + GOOD[:5])
    events = list(scanner.events())
    assert events == [
        Skipped(NOISE, "noise"),
        Frame(Command.DP_REPORT, DpValue.of_bool(16, True).encode(), version=3),
        BadChecksum(CORRUPT),
        Frame(Command.HEARTBEAT, b"\x01", version=3),
    ]
    assert list(scanner.idle()) == [Skipped(GOOD[:5], "incomplete frame")]


def test_a_header_inside_a_bad_frame_is_a_resync_point() -> None:
    scanner = LineScanner()
    scanner.feed(GOOD[:6] + GOOD)  # a cut frame, then a whole one: its header is inside
    events = list(scanner.events())
    assert events[0] == Skipped(GOOD[:6], "bad frame start")
    assert isinstance(events[1], Frame)


@given(st.lists(st.sampled_from([GOOD, CORRUPT, HEARTBEAT, NOISE, b"\x55", b"\xaa"])))
def test_every_byte_is_reported_exactly_once(chunks: list[bytes]) -> None:
    line = b"".join(chunks)
    scanner = LineScanner()
    scanner.feed(line)
    events = [*scanner.events(), *scanner.idle()]
    shown = b"".join(e.encode() if isinstance(e, Frame) else e.data for e in events)
    assert shown == line


# -- sniff ------------------------------------------------------------------------------------
def test_sniff_on_a_noisy_tap_marks_noise_and_bad_checksums_in_order() -> None:
    with pty_pair() as (master, path):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "sniff",
                "--rx-mcu",
                path,
                "--duration",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        # Opening the port drops what was queued: heartbeats until the tap prints one.
        while not select.select([proc.stdout], [], [], 0.1)[0]:
            os.write(master, HEARTBEAT)
        os.write(master, NOISE + GOOD + CORRUPT + HEARTBEAT)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "!!" in line)
    assert lines[first].endswith("MCU  !! skipped 4 bytes (noise)  | 13 37 00 fe")
    assert "DP_REPORT v3 dp16 bool=True" in lines[first + 1]
    assert "MCU  !! bad checksum 0x" in lines[first + 2]
    assert lines[first + 2].endswith(CORRUPT.hex(" "))
    assert "HEARTBEAT" in lines[first + 3]
    assert all("HEARTBEAT" in line for line in lines[:first])
    assert lines[-1] == (
        f"# summary: MCU {first + 2} frames, 1 bad checksums, 4 bytes skipped in 1 runs"
    )


def test_the_decoder_reports_every_dropped_byte_in_order_with_the_frames() -> None:
    seen: list[object] = []
    decoder = FrameDecoder(on_drop=seen.append)
    decoder.feed(NOISE + GOOD + CORRUPT + HEARTBEAT + GOOD[:5])
    seen.extend(decoder)
    seen.extend(decoder.idle())
    assert seen == [
        Skipped(NOISE, "noise"),
        Frame(Command.DP_REPORT, DpValue.of_bool(16, True).encode(), version=3),
        BadChecksum(CORRUPT),
        Frame(Command.HEARTBEAT, b"\x01", version=3),
        Skipped(GOOD[:5], "incomplete frame"),
    ]
    assert (decoder.bytes_skipped, decoder.checksum_errors) == (len(NOISE + CORRUPT) + 5, 1)


@given(st.lists(st.sampled_from([GOOD, CORRUPT, HEARTBEAT, NOISE, b"\x55", b"\xaa"])))
def test_the_decoder_shows_each_byte_once(chunks: list[bytes]) -> None:
    shown: list[bytes] = []
    decoder = FrameDecoder(on_drop=lambda event: shown.append(event.data))
    decoder.feed(b"".join(chunks))
    shown.extend(frame.encode() for frame in decoder)  # one at a time: drops land in between
    shown.extend(frame.encode() for frame in decoder.idle())
    assert b"".join(shown) == b"".join(chunks)


def test_sniff_link_shows_what_the_decoder_dropped_in_order() -> None:
    result = gateway(
        "sniff", "--link", "sim://?garbage=1&bad_checksum=0.5&seed=3", "--duration", "4"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    skipped = [line for line in lines if " MCU  !! skipped " in line]
    bad = [line for line in lines if " MCU  !! bad checksum 0x" in line]
    assert skipped
    assert bad
    for line in bad:  # the frame itself, in hex: its last byte is not its checksum
        data = bytes.fromhex(line.rpartition("| ")[2])
        assert data[:2] == b"\x55\xaa"
        assert sum(data[:-1]) % 256 != data[-1]
    summary = lines[-1]
    assert summary.startswith("# summary: MCU ")
    assert f" {len(bad)} bad checksums, " in summary
    assert f" in {len(skipped)} runs;" in summary
    noise = sum(len(bytes.fromhex(line.rpartition("| ")[2])) for line in skipped)
    assert f" {noise} bytes skipped " in summary


def test_a_long_run_of_noise_shows_its_first_64_bytes_and_the_count() -> None:
    line = format_event("rx", Skipped(bytes(range(200)), "noise"), 1.0)
    assert line.endswith(f"| {bytes(range(64)).hex(' ')} ... (136 more)")
    assert "skipped 200 bytes (noise)" in line


def test_sniff_into_head_ends_quietly(tmp_path: Path) -> None:
    capture = tmp_path / "big.jsonl"
    record = {"mono": 0.0, "dir": "rx", "hex": GOOD.hex()}
    capture.write_text("".join(json.dumps(record) + "\n" for _ in range(20_000)))
    result = subprocess.run(
        f"{sys.executable} -m gateway sniff --file {capture} | head -n 2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == ""


def test_sniff_file_ends_with_a_summary(tmp_path: Path) -> None:
    capture = tmp_path / "c.jsonl"
    rows = [{"mono": 1.0, "dir": "tx", "hex": HEARTBEAT.hex()}, {"mono": 1.5, "dir": "rx"}]
    rows[1]["hex"] = GOOD.hex()
    capture.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = gateway("sniff", "--file", str(capture)).stdout.splitlines()
    assert lines[-1] == (
        "# summary: MCU 1 frames, 0 bad checksums, 0 bytes skipped in 0 runs;"
        " WIFI 1 frames, 0 bad checksums, 0 bytes skipped in 0 runs"
    )


def _limited() -> None:
    """A child that would read /dev/zero whole dies of its limit, not the shared machine."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("name", ["/dev/zero", "missing.jsonl", "a_directory", "one_long_line"])
def test_sniff_file_refuses_what_is_no_capture_with_one_line_and_exit_2(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "one_long_line").write_bytes(b"x" * 200_000)
    path = name if name.startswith("/") else str(tmp_path / name)
    result = gateway("sniff", "--file", path, preexec_fn=_limited)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(path)


def test_a_link_scheme_is_case_insensitive_as_the_openers_are() -> None:
    assert link_problem("SOCKET://127.0.0.1:1") is None
    assert link_problem("Sim://family_a") is None
    problem = link_problem("TCP://127.0.0.1:6668")
    assert problem is not None
    assert "did you mean socket://127.0.0.1:6668?" in problem


def test_sniff_and_discover_refuse_a_link_that_can_never_open() -> None:
    for command in ("sniff", "discover"):
        result = gateway(command, "--link", "tcp://127.0.0.1:6668")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("--link: unknown link scheme tcp://")
        assert len(result.stderr.splitlines()) == 1


# -- discover ---------------------------------------------------------------------------------
def test_discover_prints_each_new_dp_while_it_listens(tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    result = gateway(
        "discover", "--link", "sim://?report_interval=1", "--listen-s", "1", "--output", str(draft)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("connecting to sim://")
    news = [line for line in lines if " s  new dp" in line]
    assert len(news) == 9  # the family A twin's DPs, each announced once
    assert any("new dp16 bool=True: switch" in line for line in news)
    assert lines.index(news[-1]) < lines.index("9 datapoint(s) seen")
    assert gateway("check", str(draft)).returncode == 0


def test_discover_on_a_silent_line_ends_with_hints() -> None:
    with pty_pair() as (_master, path):
        result = gateway("discover", "--link", path, "--wait-s", "1")
    assert result.returncode == 1
    assert "no answer in 1 s; heard not a single byte" in result.stdout
    for hint in SILENT_HINTS:
        assert hint in result.stdout
    for word in ("TX and RX", "baud", "3.3 V", "stock Tuya module"):
        assert word in result.stdout


def test_the_draft_map_uses_the_guessed_scale_and_puts_switch_at_coil_0() -> None:
    from gateway.discover import SeenDp

    reports = [
        DpValue.of_bool(11, False),  # prepayment: a coil with a lower id than switch
        DpValue.of_bool(16, True),
        DpValue.of_value(1, 1234),  # total_energy, 0.01 kWh
        DpValue.of_value(131, 215),  # temperature, 0.1 °C (family B)
    ]
    text = draft_map({dp.dpid: SeenDp(dp) for dp in reports}, None, "sim://")
    document = yaml.safe_load(text)
    assert document["coils"][0] == {"name": "switch", "source": "switch", "address": 0}
    energy = document["datapoints"]["total_energy"]
    assert (energy["scale"], energy["unit"]) == (-2, "kWh")
    assert document["datapoints"]["temperature"]["scale"] == -1
    points = {p["name"]: p for p in document["input_registers"]}
    assert points["total_energy"]["scale"] == 100
    parse_map(text)  # and it loads


def test_discover_on_a_line_of_noise_suspects_the_baud_rate() -> None:
    with pty_pair() as (master, path):
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "discover", "--link", path, "--wait-s", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        while proc.poll() is None:  # what 115200 baud looks like when read at 9600
            os.write(master, b"\x13\x37\xfe\x80")
            select.select([], [], [], 0.05)
        out = proc.communicate(timeout=TIMEOUT_S)[0]
    assert proc.returncode == 1
    assert "that are no TuyaMCU frame: a wrong baud rate looks so" in out
    assert SILENT_HINTS[2] in out
