#!/usr/bin/env python3
"""The shipyard PostgreSQL image against the official entrypoint's way: start, stop, size.

Two images of the same Debian postgresql-17 packages, built from the same
base image in the same run:

  shipyard  images/postgresql: tini, shipyard-init, prepare, the log agent,
            the first run (bin/postgres-first-run), JSON log files
  naive     bench/naive-postgresql: an entrypoint that takes the official
            docker-library entrypoint's steps in its order (initdb, a
            temporary server on the socket with pg_ctl --wait, CREATE
            DATABASE, initdb.d, pg_ctl stop, exec postgres); the server is PID 1

Measured RUNS times, the two images interleaved in each run so that drift in
the machine's load hits both alike (medians, with min and max):
  first start   `docker run` on an empty data volume -> ready; includes initdb,
                the temporary server, POSTGRES_DB and a one-file initdb.d
  warm start    `docker start` of the stopped container -> ready
  stop          `docker stop` (default 10 s timeout), and its exit code
  CPU s         the CPU time the container's processes used until ready (its
                cgroup): unlike wall time, barely moved by other load on the host
"ready" is what `pg_isready` checks, over TCP from the host: a startup
message to the container's address on port 5432 that the server answers with
an authentication request, not with "the database system is starting up".
The temporary first-run servers do not listen on TCP, so this cannot pass
before the first-run steps are done. For shipyard, "supervisor ready" is
the time of shipyard-init's "start-up complete" line (when `shipyard-init
status --wait`, which roles and tests wait with, returns: every service
ready, the log agent included); "clean restarts" counts warm
starts whose server log says "database system was shut down at" and shows
no recovery.

Where shipyard's warm start and stop go, from the supervisor's own log lines
(`docker logs --timestamps`, read after the run): from `docker start` to
shipyard-init's first line (tini, the entrypoint, the supervisor's start),
each one-shot, the server from its start to its readiness, and on `docker
stop` each service from its signal to its exit. Medians, milliseconds.

Goals: first start <= 0.9x naive, warm start <= 1.0x, stop <= 1.2x.

Usage: bench/postgresql.py [--runs 5] [--build] [--base-image IMAGE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from benchlib import (
    cgroup_seconds,
    docker_build,
    load_average,
    resolve_base_image,
    sh,
    supervisor_ready,
)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-" + uuid.uuid4().hex  # a throwaway container's superuser password
UNCLEAN_SIGNS = ("not properly shut down", "automatic recovery", "crash recovery")
GOALS = {"first start": 0.9, "warm start": 1.0, "docker stop": 1.2}


@dataclass
class Image:
    label: str
    tag: str
    dockerfile: Path
    context: Path
    supervised: bool
    first: list[float] = field(default_factory=list)
    first_cpu: list[float] = field(default_factory=list)
    first_supervisor: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    warm_cpu: list[float] = field(default_factory=list)
    warm_supervisor: list[float] = field(default_factory=list)
    stops: list[float] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    clean: list[bool] = field(default_factory=list)
    size_mb: float = 0.0
    # Phase -> seconds, one list per phase (shipyard only).
    warm_phases: dict[str, list[float]] = field(default_factory=dict)
    stop_phases: dict[str, list[float]] = field(default_factory=dict)


IMAGES = (
    Image(
        "shipyard",
        "shipyard/postgresql:17",
        ROOT / "images/postgresql/Dockerfile",
        ROOT / "images",
        supervised=True,
    ),
    Image(
        "naive",
        "shipyard-bench/naive-postgresql:17",
        ROOT / "bench/naive-postgresql/Dockerfile",
        ROOT / "bench/naive-postgresql",
        supervised=False,
    ),
)


def build(image: Image, base_image: str) -> float:
    return docker_build(image.tag, image.context, base_image, image.dockerfile)


def inspect(container: str) -> dict:
    return json.loads(sh("docker", "inspect", container).stdout)[0]


def accepting(host: str) -> bool:
    """True when the server answers a startup message with an authentication request."""
    params = b"user\0bench\0database\0postgres\0\0"
    packet = struct.pack("!II", 8 + len(params), 196608) + params
    try:
        with socket.create_connection((host, 5432), timeout=1) as conn:
            conn.sendall(packet)
            return conn.recv(1)[:1] == b"R"
    except OSError:
        return False


def wait_ready(
    image: Image, container: str, began: float, began_wall: float
) -> tuple[float, float, float | None]:
    """Seconds to TCP-ready (from `began`), the container's CPU seconds until then,
    and for shipyard the seconds to the supervisor's ready."""
    info = inspect(container)
    host = next(
        n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values() if n["IPAddress"]
    )
    while not accepting(host):
        if not inspect(container)["State"]["Running"]:
            logs = sh("docker", "logs", container, check=False)
            sys.exit(f"{container} exited:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        if time.monotonic() - began > 180:
            sys.exit(f"{container} not ready within 180 s")
        time.sleep(0.01)
    ready = time.monotonic() - began
    cpu = cgroup_seconds(info["Id"])
    if not image.supervised:
        return ready, cpu, None
    return ready, cpu, supervisor_ready(container, began_wall)


def stop(image: Image, container: str) -> float:
    """`docker stop`; the wall-clock time it was asked, for the phases."""
    began, began_wall = time.monotonic(), time.time()
    sh("docker", "stop", container, timeout=60)
    image.stops.append(time.monotonic() - began)
    image.codes.append(int(inspect(container)["State"]["ExitCode"]))
    return began_wall


STEP = re.compile(
    r"shipyard-init \| (?:one-shot (\S+) completed|(\S+) is ready|(\S+) stopped after)"
)


def supervisor_lines(container: str, since: float) -> list[tuple[float, str]]:
    """(wall time, text) of shipyard-init's lines since `since`."""
    out = sh("docker", "logs", "--timestamps", "--since", f"{since:.3f}", container)
    lines = []
    for line in (out.stdout + out.stderr).splitlines():
        stamp, _, text = line.partition(" ")
        if text.startswith("shipyard-init | "):
            when = datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()
            lines.append((when, text))
    return sorted(lines)


def add_phases(into: dict[str, list[float]], began: float, lines: list[tuple[float, str]]) -> None:
    """Each step's seconds since the step before it, the first since `began`."""
    previous = began
    for index, (when, text) in enumerate(lines):
        if index == 0:
            into.setdefault("until shipyard-init's first line", []).append(when - previous)
            previous = when
            continue
        match = STEP.search(text)
        if match is None:
            continue
        oneshot, ready, stopped = match.groups()
        key = f"one-shot {oneshot}" if oneshot else f"{ready} ready" if ready else f"{stopped} stop"
        into.setdefault(key, []).append(when - previous)
        previous = when


def clean_restart(container: str) -> bool:
    out = sh("docker", "exec", container, "sh", "-c", "cat /var/log/postgresql/*.json").stdout
    messages = [json.loads(line)["message"] for line in out.splitlines() if line.strip()]
    # The last start-up is the part after the last "starting PostgreSQL".
    last = max(i for i, m in enumerate(messages) if m.startswith("starting PostgreSQL"))
    tail = messages[last:]
    return any(m.startswith("database system was shut down at") for m in tail) and not any(
        sign in m for m in tail for sign in UNCLEAN_SIGNS
    )


def cycle(image: Image, initdb: str) -> None:
    name = f"shipyard-bench-pg-{image.label}-{uuid.uuid4().hex[:6]}"
    try:
        began, began_wall = time.monotonic(), time.time()
        sh(
            "docker",
            "run",
            "--detach",
            "--name",
            name,
            "--env",
            f"POSTGRES_PASSWORD={PASSWORD}",
            "--env",
            "POSTGRES_DB=bench",
            "--volume",
            f"{initdb}:/docker-entrypoint-initdb.d:ro",
            image.tag,
        )
        ready, cpu, supervisor = wait_ready(image, name, began, began_wall)
        image.first.append(ready)
        image.first_cpu.append(cpu)
        if supervisor is not None:
            image.first_supervisor.append(supervisor)
        stop(image, name)

        began, began_wall = time.monotonic(), time.time()
        sh("docker", "start", name)
        ready, cpu, supervisor = wait_ready(image, name, began, began_wall)
        image.warm.append(ready)
        image.warm_cpu.append(cpu)
        if supervisor is not None:
            image.warm_supervisor.append(supervisor)
            image.clean.append(clean_restart(name))
        stopped_wall = stop(image, name)
        if image.supervised:
            lines = supervisor_lines(name, began_wall)
            add_phases(image.warm_phases, began_wall, [x for x in lines if x[0] < stopped_wall])
            add_phases(image.stop_phases, stopped_wall, [x for x in lines if x[0] >= stopped_wall])
    finally:
        sh("docker", "rm", "--force", "--volumes", name, check=False)


def cell(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def print_table(runs: int, base_image: str) -> None:
    shipyard, naive = IMAGES
    print(f"\nPostgreSQL 17, shipyard vs the official entrypoint's way; base {base_image}; ")
    print(f"medians (min-max) of {runs} interleaved runs, seconds\n")
    print("| measure | shipyard | naive | ratio | goal |")
    print("|---|---:|---:|---:|---|")
    rows = (
        ("first start", "first start -> ready (TCP)", shipyard.first, naive.first),
        ("warm start", "warm start -> ready (TCP)", shipyard.warm, naive.warm),
        ("docker stop", "docker stop", shipyard.stops, naive.stops),
    )
    verdicts = []
    for key, title, ours, theirs in rows:
        ratio = statistics.median(ours) / statistics.median(theirs)
        goal = GOALS[key]
        verdict = "met" if ratio <= goal else "NOT met"
        verdicts.append(f"{key} <= {goal}x: {verdict} ({ratio:.2f}x)")
        print(f"| {title} | {cell(ours)} | {cell(theirs)} | {ratio:.2f}x | <= {goal}x: {verdict} |")
    for title, ours, theirs in (
        ("first start: CPU s in the container until ready", shipyard.first_cpu, naive.first_cpu),
        ("warm start: CPU s in the container until ready", shipyard.warm_cpu, naive.warm_cpu),
    ):
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"| {title} | {cell(ours)} | {cell(theirs)} | {ratio:.2f}x | |")
    print(f"| first start -> supervisor ready | {cell(shipyard.first_supervisor)} | | | |")
    print(f"| warm start -> supervisor ready | {cell(shipyard.warm_supervisor)} | | | |")
    codes = [",".join(map(str, sorted(set(i.codes)))) for i in IMAGES]
    print(f"| docker stop exit codes | {codes[0]} | {codes[1]} | | |")
    print(f"| clean restarts | {sum(shipyard.clean)}/{len(shipyard.clean)} | | | |")
    print(f"| image size (MB) | {shipyard.size_mb:.0f} | {naive.size_mb:.0f} | | |")
    for title, phases in (
        ("warm start", shipyard.warm_phases),
        ("docker stop", shipyard.stop_phases),
    ):
        print(f"\nshipyard's {title}, step by step (medians, ms, each since the one before)\n")
        print("| step | ms |")
        print("|---|---:|")
        for step, values in phases.items():
            print(f"| {step} | {statistics.median(values) * 1000:.0f} |")
    print()
    for verdict in verdicts:
        print(f"Goal {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--build", action="store_true", help="docker build both images first")
    parser.add_argument("--base-image")
    args = parser.parse_args()
    began = os.getloadavg()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    base_image = args.base_image or resolve_base_image()

    for image in IMAGES:
        present = sh("docker", "image", "inspect", image.tag, check=False).returncode == 0
        if args.build or not present:
            print(f"building {image.tag} ({build(image, base_image):.1f} s)", file=sys.stderr)
        size = sh("docker", "image", "inspect", "--format", "{{.Size}}", image.tag).stdout
        image.size_mb = int(size) / 1e6

    with tempfile.TemporaryDirectory() as initdb:
        script = Path(initdb) / "10-table.sql"
        script.write_text(
            "CREATE TABLE bench (id int PRIMARY KEY); INSERT INTO bench VALUES (1);\n"
        )
        script.chmod(0o644)
        Path(initdb).chmod(0o755)
        for run in range(args.runs):
            for image in IMAGES if run % 2 == 0 else reversed(IMAGES):
                cycle(image, initdb)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    print_table(args.runs, base_image)
    print(load_average(began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
