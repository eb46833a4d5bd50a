#!/usr/bin/env python3
"""The shipyard LAMP image against the naive one: build, size, start and stop.

Both images are built from the same base image in the same run:

  shipyard  images/lamp/Dockerfile (context images/): --no-install-recommends,
            no caches, tini + shipyard-init, first-run MariaDB initialisation
  naive     bench/naive-lamp/Dockerfile: recommends, apt lists left behind,
            `service ... start` and a bash trap loop as PID 1

Measured, RUNS times each (medians; builds and containers interleave so that
drift in machine load hits both alike):
  cold build        `docker build --no-cache`
  rebuild           `docker build` again with nothing changed (layer cache)
  role, no change   `ansible-playbook playbooks/images.yml --tags lamp` when the image is
                    up to date (container_image skips the build); shipyard only
  first start       `docker run` on an empty data volume -> ready
  warm restart      `docker start` of the stopped container -> ready
  stop              `docker stop` (default 10 s timeout), and its exit code
"ready" is the same probe for both: Apache answers HTTP on port 80 (asked from
the host, which costs the container nothing), and then MariaDB answers
`mariadb-admin ping` on its socket (the naive image's MariaDB listens on
127.0.0.1 only).
shipyard's "supervisor ready" is the time of shipyard-init's "start-up
complete" line: every service ready, which is when `shipyard-init status
--wait` (what roles and tests wait with) returns; the naive image has
nothing like it. Docker's own health (a `test -e` every
30 s) turns healthy only at its first check, one interval after the start,
and is not measured here. "clean DB stop" counts warm restarts whose MariaDB
log shows no crash recovery (shipyard only: the naive image logs MariaDB to
a syslog that does not run).

Goal: shipyard's first start -> supervisor ready <= 3 s (median).

Usage: bench/lamp.py [--runs 5] [--base-image IMAGE] [--no-builds]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import docker_build, image_id, load_average, resolve_base_image, sh, supervisor_ready

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-" + uuid.uuid4().hex  # a throwaway container's root password
FIRST_START_GOAL = 3.0  # seconds, first start -> every service ready
UNCLEAN_SIGNS = ("crash recovery", "Recovering after a crash", "was not shut down normally")


@dataclass
class Image:
    label: str
    tag: str
    dockerfile: Path
    context: Path
    run_args: tuple[str, ...] = ()
    supervised: bool = False
    cold: list[float] = field(default_factory=list)
    rebuild: list[float] = field(default_factory=list)
    role: list[float] = field(default_factory=list)
    first_ready: list[float] = field(default_factory=list)
    first_supervisor: list[float] = field(default_factory=list)
    warm_ready: list[float] = field(default_factory=list)
    warm_supervisor: list[float] = field(default_factory=list)
    stop: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    clean: list[bool] = field(default_factory=list)
    failures: int = 0
    size_mb: float = 0.0


IMAGES = (
    Image(
        "shipyard",
        "shipyard-bench/lamp:latest",
        ROOT / "images/lamp/Dockerfile",
        ROOT / "images",
        ("--env", f"MARIADB_ROOT_PASSWORD={PASSWORD}"),
        supervised=True,
    ),
    Image(
        "naive",
        "shipyard-bench/naive-lamp:latest",
        ROOT / "bench/naive-lamp/Dockerfile",
        ROOT / "bench/naive-lamp",
    ),
)


def build(image: Image, base_image: str, *, cold: bool) -> float:
    return docker_build(image.tag, image.context, base_image, image.dockerfile, cold=cold)


def role_run(*, expect_no_change: bool = True) -> float:
    env = os.environ | {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{ROOT / '.venv/bin'}:{os.environ['PATH']}",
    }
    began = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/images.yml", "--tags", "lamp"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    seconds = time.monotonic() - began
    if proc.returncode != 0 or (expect_no_change and "changed=0" not in proc.stdout):
        sys.exit(f"images.yml failed or was not a no-op:\n{proc.stdout[-3000:]}\n{proc.stderr}")
    return seconds


def address(name: str) -> str:
    networks = json.loads(sh("docker", "inspect", name).stdout)[0]["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in networks.values() if n["IPAddress"])


def http_answers(host: str) -> bool:
    """Apache answers an HTTP request on port 80, with any status; asked from the host."""
    try:
        with socket.create_connection((host, 80), timeout=1) as conn:
            conn.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
            return conn.recv(5) == b"HTTP/"
    except OSError:
        return False


def probe(host: str, name: str) -> bool:
    """Apache answers (from the host, free for the container), then MariaDB answers a ping
    on its socket (one small client in the container, only once Apache is up)."""
    if not http_answers(host):
        return False
    ping = ("mariadb-admin", "--protocol=socket", "--silent", "ping")
    return sh("docker", "exec", name, *ping, check=False).returncode == 0


def running(name: str) -> None:
    state = json.loads(sh("docker", "inspect", "--format", "{{json .State}}", name).stdout)
    if not state["Running"]:
        log = sh("docker", "logs", name, check=False)
        sys.exit(f"{name} exited ({state['ExitCode']}):\n{log.stdout}{log.stderr}")


class NotReadyError(Exception):
    pass


def wait_ready(
    image: Image, name: str, began: float, began_wall: float
) -> tuple[float, float | None]:
    """Seconds from `began` until ready, and until the supervisor's ready (shipyard only)."""
    deadline = began + 300
    host = address(name)
    while not probe(host, name):
        if time.monotonic() > deadline:
            raise NotReadyError(f"{name} not ready within 300 s")
        running(name)
        time.sleep(0.1)
    ready = time.monotonic() - began
    return ready, supervisor_ready(name, began_wall) if image.supervised else None


