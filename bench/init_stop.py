#!/usr/bin/env python3
"""How cleanly and quickly `docker stop` ends a multi-service container.

One image (MariaDB + Apache, the same files for every row), three entrypoints:

  naive     bash as PID 1: `service … start`, then `trap …; while true; do sleep 1; done`
  tini      tini as PID 1 over `service … start && exec sleep infinity`
  shipyard  tini as PID 1 over shipyard-init and a services.toml

For each, RUNS containers are started, made to orphan ORPHANS grandchildren,
then stopped. The table gives the median `docker stop` wall time, the exit
codes seen, the most zombies left before the stop, how many runs left MariaDB
data that needed no crash recovery on the next start, and shipyard-init's
overhead: the time from the stop signal to its exit, less the time the
services themselves took to stop (from `docker logs --timestamps`).

Usage: bench/init_stop.py [--runs 5] [--base-image IMAGE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from benchlib import docker_build, resolve_base_image, sh

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "shipyard-bench/init-stop:latest"
ORPHANS = 100

# The bench image's Dockerfile, the naive entrypoint and shipyard-init's service file.
CONTEXT = ROOT / "bench/init-stop"

MODES = {
    "naive": ["--entrypoint", "/bin/bash", IMAGE, "/usr/local/bin/naive.sh"],
    "tini": [
        "--entrypoint",
        "/usr/bin/tini",
        IMAGE,
        "--",
        "/bin/bash",
        "-c",
        "service mariadb start && service apache2 start && exec sleep infinity",
    ],
    "shipyard": ["--entrypoint", "/usr/bin/tini", IMAGE, "--", "/usr/local/bin/shipyard-init"],
}

READY = (
    "mariadb-admin --silent ping >/dev/null 2>&1 && "
    "python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1/\")'"
)
ORPHAN_MAKER = (
    f"import os\nfor _ in range({ORPHANS}):\n"
    "    if os.fork() == 0:\n"
    "        if os.fork() == 0:\n"
    "            os._exit(0)\n"
    "        os._exit(0)\n"
    "    os.wait()\n"
)
# MariaDB logs these on start-up only when the previous run did not shut down cleanly.
UNCLEAN_SIGNS = ("crash recovery", "Recovering after a crash", "was not shut down normally")
RECOVERY_CHECK = """\
install -d -o mysql -g mysql /run/mysqld
mariadbd --user=mysql --skip-networking --log-error=/tmp/err.log &
for _ in $(seq 300); do mariadb-admin --silent ping >/dev/null 2>&1 && break; sleep 0.1; done
mariadb-admin shutdown
wait
cat /tmp/err.log
"""
ZOMBIES = "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l"


@dataclass
class Row:
    mode: str
    stop_seconds: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    zombies: list[int] = field(default_factory=list)
    clean: list[bool] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)


def build(base_image: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        shutil.copytree(CONTEXT, context, dirs_exist_ok=True)
        shutil.copy(ROOT / "images/common/init/shipyard_init.py", context)
        return docker_build(IMAGE, context, base_image)


def wait_ready(name: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while sh("docker", "exec", name, "sh", "-c", READY, check=False).returncode != 0:
        if time.monotonic() > deadline:
            sys.exit(f"{name} never became ready:\n{sh('docker', 'logs', name).stderr}")
        time.sleep(0.2)


def orphan_and_count_zombies(name: str) -> int:
    sh("docker", "exec", name, "python3", "-c", ORPHAN_MAKER)
    time.sleep(1.0)
    return int(sh("docker", "exec", name, "sh", "-c", ZOMBIES).stdout.strip())


def shut_down_cleanly(volume: str) -> bool:
    """Start MariaDB once more on the stopped container's data: a clean stop needs no recovery."""
    check = sh(
        "docker",
        "run",
        "--rm",
        "--volume",
        f"{volume}:/var/lib/mysql",
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        RECOVERY_CHECK,
    )
    log = check.stdout
    if "ready for connections" not in log:
        sys.exit(f"the recovery check never got MariaDB up:\n{log}\n{check.stderr}")
    return not any(sign in log for sign in UNCLEAN_SIGNS)


def stamp(line: str) -> float:
    return datetime.fromisoformat(line.split(" ", 1)[0][:26] + "+00:00").timestamp()


def supervisor_overhead_ms(name: str) -> float:
    """Signal-to-exit time of shipyard-init less the services' own stop times."""
    logs = sh("docker", "logs", "--timestamps", name).stderr.splitlines()
    received = next(stamp(x) for x in logs if "received SIGTERM" in x)
    exited = next(stamp(x) for x in logs if "exiting with code" in x)
    own = sum(float(m.group(1)) for x in logs if (m := re.search(r"stopped after ([\d.]+) s", x)))
    return (exited - received - own) * 1000


def one_run(mode: str, row: Row) -> None:
    name = f"shipyard-bench-{mode}-{uuid.uuid4().hex[:6]}"
    sh(
        "docker",
        "run",
        "--detach",
        "--name",
        name,
        "--volume",
        f"{name}:/var/lib/mysql",
        *MODES[mode],
    )
    try:
        wait_ready(name)
        row.zombies.append(orphan_and_count_zombies(name))
        began = time.monotonic()
        sh("docker", "stop", name)
        row.stop_seconds.append(time.monotonic() - began)
        state = json.loads(sh("docker", "inspect", "--format", "{{json .State}}", name).stdout)
        row.exit_codes.append(state["ExitCode"])
        row.clean.append(shut_down_cleanly(name))
        if mode == "shipyard":
            row.overhead_ms.append(supervisor_overhead_ms(name))
    finally:
        sh("docker", "rm", "--force", name, check=False)
        sh("docker", "volume", "rm", name, check=False)


def print_table(rows: list[Row], runs: int) -> None:
    naive = statistics.median(rows[0].stop_seconds)
    print(f"\n`docker stop` of a MariaDB + Apache container, {runs} runs per row (medians)\n")
    print(
        "| entrypoint | stop (s) | vs naive | exit codes | zombies left | clean DB stop | "
        "init overhead (ms) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for row in rows:
        stop = statistics.median(row.stop_seconds)
        overhead = f"{statistics.median(row.overhead_ms):.1f}" if row.overhead_ms else "n/a"
        print(
            f"| {row.mode} | {stop:.3f} | {stop / naive:.2f}x | "
            f"{','.join(map(str, sorted(set(row.exit_codes))))} | {max(row.zombies)} | "
            f"{sum(row.clean)}/{len(row.clean)} | {overhead} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--base-image")
    args = parser.parse_args()
    seconds = build(args.base_image or resolve_base_image())
    print(f"image built in {seconds:.1f} s")
    rows = [Row(mode) for mode in MODES]
    for _ in range(args.runs):  # interleave modes so drift in machine load hits all alike
        for row in rows:
            one_run(row.mode, row)
    print_table(rows, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
