"""What every benchmark here needs: run a command, find the base image."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path


def sh(*args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure ends the benchmark with its output, not a traceback."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def image_id(tag: str) -> str | None:
    proc = sh("docker", "image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return proc.stdout.strip() or None


def docker_build(
    tag: str, context: Path, base_image: str, dockerfile: Path | None = None, *, cold: bool = False
) -> float:
    """Build `tag` from `context` on `base_image`, in seconds; the image it replaced is removed.

    `cold` builds without the layer cache, as a fresh machine would.
    """
    previous = image_id(tag)
    began = time.monotonic()
    sh(
        "docker",
        "build",
        "--quiet",
        *(["--no-cache"] if cold else []),
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        *(["-f", str(dockerfile)] if dockerfile else []),
        "-t",
        tag,
        str(context),
    )
    seconds = time.monotonic() - began
    if previous and previous != image_id(tag):
        sh("docker", "image", "rm", previous, check=False)
    return seconds


def resolve_base_image() -> str:
    """The image the base_image role resolved: debian:trixie-slim, else the bootstrapped one."""
    proc = sh(
        "docker",
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        "reference=debian:trixie-slim",
        "--filter",
        "reference=shipyard/base:trixie",
    )
    names = proc.stdout.split()
    if not names:
        sys.exit("no base image: run `make up` first")
    return "debian:trixie-slim" if "debian:trixie-slim" in names else names[0]


def supervisor_ready(container: str, began_wall: float, timeout: float = 180) -> float:
    """Seconds from `began_wall` (time.time()) to shipyard-init's "start-up complete" line.

    The moment `shipyard-init status --wait` returns. Read afterwards from
    `docker logs --timestamps`, so that asking takes no CPU from the start it
    measures.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = sh("docker", "logs", "--timestamps", container).stderr.splitlines()
        stamps = [line.split(" ", 1)[0] for line in lines if "start-up complete" in line]
        if stamps:
            # RFC 3339 with nanoseconds; fromisoformat takes microseconds.
            stamp = datetime.fromisoformat(stamps[-1][:26] + "+00:00").timestamp()
            if stamp >= began_wall:
                return stamp - began_wall
        time.sleep(0.2)
    sys.exit(f"{container}: no start-up complete line after the start")


def cgroup_seconds(container_id: str) -> float:
    """CPU time of every process in the container so far: cgroup v1 cpuacct, or v2 cpu.stat."""
    root = Path("/sys/fs/cgroup")
    for path in root.glob(f"cpuacct/**/{container_id}/cpuacct.usage"):
        return int(path.read_text()) / 1e9
    for pattern in (f"**/docker-{container_id}.scope/cpu.stat", f"**/{container_id}/cpu.stat"):
        for path in root.glob(pattern):
            lines = path.read_text().splitlines()
            usage = next(line for line in lines if line.startswith("usage_usec"))
            return int(usage.split()[1]) / 1e6
    sys.exit(f"no cgroup CPU accounting found for container {container_id[:12]}")


def load_average(began: tuple[float, float, float]) -> str:
    """The machine's load while a benchmark ran: its figures move with it on a shared host."""
    now = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) "
        f"{began[0]:.1f} {began[1]:.1f} {began[2]:.1f} at the start, "
        f"{now[0]:.1f} {now[1]:.1f} {now[2]:.1f} at the end"
    )