def timed_stop(image: Image, name: str) -> None:
    began = time.monotonic()
    sh("docker", "stop", name)
    image.stop.append(time.monotonic() - began)
    state = json.loads(sh("docker", "inspect", "--format", "{{json .State}}", name).stdout)
    image.exit_codes.append(state["ExitCode"])


def start_stop_cycle(image: Image) -> None:
    name = f"shipyard-bench-lamp-{image.label}-{uuid.uuid4().hex[:6]}"
    began, began_wall = time.monotonic(), time.time()
    sh("docker", "run", "--detach", "--name", name, *image.run_args, image.tag)
    try:
        ready, supervisor = wait_ready(image, name, began, began_wall)
        image.first_ready.append(ready)
        if supervisor is not None:
            image.first_supervisor.append(supervisor)
        timed_stop(image, name)

        began, began_wall = time.monotonic(), time.time()
        sh("docker", "start", name)
        ready, supervisor = wait_ready(image, name, began, began_wall)
        image.warm_ready.append(ready)
        if supervisor is not None:
            image.warm_supervisor.append(supervisor)
        if image.supervised:
            started = sh("docker", "inspect", "--format", "{{.State.StartedAt}}", name).stdout
            log = sh("docker", "logs", "--since", started.strip(), name)
            image.clean.append(not any(s in log.stdout + log.stderr for s in UNCLEAN_SIGNS))
        timed_stop(image, name)
    except NotReadyError as exc:
        # The naive image's init scripts give up now and then on a loaded host;
        # the run is counted as failed. shipyard must never fail.
        if image.supervised:
            sys.exit(str(exc))
        image.failures += 1
        print(f"{exc}; counted as a failed start", file=sys.stderr)
    finally:
        sh("docker", "rm", "--force", "--volumes", name, check=False)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "n/a"


def clean_count(image: Image) -> str:
    return f"{sum(image.clean)}/{len(image.clean)}" if image.clean else "n/a"


def print_table(runs: int, base_image: str) -> None:
    shipyard, naive = IMAGES
    print(f"\nshipyard LAMP image vs the naive one; base {base_image}; medians of {runs} runs\n")
    print("| | shipyard | naive |")
    print("|---|---:|---:|")
    rows = (
        ("image size (MB)", lambda i: f"{i.size_mb:.0f}"),
        ("cold build, --no-cache (s)", lambda i: median(i.cold)),
        ("rebuild, nothing changed (s)", lambda i: median(i.rebuild)),
        ("container_image role, nothing changed (s)", lambda i: median(i.role)),
        ("docker run -> ready, first start (s)", lambda i: median(i.first_ready)),
        ("docker run -> supervisor ready, first start (s)", lambda i: median(i.first_supervisor)),
        ("docker start -> ready, warm restart (s)", lambda i: median(i.warm_ready)),
        ("docker start -> supervisor ready, warm restart (s)", lambda i: median(i.warm_supervisor)),
        ("docker stop (s)", lambda i: median(i.stop)),
        ("docker stop exit codes", lambda i: ",".join(map(str, sorted(set(i.exit_codes))))),
        ("clean DB stop (no crash recovery)", clean_count),
        ("start/stop cycles that never became ready", lambda i: str(i.failures)),
    )
    for title, cell in rows:
        print(f"| {title} | {cell(shipyard)} | {cell(naive)} |")
    if naive.size_mb:
        print(f"\nshipyard is {shipyard.size_mb / naive.size_mb:.0%} of the naive image's size.")
    first = statistics.median(shipyard.first_supervisor)
    verdict = "met" if first <= FIRST_START_GOAL else "NOT met"
    goal = f"first start -> supervisor ready <= {FIRST_START_GOAL:g} s"
    print(f"Goal: {goal}: {verdict} ({first:.2f} s).")


def build_rows(runs: int, base_image: str) -> None:
    for run in range(runs):
        for image in IMAGES:
            image.cold.append(build(image, base_image, cold=True))
        times = ", ".join(f"{i.label} {i.cold[-1]:.1f} s" for i in IMAGES)
        print(f"cold builds, run {run + 1}: {times}", flush=True)
    for _ in range(runs):
        for image in IMAGES:
            image.rebuild.append(build(image, base_image, cold=False))
    shipyard = IMAGES[0]
    role_run(expect_no_change=False)  # may build shipyard/lamp; only the no-op runs count
    shipyard.role = [role_run() for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--base-image")
    parser.add_argument(
        "--no-builds",
        action="store_true",
        help="measure start and stop only, on the images as they are (built once if missing)",
    )
    args = parser.parse_args()
    began = os.getloadavg()
    base_image = args.base_image or resolve_base_image()

    if args.no_builds:
        for image in IMAGES:
            if image_id(image.tag) is None:
                build(image, base_image, cold=False)
    else:
        build_rows(args.runs, base_image)
    for image in IMAGES:
        size = sh("docker", "image", "inspect", "--format", "{{.Size}}", image.tag).stdout
        image.size_mb = int(size) / 1e6
    for run in range(args.runs):
        for image in IMAGES:
            start_stop_cycle(image)
        print(f"start/stop cycles, run {run + 1} done", flush=True)
    print_table(args.runs, base_image)
    print(load_average(began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
