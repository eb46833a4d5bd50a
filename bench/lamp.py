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
"ready" is the same external probe for both: MariaDB answers on its socket
and Apache serves a page. shipyard's "healthy" is Docker's HEALTHCHECK
(`shipyard-init status`, every 2 s), which the naive image does not have.
"clean DB stop" counts warm restarts whose MariaDB log shows no crash
recovery (shipyard only: the naive image logs MariaDB to a syslog that does
not run).

Usage: bench/lamp.py [--runs 5] [--base-image IMAGE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import resolve_base_image, sh

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-" + uuid.uuid4().hex  # a throwaway container's root password
UNCLEAN_SIGNS = ("crash recovery", "Recovering after a crash", "was not shut down normally")


@dataclass
class Image:
    label: str
    tag: str
    dockerfile: Path
    context: Path
    ready_url: str
    run_args: tuple[str, ...] = ()
    healthcheck: bool = False
    cold: list[float] = field(default_factory=list)
    rebuild: list[float] = field(default_factory=list)
    role: list[float] = field(default_factory=list)
    first_ready: list[float] = field(default_factory=list)
    first_healthy: list[float] = field(default_factory=list)
    warm_ready: list[float] = field(default_factory=list)
    warm_healthy: list[float] = field(default_factory=list)
    stop: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    clean: list[bool] = field(default_factory=list)
    size_mb: float = 0.0


IMAGES = (
    Image(
        "shipyard",
        "shipyard-bench/lamp:latest",
        ROOT / "images/lamp/Dockerfile",
        ROOT / "images",
        "http://127.0.0.1/.shipyard/ready",
        ("--env", f"MARIADB_ROOT_PASSWORD={PASSWORD}"),
        healthcheck=True,
    ),
    Image(
        "naive",
        "shipyard-bench/naive-lamp:latest",
        ROOT / "bench/naive-lamp/Dockerfile",
        ROOT / "bench/naive-lamp",
        "http://127.0.0.1/",
    ),
)


def image_id(tag: str) -> str | None:
    proc = sh("docker", "image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return proc.stdout.strip() or None


def build(image: Image, base_image: str, *, cold: bool) -> float:
    previous = image_id(image.tag)
    began = time.monotonic()
    sh(
        "docker",
        "build",
        "--quiet",
        *(["--no-cache"] if cold else []),
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "-f",
        str(image.dockerfile),
        "-t",
        image.tag,
        str(image.context),
    )
    seconds = time.monotonic() - began
    if previous and previous != image_id(image.tag):
        sh("docker", "image", "rm", previous, check=False)  # the replaced cold build
    return seconds


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


def probe(image: Image, name: str) -> bool:
    check = (
        "mariadb-admin --silent ping >/dev/null 2>&1 && python3 -c "
        f"'import urllib.request; urllib.request.urlopen(\"{image.ready_url}\", timeout=2)'"
    )
    return sh("docker", "exec", name, "sh", "-c", check, check=False).returncode == 0


def health(name: str) -> str:
    state = json.loads(sh("docker", "inspect", "--format", "{{json .State}}", name).stdout)
    if not state["Running"]:
        log = sh("docker", "logs", name, check=False)
        sys.exit(f"{name} exited ({state['ExitCode']}):\n{log.stdout}{log.stderr}")
    return state.get("Health", {}).get("Status", "none")


def wait_ready(image: Image, name: str, began: float) -> tuple[float, float | None]:
    """Seconds from `began` until ready, and until healthy (None without a HEALTHCHECK)."""
    ready = healthy = None
    deadline = began + 300
    while ready is None or (image.healthcheck and healthy is None):
        if time.monotonic() > deadline:
            sys.exit(f"{name} not ready/healthy within 300 s")
        if ready is None and probe(image, name):
            ready = time.monotonic() - began
        if image.healthcheck and healthy is None and health(name) == "healthy":
            healthy = time.monotonic() - began
        time.sleep(0.1)
    return ready, healthy


def timed_stop(image: Image, name: str) -> None:
    began = time.monotonic()
    sh("docker", "stop", name)
    image.stop.append(time.monotonic() - began)
    state = json.loads(sh("docker", "inspect", "--format", "{{json .State}}", name).stdout)
    image.exit_codes.append(state["ExitCode"])


def start_stop_cycle(image: Image) -> None:
    name = f"shipyard-bench-lamp-{image.label}-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    sh("docker", "run", "--detach", "--name", name, *image.run_args, image.tag)
    try:
        ready, healthy = wait_ready(image, name, began)
        image.first_ready.append(ready)
        if healthy is not None:
            image.first_healthy.append(healthy)
        timed_stop(image, name)

        began = time.monotonic()
        sh("docker", "start", name)
        ready, healthy = wait_ready(image, name, began)
        image.warm_ready.append(ready)
        if healthy is not None:
            image.warm_healthy.append(healthy)
        if image.healthcheck:
            started = sh("docker", "inspect", "--format", "{{.State.StartedAt}}", name).stdout
            log = sh("docker", "logs", "--since", started.strip(), name)
            image.clean.append(not any(s in log.stdout + log.stderr for s in UNCLEAN_SIGNS))
        timed_stop(image, name)
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
        ("docker run -> healthy, first start (s)", lambda i: median(i.first_healthy)),
        ("docker start -> ready, warm restart (s)", lambda i: median(i.warm_ready)),
        ("docker start -> healthy, warm restart (s)", lambda i: median(i.warm_healthy)),
        ("docker stop (s)", lambda i: median(i.stop)),
        ("docker stop exit codes", lambda i: ",".join(map(str, sorted(set(i.exit_codes))))),
        ("clean DB stop (no crash recovery)", clean_count),
    )
    for title, cell in rows:
        print(f"| {title} | {cell(shipyard)} | {cell(naive)} |")
    print(f"\nshipyard is {shipyard.size_mb / naive.size_mb:.0%} of the naive image's size.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--base-image")
    args = parser.parse_args()
    base_image = args.base_image or resolve_base_image()

    for run in range(args.runs):
        for image in IMAGES:
            image.cold.append(build(image, base_image, cold=True))
        times = ", ".join(f"{i.label} {i.cold[-1]:.1f} s" for i in IMAGES)
        print(f"cold builds, run {run + 1}: {times}", flush=True)
    for _ in range(args.runs):
        for image in IMAGES:
            image.rebuild.append(build(image, base_image, cold=False))
    shipyard = IMAGES[0]
    role_run(expect_no_change=False)  # may build shipyard/lamp; only the no-op runs count
    shipyard.role = [role_run() for _ in range(args.runs)]
    for image in IMAGES:
        size = sh("docker", "image", "inspect", "--format", "{{.Size}}", image.tag).stdout
        image.size_mb = int(size) / 1e6
    for run in range(args.runs):
        for image in IMAGES:
            start_stop_cycle(image)
        print(f"start/stop cycles, run {run + 1} done", flush=True)
    print_table(args.runs, base_image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
