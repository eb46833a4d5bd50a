#!/usr/bin/env python3
"""`make up` cold and warm, and `make down`, as a table.

  cold   no dev environment and none of the four shipyard images (the base
         image stays unless --with-base): builds, starts, provisions, ships
  warm   `make up` again on the running environment: must change nothing
  down   `make down` (data volumes kept)

Each step is timed as a whole, venv check included, and its PLAY RECAP is
summed. The environment is left down afterwards; `make up` brings it back.

Usage: bench/site.py [--runs 1] [--with-base] [--skip-cold]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import resolve_base_image, sh

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ["shipyard/lamp", "shipyard/postgresql", "shipyard/log-collector", "shipyard/s3"]
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def make(*targets: str) -> tuple[float, int]:
    """Run make in the project; return seconds and the summed changed count."""
    began = time.monotonic()
    proc = subprocess.run(
        ["make", "-C", str(ROOT), *targets], capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - began
    if proc.returncode != 0:
        sys.exit(f"make {' '.join(targets)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    changed = sum(int(m.group(2)) for m in RECAP.finditer(proc.stdout))
    return seconds, changed


def remove_images(with_base: bool) -> None:
    names = [f"{image}:{tag}" for image in IMAGES for tag in tags_of(image)]
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
    parser.add_argument("--skip-cold", action="store_true", help="only warm and down")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, int]]] = {"cold": [], "warm": [], "down": []}
    for run in range(args.runs):
        if not args.skip_cold:
            make("down", "PURGE=1")
            remove_images(args.with_base)
            results["cold"].append(make("up"))
        else:
            make("up")
        results["warm"].append(make("up"))
        results["down"].append(make("down"))
        done = ", ".join(f"{k} {v[-1][0]:.1f} s" for k, v in results.items() if v)
        print(f"run {run + 1}: {done}", file=sys.stderr, flush=True)
    print(f"\n{'step':<6} {'seconds (median)':>17} {'changed':>8} {'runs':>5}")
    for step, values in results.items():
        if values:
            seconds = statistics.median(v[0] for v in values)
            print(f"{step:<6} {seconds:>17.1f} {values[-1][1]:>8} {len(values):>5}")
    print("\ngoal: warm make up (no changes) under 60 s; the environment is now down")


if __name__ == "__main__":
    main()
