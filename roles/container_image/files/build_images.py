#!/usr/bin/env python3
"""Build images with `docker build`, at most JOBS at a time, in the order given.

    build_images.py SPEC_JSON

SPEC: {"docker_host", "context", "jobs" (0: one per CPU of this host),
"timeout" (seconds per build), "shared" (a stage to build first, or null),
"images": [{"ref", "also" (more tags, optional), "dockerfile", "args", "labels",
"nocache"}]}.

Builds of a two-core host ran best two at a time: four at once took 71 s,
two at once 62 s, as the largest build no longer waits for a core. A build
starts as soon as one ends, so the order given is the order they start in.
Prints one JSON line per image; exits 1 naming the builds that failed, with
the end of their output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# How much of a failed build's output is shown.
TAIL_LINES = 40


def build_argv(spec: dict[str, Any], image: dict[str, Any], target: str = "") -> list[str]:
    argv = [
        "docker",
        "--host",
        spec["docker_host"],
        "build",
        "--quiet",
        "--file",
        str(Path(spec["context"]) / image["dockerfile"]),
    ]
    if target:
        argv += ["--target", target]
    else:
        # Every tag at once: a tag task per image afterwards cost a second each.
        for ref in [image["ref"], *image.get("also", [])]:
            argv += ["--tag", ref]
    argv += [f"--build-arg={k}={v}" for k, v in sorted(image["args"].items())]
    argv += [f"--label={k}={v}" for k, v in sorted(image.get("labels", {}).items())]
    argv += ["--no-cache"] if image.get("nocache") else []
    return [*argv, spec["context"]]


def run(argv: list[str], timeout: float) -> tuple[int, float, str]:
    """(exit code, seconds, output) of one build."""
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        code, output = 124, f"{e.output or ''}{e.stderr or ''}\nno result after {timeout:.0f} s"
    return code, time.monotonic() - started, output


def main(args: list[str]) -> int:
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    timeout = float(spec["timeout"])
    # The stage every image begins with: builds started together would each
    # run it, since none finds it in the layer cache yet.
    shared = spec.get("shared")
    if shared:
        code, seconds, output = run(build_argv(spec, shared["image"], shared["target"]), timeout)
        print(json.dumps({"stage": shared["target"], "rc": code, "seconds": round(seconds, 1)}))
        if code != 0:
            print(f"the shared stage {shared['target']} failed:\n{tail(output)}", file=sys.stderr)
            return 1
    jobs = int(spec["jobs"])
    if jobs < 0:
        print(
            f"container_image_build_jobs must be 0 (one per CPU) or more; got {jobs}",
            file=sys.stderr,
        )
        return 2
    jobs = jobs or os.cpu_count() or 1
    images = spec["images"]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda i: run(build_argv(spec, i), timeout), images))
    failed = []
    for image, (code, seconds, output) in zip(images, results, strict=True):
        print(json.dumps({"image": image["ref"], "rc": code, "seconds": round(seconds, 1)}))
        if code != 0:
            failed.append(f"{image['ref']} (exit {code}):\n{tail(output)}")
    for message in failed:
        print(message, file=sys.stderr)
    return 1 if failed else 0


def tail(output: str) -> str:
    return "\n".join(output.rstrip().splitlines()[-TAIL_LINES:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
