"""Shared bench plumbing: the C tools, subprocess servers, /proc figures, the bench map."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gateway.regmap.load import load_map

ROOT = Path(__file__).resolve().parent.parent
# The gateways a bench starts keep their lifetime energy here, never in the user's state dir.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="tmg-bench-state-")
os.environ.pop("STATE_DIRECTORY", None)
BIN_DIR = ROOT / ".bench-bin"
BUILD_SH = ROOT.parent / "shared" / "bench" / "build.sh"
DEFAULT_MAP = ROOT / "register_map.yaml"
CLK_TCK = os.sysconf("SC_CLK_TCK")

_FAULT_COILS = 14  # fault bits turned into read-only coils 2-15: FC1 x 16 is one block


def _fault_bits() -> list[str]:
    """The default map's fault bit names in bit order; the first ones become bench coils."""
    bits = load_map(DEFAULT_MAP).datapoints["fault"].bits
    return sorted(bits, key=bits.__getitem__)


def tool(name: str) -> str:
    """Path of a C yardstick (modbus_load, modbus_ref_server); builds them if missing."""
    path = BIN_DIR / name
    if not path.exists():
        print(f"building the C yardsticks into {BIN_DIR} ...", file=sys.stderr)
        subprocess.run(["sh", str(BUILD_SH), str(BIN_DIR)], check=True)
    return str(path)


def bench_map(directory: Path) -> Path:
    """The default map plus input registers 18-19 and coils 2-15: FC4 x 20 and FC1 x 16 fit."""
    text = DEFAULT_MAP.read_text()
    coil_anchor = (
        "  - {name: prepayment, address: 1, source: prepayment, description: prepayment mode}\n"
    )
    coils = "".join(
        f"  - {{name: fault_coil_{i}, address: {i}, source: fault.{bit}}}\n"
        for i, bit in enumerate(_fault_bits()[:_FAULT_COILS], start=2)
    )
    reg_anchor = "    description: breaker id, UTF-8, NUL-padded\n"
    extra = "  - {name: power_copy, address: 18, source: phase_a.power, format: uint32, unit: W}\n"
    if coil_anchor not in text or reg_anchor not in text:
        raise RuntimeError("register_map.yaml changed: update bench_map() anchors")
    text = text.replace(coil_anchor, coil_anchor + coils, 1).replace(
        reg_anchor, reg_anchor + extra, 1
    )
    path = directory / "bench_map.yaml"
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 30.0
) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.args!r}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@contextlib.contextmanager
def server(args: Sequence[str], port: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` as a subprocess (waiting for ``port`` if given); terminate it after."""
    proc = subprocess.Popen(list(args), cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        if port is not None:
            wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gateway_args(*extra: str, log_level: str = "WARNING") -> list[str]:
    """``python -m gateway run`` with ``extra`` options."""
    return [sys.executable, "-m", "gateway", "--log-level", log_level, "run", *extra]


def wait_ready_tcp(port: int, unit: int = 1, timeout_s: float = 30.0) -> None:
    """Wait until the unit's link is READY (input register 200 reads 3)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            reply = raw_request(port, bytes((unit, 4, 0, 200, 0, 1)))
            if reply[7] == 4 and reply[9:11] == b"\x00\x03":
                return
        time.sleep(0.1)
    raise TimeoutError(f"unit {unit} not READY on port {port}")


def raw_request(port: int, pdu_with_unit: bytes, tid: int = 1) -> bytes:
    """One Modbus TCP request on a fresh connection; the whole reply ADU."""
    with socket.create_connection(("127.0.0.1", port), 5.0) as sock:
        adu = tid.to_bytes(2, "big") + b"\x00\x00" + len(pdu_with_unit).to_bytes(2, "big")
        sock.sendall(adu + pdu_with_unit)
        return recv_adu(sock)


def recv_adu(sock: socket.socket) -> bytes:
    head = recv_exact(sock, 6)
    return head + recv_exact(sock, int.from_bytes(head[4:6], "big"))


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def modbus_load(
    host: str,
    port: int | str,
    unit: int,
    fc: int,
    addr: int,
    count: int,
    conns: int,
    seconds: float,
) -> dict[str, object]:
    """Run the C load generator once; its JSON line (``ok`` False-y on failures)."""
    args = [
        tool("modbus_load"),
        host,
        str(port),
        str(unit),
        str(fc),
        str(addr),
        str(count),
        str(conns),
        f"{seconds:g}",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"modbus_load gave no result: {done.stderr.strip()}")
    result: dict[str, object] = json.loads(lines[-1])
    return result


def proc_status_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def runs_main(
    doc: str | None,
    what: str,
    headers: Sequence[str],
    run: Callable[[float, int], Sequence[Sequence[object]]],
) -> None:
    """Command line of a bench that reports medians of ``--runs`` runs of ``--seconds`` each."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{what}, medians of {args.runs} runs of {args.seconds:g} s")
    print(table(headers, run(args.seconds, args.runs)))
