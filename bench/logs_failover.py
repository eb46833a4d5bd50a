#!/usr/bin/env python3
"""Log failover: how long an agent stalls when one of its two collectors fails, and its lines/s.

One agent (python -m shipyard_logs.agent) reads a backlog of LINES Apache
lines, all the same length, and ships them to two real collector processes,
A and B, as `[[servers]]` of equal weight. This process samples the agent's
committed position (its position file) every few milliseconds: a position
moves only when the oldest unacked batch and every one before it are acked,
so a stall in it is the time the agent's output stood still. Three cases
alternate within every run, so the load of a shared machine hits each:

  baseline  no fault
  kill      collector A is SIGKILLed once a third of the backlog is
            committed: the agent sees its connections reset and sends A's
            unacked frames to B
  freeze    A is SIGSTOPped at the same point: its socket still accepts, only
            the missed UDP heartbeats (heartbeat_type udp, hard_timeout
            HARD_TIMEOUT s, ack_timeout 30 s) tell the agent

Figures: "stall" is the longest time without a commit from the fault on (for
the baseline, from the same offset on); "lines/s after" the lines committed
in the WINDOW seconds after that point over WINDOW; "lines/s" the whole
backlog over its shipping time. Medians over RUNS.

Goals: after a kill the agent stalls at most GOAL_KILL_STALL s and ships at
least GOAL_AFTER_RATIO of the baseline's lines/s in the window; a frozen
collector is left within HARD_TIMEOUT + GOAL_FREEZE_SLACK s.

Usage: bench/logs_failover.py [--lines 400000] [--runs 3] [--window 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from logs import free_port  # bench/logs.py, this directory

ROOT = Path(__file__).resolve().parent.parent
COMMON = ROOT / "images/common"
CASES = ("baseline", "kill", "freeze")
HARD_TIMEOUT = 2.0
GOAL_KILL_STALL = 1.0
GOAL_AFTER_RATIO = 0.5
GOAL_FREEZE_SLACK = 1.0
SAMPLE = 0.005
# Every line the same length, so a committed offset is a line count.
LINE = (
    '10.0.{a:03d}.{b:03d} - - [20/Nov/2026:10:15:00 +0000] "GET /item?id={i:08d} HTTP/1.1" '
    '200 {s} "-" "bench/1.0"\n'
)


def spawn(module: str, config: dict, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    with (workdir / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", f"shipyard_logs.{module}", "--config", str(path)],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(COMMON)},
        )


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"a collector exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("a collector did not listen")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Result:
    case: str
    stall: float
    after: float  # lines/s in the window after the fault
    total: float  # lines/s over the backlog


def committed(pos: Path) -> int:
    try:
        return int(pos.read_text().split("\t")[1], 16)
    except (OSError, IndexError, ValueError):
        return 0


def run_case(case: str, lines: int, window: float, workdir: Path) -> Result:
    log = workdir / "access.log"
    with log.open("w") as handle:
        for i in range(lines):
            handle.write(LINE.format(a=i % 250, b=i % 200, i=i, s=100 + i % 900))
    size = log.stat().st_size
    line_bytes = size / lines
    collectors = {}
    for name in ("a", "b"):
        port = free_port()
        config = {"bind": "127.0.0.1", "port": port, "root": str(workdir / name)}
        config["time_slice_wait"] = 3600
        proc = spawn("collector", config, workdir, f"collector-{name}")
        wait_port(port, proc)
        collectors[name] = (port, proc)
    agent_config = {
        "pos_dir": str(workdir / "pos"),
        "host": "bench",
        "batch_lines": 1000,
        "flush_interval": 0.1,
        "poll_interval": 0.05,
        "connect_timeout": 1.0,
        "ack_timeout": 30.0,
        "retry_max_interval": 1.0,
        "heartbeat_type": "udp",
        "heartbeat_interval": 0.2,
        "hard_timeout": HARD_TIMEOUT,
        "recover_wait": 600.0,  # A stays out for the rest of the run
        "servers": [
            {"name": name, "host": "127.0.0.1", "port": port}
            for name, (port, _) in collectors.items()
        ],
        "sources": [
            {"path": str(log), "tag": "apache.access", "format": "apache2", "read_from_head": True}
        ],
    }
    pos = workdir / "pos" / "apache.access.pos"
    agent = spawn("agent", agent_config, workdir, "agent")
    samples: list[tuple[float, int]] = []
    fault_at: float | None = None
    try:
        deadline = time.monotonic() + 600
        while (offset := committed(pos)) < size:
            now = time.monotonic()
            if now > deadline or agent.poll() is not None:
                sys.exit(f"{case}: the agent did not ship the backlog; see {workdir}/agent.log")
            if not samples or samples[-1][1] != offset:
                samples.append((now, offset))
            if fault_at is None and offset >= size // 3:
                fault_at = now
                victim = collectors["a"][1]
                if case == "kill":
                    victim.kill()
                elif case == "freeze":
                    os.kill(victim.pid, signal.SIGSTOP)
            time.sleep(SAMPLE)
        samples.append((time.monotonic(), size))
    finally:
        stop(agent)
        for _, proc in collectors.values():
            stop(proc)
    assert fault_at is not None
    times = [t for t, _ in samples if t >= fault_at]
    stall = max(b - a for a, b in zip([fault_at, *times], times, strict=False))
    # The window ends early when the backlog does: lines over the time they took.
    until = min(fault_at + window, samples[-1][0])
    in_window = [o for t, o in samples if t <= until]
    start_offset = max(o for t, o in samples if t <= fault_at)
    after = (in_window[-1] - start_offset) / line_bytes / (until - fault_at)
    total = lines / (samples[-1][0] - samples[0][0])
    return Result(case, stall, after, total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=3.0)
    args = parser.parse_args()
    results: dict[str, list[Result]] = {case: [] for case in CASES}
    for run in range(args.runs):
        for case in CASES:
            with tempfile.TemporaryDirectory(prefix=f"failover-{case}-") as tmp:
                results[case].append(run_case(case, args.lines, args.window, Path(tmp)))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    def median(case: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[case])

    base_after = median("baseline", "after")
    print(f"log failover: {args.lines} lines, 2 collectors, median of {args.runs} runs")
    print(f"load average {os.getloadavg()[0]:.2f} at the end\n")
    print(f"| case | stall (s) | lines/s in {args.window:g} s after | vs baseline | lines/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for case in CASES:
        after = median(case, "after")
        print(
            f"| {case} | {median(case, 'stall'):.2f} | {after:,.0f} | "
            f"{after / base_after:.2f}x | {median(case, 'total'):,.0f} |"
        )
    kill_stall, kill_ratio = median("kill", "stall"), median("kill", "after") / base_after
    freeze_stall = median("freeze", "stall")
    goals = [
        (
            f"kill: stall <= {GOAL_KILL_STALL:g} s",
            kill_stall <= GOAL_KILL_STALL,
            f"{kill_stall:.2f} s",
        ),
        (
            f"kill: lines/s after >= {GOAL_AFTER_RATIO:g}x baseline",
            kill_ratio >= GOAL_AFTER_RATIO,
            f"{kill_ratio:.2f}x",
        ),
        (
            f"freeze: stall <= hard_timeout {HARD_TIMEOUT:g} + {GOAL_FREEZE_SLACK:g} s",
            freeze_stall <= HARD_TIMEOUT + GOAL_FREEZE_SLACK,
            f"{freeze_stall:.2f} s",
        ),
    ]
    print("\n| goal | measured | met |\n| --- | ---: | --- |")
    for goal, met, measured in goals:
        print(f"| {goal} | {measured} | {'yes' if met else 'NO'} |")
    return 0 if all(met for _, met, _ in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
