#!/usr/bin/env python3
"""`make up` cold and warm, and `make down`, as a table.

  cold       no dev environment (volumes too) and none of the images the
             manifests name (the base image stays unless --with-base):
             builds, starts, provisions, ships
  fresh      (--fresh, instead of cold) a fresh machine as far as one can be
             made here: cold with the base image and Docker's layer cache
             removed, into a new venv with empty pip and uv caches. The engine
             itself stays installed (its apt install takes about 8 s).
  warm-full  `make up FULL=1` on the running environment: every stage runs
             and changes nothing; the baseline, what a no-change run costs
             without skipping
  warm       `make up` again: unchanged stages skipped, must change nothing
  down       `make down` (data volumes kept)

Each step is timed as a whole, venv check included, and its PLAY RECAP is
summed. The environment is left down afterwards; `make up` brings it back.
Run it only while nothing else builds in the same engine.

Usage: bench/site.py [--runs 1] [--with-base | --fresh] [--skip-cold]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from benchlib import resolve_base_image, sh

ROOT = Path(__file__).resolve().parent.parent
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
# Seconds, on a 2-core machine with the stack running.
# The cold goal is a fresh machine's: the fresh step.
GOALS = {"fresh": 180.0, "warm": 15.0, "down": 5.0}


def images() -> list[str]:
    """The repositories the manifests name: the images a cold run builds."""
    manifests = sorted((ROOT / "images").glob("*/image.yml"))
    return [yaml.safe_load(path.read_text())["name"] for path in manifests]


def make(*targets: str, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run make in the project; return seconds and the summed changed count."""
    began = time.monotonic()
    proc = subprocess.run(
        ["make", "-C", str(ROOT), *targets],
        capture_output=True,
        text=True,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    seconds = time.monotonic() - began
    if proc.returncode != 0:
        sys.exit(f"make {' '.join(targets)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    changed = sum(int(m.group(2)) for m in RECAP.finditer(proc.stdout))
    return seconds, changed


def remove_images(with_base: bool) -> None:
    names = [f"{image}:{tag}" for image in images() for tag in tags_of(image)]
    if with_base:
        names.append(resolve_base_image())
    if names:
        sh("docker", "image", "rm", "--force", *names)


def tags_of(image: str) -> list[str]:
    proc = sh("docker", "image", "ls", "--format", "{{.Tag}}", image)
    return [tag for tag in proc.stdout.split() if tag != "<none>"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1, help="repetitions; medians are shown")
    parser.add_argument("--with-base", action="store_true", help="remove the base image too")
    parser.add_argument(
        "--fresh", action="store_true", help="the cold step from a fresh venv and no caches"
    )
    parser.add_argument("--skip-cold", action="store_true", help="only warm and down")
    args = parser.parse_args()
    first = "fresh" if args.fresh else "cold"
    steps = [first, "warm-full", "warm", "down"]
    results: dict[str, list[tuple[float, int]]] = {step: [] for step in steps}
    for run in range(args.runs):
        if args.fresh:
            make("down", "PURGE=1")
            remove_images(with_base=True)
            sh("docker", "image", "prune", "--force")
            # Relative to the project, as the Makefile's PATH expects; .shipyard
            # is ignored by git. The usual .venv serves the steps after.
            venv = Path(".shipyard/bench-fresh-venv")
            shutil.rmtree(ROOT / venv, ignore_errors=True)
            # Both installers' caches: pip installs uv, uv the rest.
            with tempfile.TemporaryDirectory(prefix="shipyard-pip-") as cache:
                env = {"PIP_CACHE_DIR": f"{cache}/pip", "UV_CACHE_DIR": f"{cache}/uv"}
                results[first].append(make("up", f"VENV={venv}", env=env))
            shutil.rmtree(ROOT / venv, ignore_errors=True)
        elif not args.skip_cold:
            make("down", "PURGE=1")
            remove_images(args.with_base)
            results[first].append(make("up"))
        else:
            make("up")
        results["warm-full"].append(make("up", "FULL=1"))
        results["warm"].append(make("up"))
        results["down"].append(make("down"))
        done = ", ".join(f"{k} {v[-1][0]:.1f} s" for k, v in results.items() if v)
        print(f"run {run + 1}: {done}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"\n{'step':<10} {'seconds (median)':>17} {'changed':>8} {'runs':>5} {'goal':>8}  met")
    medians: dict[str, float] = {}
    for step, values in results.items():
        if not values:
            continue
        medians[step] = statistics.median(v[0] for v in values)
        goal = GOALS.get(step)
        verdict = "" if goal is None else ("yes" if medians[step] <= goal else "NO")
        goal_text = "" if goal is None else f"<= {goal:.0f}"
        print(
            f"{step:<10} {medians[step]:>17.1f} {values[-1][1]:>8} {len(values):>5}"
            f" {goal_text:>8}  {verdict}"
        )
    if "warm" in medians and "warm-full" in medians:
        ratio = medians["warm-full"] / medians["warm"]
        print(f"\nwarm-full / warm: {ratio:.1f}x (skipping the unchanged stages)")
    print(f"load average (1 min) at the end: {load:.1f}; the environment is now down")


if __name__ == "__main__":
    main()
