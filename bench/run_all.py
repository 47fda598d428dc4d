"""Every benchmark in one run, then one table of figures against the goals of issue 8.

Run as ``python bench/run_all.py [--quick]`` from anywhere (the README set-up, then
``apt-get install -y libmodbus-dev pkg-config gcc``; socat optional). The C yardsticks are
built into ``.bench-bin/`` with ``../shared/bench/build.sh`` the first time. ``--quick``
(a few minutes) shortens every run; the default takes about 15 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

import bench_codec
import bench_decoder_long
import bench_freshness
import bench_rtu
import bench_scale
import bench_soak
import bench_tcp
from benchlib import table, tool


@dataclasses.dataclass(frozen=True)
class Plan:
    tcp_seconds: float
    tcp_runs: int
    rtu_seconds: float
    rtu_runs: int
    fresh_samples: int
    scale_seconds: float
    idle_seconds: float
    decoder_inputs: int
    soak_seconds: float


FULL = Plan(5.0, 5, 5.0, 3, 1000, 60.0, 30.0, 1_000_000, 120.0)
QUICK = Plan(1.0, 3, 1.0, 3, 200, 10.0, 5.0, 100_000, 20.0)
Goal = tuple[str, object, str, bool | None]


def num(value: object) -> float:
    return float(str(value))


def section(title: str, work: Callable[[], list[Goal]], goals: list[Goal]) -> None:
    print(f"\n== {title}", flush=True)
    start = time.monotonic()
    try:
        goals.extend(work())
    except Exception as err:  # one broken benchmark must not hide the others' figures
        print(f"FAILED: {type(err).__name__}: {err}")
        goals.append((title, "failed", "runs", False))
    print(f"({time.monotonic() - start:.0f} s)", flush=True)


def tcp(plan: Plan) -> list[Goal]:
    rows = bench_tcp.run(plan.tcp_seconds, plan.tcp_runs)
    print(f"medians of {plan.tcp_runs} runs of {plan.tcp_seconds:g} s")
    print(table(bench_tcp.HEADERS, rows))
    goals: list[Goal] = []
    for shape, conns, name, *_, failed, x_c, x_bare in rows:
        if name == "gateway":
            label = f"TCP {shape} {conns} conn"
            goals.append((f"{label} x bare pymodbus", x_bare, ">= 0.9", num(x_bare) >= 0.9))
            goals.append((f"{label} x C libmodbus", x_c, "toward 0.5", None))
            goals.append((f"{label} failed requests", failed, "0", failed == 0))
    return goals


def rtu(plan: Plan) -> list[Goal]:
    rows = bench_rtu.run(plan.rtu_seconds, plan.rtu_runs)
    print(table(bench_rtu.HEADERS, rows))
    return [
        (f"RTU {baud} est. real-line x wire", est, "<= 1.15", num(est) <= 1.15)
        for baud, *_, est in rows
    ]


def freshness(plan: Plan) -> list[Goal]:
    rows = bench_freshness.run(plan.fresh_samples)
    print(table(bench_freshness.HEADERS, rows))
    return [
        (f"{name} p99 ms", p99, f"<= {goal:g}", num(p99) <= num(goal))
        for name, _, _, p99, _, goal in rows
    ]


def scale(plan: Plan) -> list[Goal]:
    rows = bench_scale.run(plan.scale_seconds, plan.idle_seconds)
    print(table(bench_scale.HEADERS, rows))
    goals: list[Goal] = []
    for name, value, goal_cell in rows:
        goal = str(goal_cell)
        if goal == "0":
            goals.append((f"scale {name}", value, goal, value == 0))
        elif goal.startswith("<="):
            goals.append((f"scale {name}", value, goal, num(value) <= num(goal[2:])))
        elif "CPU" in str(name):
            goals.append((f"scale {name}", value, "", None))
    return goals


def codec(_: Plan) -> list[Goal]:
    runs = {
        "decode 1 frame per feed": bench_codec.decode_frame_by_frame,
        "decode 20000 frames per feed": bench_codec.decode_stream,
        "encode DpValue + Frame": bench_codec.encode_frames,
    }
    rows = [[name, bench_codec.per_second(run)] for name, run in runs.items()]
    print(table(("19-byte 0x07 frames", f"frames/s (median of {bench_codec.RUNS})"), rows))
    return [(f"codec {name} frames/s", rate, "", None) for name, rate in rows]


def decoder(plan: Plan) -> list[Goal]:
    failures, kinds = bench_decoder_long.run(plan.decoder_inputs, seed=2024)
    print(f"{plan.decoder_inputs:,} inputs {kinds}: {len(failures)} failures")
    for index, case, reason in failures[:5]:
        print(f"  #{index} {case.kind}: {reason}")
    return [
        (
            f"decoder {plan.decoder_inputs:,} random inputs failures",
            len(failures),
            "0",
            not failures,
        )
    ]


def soak(plan: Plan) -> list[Goal]:
    logging.getLogger().setLevel(logging.CRITICAL)
    report = asyncio.run(bench_soak.soak(plan.soak_seconds, seed=1))
    for name, value in bench_soak.summary(report):
        print(f"{name:32s} {value}")
    for problem in report.problems[:10]:
        print("PROBLEM:", problem)
    rec = max(report.recoveries_s, default=float("nan"))
    return [
        (
            "soak stale-policy mismatches",
            len(report.stale_mismatches),
            "0",
            not report.stale_mismatches,
        ),
        ("soak late switch commands", len(report.late_commands), "0", not report.late_commands),
        (
            "soak doubled switch commands",
            len(report.doubled_commands),
            "0",
            not report.doubled_commands,
        ),
        (
            "soak crashes / ERROR logs / unrecovered",
            len(report.crashed) + len(report.errors_logged) + len(report.unrecovered),
            "0",
            not (report.crashed or report.errors_logged or report.unrecovered),
        ),
        ("soak max recovery to fresh data s", rec, "<= 2", rec <= 2.0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a few minutes)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    tool("modbus_load")  # build the C yardsticks first, once
    goals: list[Goal] = []
    for title, work in (
        ("Codec", codec),
        ("TCP cached reads: gateway vs C libmodbus vs bare pymodbus", tcp),
        ("RTU over a pty pair vs wire time", rtu),
        ("Freshness", freshness),
        ("Scale: 32 twin links, 64 TCP clients", scale),
        ("Decoder, long random run", decoder),
        ("Fault-injection soak", soak),
    ):
        section(title, lambda work=work: work(plan), goals)  # type: ignore[misc]
    print("\n== Figures against the goals")
    verdict = {True: "met", False: "MISSED", None: ""}
    print(table(("figure", "value", "goal", ""), [[*g[:3], verdict[g[3]]] for g in goals]))


if __name__ == "__main__":
    main()
