#!/usr/bin/env python3
"""What the idle dev environment costs: the CPU of its four containers, as a share of one core.

The four images run as the dev environment runs them (one network, the
agents shipping to the collector, moto beside it), once per health-check
setting, interleaved:

  before    the previous HEALTHCHECK, `shipyard-init status` every 2 s (given
            with `docker run --health-cmd ... --health-interval 2s`)
  after     the images' own HEALTHCHECK (`test -e` on the ready marker, 30 s)
  none      no health check at all (`--no-healthcheck`): the services alone

Each round starts the four containers, waits until every supervisor reports
ready, lets them settle, then measures for --seconds (at least 30). The
CPU counted is what the containers and their checks cost the machine: every
process in the containers (their cgroups' cpuacct) plus this engine's
dockerd, containerd and the containers' shims, children included (each
`docker exec` of a check runs runc under the shim). Other work on the
machine (this host is shared) is not in it, as it would be in /proc/stat.

Usage: bench/idle.py [--rounds 2] [--seconds 60] [--settle 20]
Goal: `after` <= 2 % of one core for the four containers together.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import cgroup_seconds, load_average, sh

GOAL = 0.02  # of one core, the four containers together
OLD_HEALTHCHECK = (
    "--health-cmd",
    "/usr/local/bin/shipyard-init status",
    "--health-interval",
    "2s",
    "--health-timeout",
    "5s",
    "--health-retries",
    "3",
    "--health-start-period",
    "180s",
)
MODES = {"before": OLD_HEALTHCHECK, "after": (), "none": ("--no-healthcheck",)}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Container:
    alias: str
    image: str
    options: tuple[str, ...] = ()


def environment(password: str) -> tuple[Container, ...]:
    """The dev environment's four containers, with throwaway passwords."""
    return (
        Container("s3", "shipyard/s3:latest"),
        Container("log-collector", "shipyard/log-collector:latest"),
        Container(
            "postgresql", "shipyard/postgresql:17", ("--env", f"POSTGRES_PASSWORD={password}")
        ),
        Container("lamp", "shipyard/lamp:latest", ("--env", f"MARIADB_ROOT_PASSWORD={password}")),
    )


@dataclass
class Mode:
    name: str
    shares: list[float] = field(default_factory=list)
    in_containers: list[float] = field(default_factory=list)
    health: list[str] = field(default_factory=list)


def process_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / TICKS


def engine_pids(container_ids: list[str]) -> list[int]:
    """This engine's dockerd, its children (containerd), and the shims of these containers."""
    dockerd = int(Path("/var/run/docker.pid").read_text())
    pids = [dockerd]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        shim = argv[0].endswith(b"containerd-shim-runc-v2")
        if parent == dockerd or (shim and any(i.encode() in argv for i in container_ids)):
            pids.append(int(entry.name))
    return pids


def start(mode: str, network: str, password: str, names: list[str]) -> None:
    """Start the four containers, adding each to `names` (the caller removes them)."""
    for container in environment(password):
        name = f"shipyard-bench-idle-{container.alias}-{uuid.uuid4().hex[:6]}"
        names.append(name)
        sh(
            "docker",
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            network,
            "--network-alias",
            container.alias,
            "--hostname",
            container.alias,
            *MODES[mode],
            *container.options,
            container.image,
        )
    for name in names:
        wait = sh("docker", "exec", name, "shipyard-init", "status", "--wait", "300", check=False)
        if wait.returncode != 0:
            logs = sh("docker", "logs", name, check=False)
            raise SystemExit(
                f"{name} not ready: {wait.stdout}\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"
            )


def measure(names: list[str], seconds: float) -> tuple[float, float]:
    """Share of one core over `seconds`: everything, and the containers' own processes."""
    ids = [sh("docker", "inspect", "--format", "{{.Id}}", name).stdout.strip() for name in names]
    pids = engine_pids(ids)
    began = time.monotonic()
    engine_before = sum(process_seconds(pid) for pid in pids)
    inside_before = sum(cgroup_seconds(i) for i in ids)
    time.sleep(seconds)
    inside = sum(cgroup_seconds(i) for i in ids) - inside_before
    engine = sum(process_seconds(pid) for pid in pids) - engine_before
    elapsed = time.monotonic() - began
    return (engine + inside) / elapsed, inside / elapsed


def health(names: list[str]) -> str:
    states = [
        sh(
            "docker",
            "inspect",
            "--format",
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
            name,
        ).stdout.strip()
        for name in names
    ]
    return ",".join(sorted(set(states)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=20.0)
    args = parser.parse_args()
    began = os.getloadavg()
    if args.seconds < 30:
        parser.error("--seconds must be at least 30")
    password = "bench-" + uuid.uuid4().hex
    modes = [Mode(name) for name in MODES]
    network = f"shipyard-bench-idle-{uuid.uuid4().hex[:6]}"
    sh("docker", "network", "create", network)
    try:
        for round_ in range(args.rounds):
            for mode in modes:
                names: list[str] = []
                try:
                    start(mode.name, network, password, names)
                    time.sleep(args.settle)
                    share, inside = measure(names, args.seconds)
                    mode.shares.append(share)
                    mode.in_containers.append(inside)
                    mode.health.append(health(names))
                finally:
                    for name in names:
                        sh("docker", "rm", "--force", "--volumes", name, check=False)
                print(f"round {round_ + 1}, {mode.name}: {share:.2%} of one core", flush=True)
    finally:
        sh("docker", "network", "rm", network, check=False)

    print(
        f"\nIdle dev environment (4 containers), {args.seconds:g} s per measurement, "
        f"medians of {args.rounds} rounds\n"
    )
    print("| health check | CPU, share of one core | of which in the containers | health |")
    print("|---|---:|---:|---|")
    for mode in modes:
        print(
            f"| {mode.name} | {statistics.median(mode.shares):.2%} | "
            f"{statistics.median(mode.in_containers):.2%} | {mode.health[-1]} |"
        )
    after = statistics.median(modes[1].shares)
    verdict = "met" if after <= GOAL else "NOT met"
    print(f"\nGoal: after <= {GOAL:.0%} of one core: {verdict} ({after:.2%}).")
    print(load_average(began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
