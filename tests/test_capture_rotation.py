"""Capture files rotate at --capture-max-mb and never hold a half-written line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.tuya.capture import DEFAULT_MAX_BYTES, CaptureWriter, read_capture
from gateway.tuya.protocol import Command, DpValue, Frame

TIMEOUT_S = 30.0


def frame(n: int) -> Frame:
    return Frame(Command.DP_REPORT, DpValue.of_value(1, n).encode(), version=3)


def values(path: Path) -> list[int]:
    return [int.from_bytes(r.frame.data[-4:], "big") for r in read_capture(str(path))]


def test_the_default_limit_is_50_mb() -> None:
    assert DEFAULT_MAX_BYTES == 50 * 1024 * 1024


def test_a_full_capture_moves_to_dot_1_and_no_line_is_split(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    writer = CaptureWriter(str(path), max_bytes=2000)
    for n in range(100):
        writer.record("rx", frame(n))
    writer.close()
    old, new = Path(f"{path}.1"), path
    assert writer.rotations > 1
    for part in (old, new):
        assert 0 < part.stat().st_size <= 2000
        assert part.read_bytes().endswith(b"\n")
    assert values(old) + values(new) == list(range(100 - len(values(old) + values(new)), 100))


def test_a_half_line_from_a_crash_is_cut_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "cap.jsonl"
    writer = CaptureWriter(str(path))
    writer.record("rx", frame(1))
    writer.record("rx", frame(2))
    writer.close()
    with path.open("ab") as handle:
        handle.write(b'{"mono": 5.0, "dir": "rx", "hex": "55aa03')  # power lost here
    writer = CaptureWriter(str(path))
    writer.record("rx", frame(3))
    writer.close()
    assert values(path) == [1, 2, 3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_run_rotates_its_capture_at_capture_max_mb(tmp_path: Path) -> None:
    path = tmp_path / "unit1.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--link",
            "sim://?report_interval=0.2",
            "--tcp",
            f"127.0.0.1:{_free_port()}",
            "--capture",
            str(path),
            "--capture-max-mb",
            "0.002",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not Path(f"{path}.1").exists():
            assert time.monotonic() < deadline, "the capture never rotated"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT_S)
    for part in (Path(f"{path}.1"), path):
        assert part.stat().st_size <= 0.002 * 1024 * 1024
        assert list(read_capture(str(part)))


RUN_WITH_CAPTURE = (sys.executable, "-m", "gateway", "run", "--link", "sim://", "--capture", "c")


@pytest.mark.parametrize("size", ["nan", "inf", "-1", "0", "fifty"])
def test_a_capture_size_that_is_no_size_is_exit_2(size: str) -> None:
    result = subprocess.run(
        [*RUN_WITH_CAPTURE, "--capture-max-mb", size],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"--capture-max-mb: expected megabytes above 0, got {size!r}" in result.stderr
