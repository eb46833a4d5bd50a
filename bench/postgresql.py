#!/usr/bin/env python3
"""The shipyard PostgreSQL image: size, start to ready, stop.

Measured, RUNS times each (medians, with min and max):
  first start   `docker run` on an empty data volume -> ready; includes initdb,
                the temporary server, POSTGRES_DB and a one-file initdb.d
  warm start    `docker start` of the stopped container -> ready
  healthy       the same two, up to Docker's HEALTHCHECK reporting healthy
                (`shipyard-init status` every 2 s, so it lags by up to 2 s)
  stop          `docker stop` (default 10 s timeout), and its exit code
"ready" is measured from the host, without `docker exec`: a PostgreSQL
startup message to the container's address on port 5432 that the server
answers with an authentication request, not with "the database system is
starting up". The temporary first-run server does not listen on TCP, so
this cannot pass before the first-run steps are done.
"clean restarts" counts warm starts whose server log says "database system
was shut down at" and shows no recovery.

The image is shipyard/postgresql:17 as the postgresql_image role built it;
with --build (or when it is missing) it is built first with `docker build`.

Usage: bench/postgresql.py [--runs 5] [--image shipyard/postgresql:17] [--build]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import resolve_base_image, sh

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-" + uuid.uuid4().hex  # a throwaway container's superuser password
UNCLEAN_SIGNS = ("not properly shut down", "automatic recovery", "crash recovery")


def build(image: str) -> float:
    began = time.monotonic()
    sh(
        "docker",
        "build",
        "--quiet",
        "--build-arg",
        f"BASE_IMAGE={resolve_base_image()}",
        "-f",
        str(ROOT / "images/postgresql/Dockerfile"),
        "-t",
        image,
        str(ROOT / "images"),
    )
    return time.monotonic() - began


def inspect(container: str) -> dict:
    return json.loads(sh("docker", "inspect", container).stdout)[0]


def address(container: str) -> str:
    networks = inspect(container)["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in networks.values() if n["IPAddress"])


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


def wait(container: str, began: float, timeout: float = 180) -> tuple[float, float]:
    """Seconds from `began` to ready (TCP) and to healthy (HEALTHCHECK)."""
    host = address(container)
    ready = healthy = None
    deadline = began + timeout
    while ready is None or healthy is None:
        if ready is None and accepting(host):
            ready = time.monotonic() - began
        if healthy is None:
            state = inspect(container)["State"]
            if state["Health"]["Status"] == "healthy":
                healthy = time.monotonic() - began
            elif not state["Running"]:
                logs = sh("docker", "logs", container, check=False)
                sys.exit(f"{container} exited:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        if time.monotonic() > deadline:
            sys.exit(f"{container} not ready within {timeout:g} s")
        time.sleep(0.02)
    # The TCP probe can only pass before HEALTHCHECK's next tick, never after it.
    return ready, max(healthy, ready)


def stop(container: str) -> tuple[float, int]:
    began = time.monotonic()
    sh("docker", "stop", container, timeout=60)
    seconds = time.monotonic() - began
    return seconds, int(inspect(container)["State"]["ExitCode"])


def clean_restart(container: str) -> bool:
    out = sh(
        "docker",
        "exec",
        container,
        "sh",
        "-c",
        "cat /var/log/postgresql/*.json",
    ).stdout
    messages = [json.loads(line)["message"] for line in out.splitlines() if line.strip()]
    # The last start-up is the part after the last "starting PostgreSQL".
    last = max(i for i, m in enumerate(messages) if m.startswith("starting PostgreSQL"))
    tail = messages[last:]
    return any(m.startswith("database system was shut down at") for m in tail) and not any(
        sign in m for m in tail for sign in UNCLEAN_SIGNS
    )


def row(name: str, values: list[float], unit: str = "s") -> str:
    if not values:
        return f"| {name} | - | - | - | 0 |"
    med, low, high = statistics.median(values), min(values), max(values)
    return f"| {name} | {med:.2f} {unit} | {low:.2f} | {high:.2f} | {len(values)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="shipyard/postgresql:17")
    parser.add_argument("--build", action="store_true", help="docker build the image first")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    present = sh("docker", "image", "inspect", args.image, check=False).returncode == 0
    if args.build or not present:
        print(f"building {args.image} ({build(args.image):.1f} s)", file=sys.stderr)
    size_mb = (
        int(sh("docker", "image", "inspect", "--format", "{{.Size}}", args.image).stdout) / 1e6
    )

    first_ready: list[float] = []
    first_healthy: list[float] = []
    warm_ready: list[float] = []
    warm_healthy: list[float] = []
    stops: list[float] = []
    codes: list[int] = []
    clean: list[bool] = []
    with tempfile.TemporaryDirectory() as initdb:
        script = Path(initdb) / "10-table.sql"
        script.write_text(
            "CREATE TABLE bench (id int PRIMARY KEY); INSERT INTO bench VALUES (1);\n"
        )
        script.chmod(0o644)
        Path(initdb).chmod(0o755)
        for run in range(args.runs):
            name = f"shipyard-bench-pg-{uuid.uuid4().hex[:8]}"
            try:
                began = time.monotonic()
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
                    args.image,
                )
                ready, healthy = wait(name, began)
                first_ready.append(ready)
                first_healthy.append(healthy)
                seconds, code = stop(name)
                stops.append(seconds)
                codes.append(code)

                began = time.monotonic()
                sh("docker", "start", name)
                ready, healthy = wait(name, began)
                warm_ready.append(ready)
                warm_healthy.append(healthy)
                clean.append(clean_restart(name))
                seconds, code = stop(name)
                stops.append(seconds)
                codes.append(code)
            finally:
                sh("docker", "rm", "--force", "--volumes", name, check=False)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    print(f"\n{args.image}: {size_mb:.0f} MB, {args.runs} runs\n")
    print("| measure | median | min | max | n |")
    print("| --- | --- | --- | --- | --- |")
    print(row("first start -> ready (initdb, initdb.d)", first_ready))
    print(row("first start -> healthy", first_healthy))
    print(row("warm start -> ready", warm_ready))
    print(row("warm start -> healthy", warm_healthy))
    print(row("docker stop", stops))
    print(f"| docker stop exit codes | {sorted(set(codes))} | | | {len(codes)} |")
    print(f"| clean restarts | {sum(clean)}/{len(clean)} | | | {len(clean)} |")
    print(f"| image size | {size_mb:.0f} MB | | | |")


if __name__ == "__main__":
    main()
