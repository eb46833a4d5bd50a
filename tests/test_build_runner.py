"""roles/container_image/files/build_images.py: the builds run at most JOBS at a
time, in the order given, after the shared stage, and a failure names its image.

A docker on PATH stands in for the engine's CLI and records each call; the
real builds are in test_container_image.py and every make up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

RUNNER = ROOT / "roles/container_image/files/build_images.py"
# Records "start|end TARGET-or-TAG monotonic-ns"; fails for a tag containing "broken".
FAKE_DOCKER = """#!/bin/sh
what=$(printf '%s\\n' "$@" | sed -n '/^--tag$/{n;p;q}; /^--target$/{n;p;q}')
echo "start $what $(date +%s%N)" >> "$DOCKER_CALLS"
sleep 0.4
echo "end $what $(date +%s%N)" >> "$DOCKER_CALLS"
case "$what" in *broken*) echo "E: Unable to locate package nothing-here" >&2; exit 100;; esac
"""


def image(ref: str) -> dict[str, object]:
    return {
        "ref": ref,
        "dockerfile": "x/Dockerfile",
        "args": {"BASE_IMAGE": "b"},
        "labels": {},
        "nocache": False,
    }


def unnamed(entry: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in entry.items() if k != "ref"}


def run(
    tmp_path: Path,
    refs: list[str],
    jobs: int,
    shared: bool = False,
    images: list[dict[str, object]] | None = None,
    fake: str = FAKE_DOCKER,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(fake)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    spec = {
        "docker_host": "unix:///nowhere",
        "context": str(tmp_path),
        "jobs": jobs,
        "timeout": 30,
        # The role gives the first image's manifest entry, which has no ref.
        "shared": {"target": "shipyard-runtime", "image": unnamed(image(refs[0]))}
        if shared
        else None,
        "images": images or [image(r) for r in refs],
    }
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_CALLS": str(calls)}
    proc = subprocess.run(
        [sys.executable, str(RUNNER), json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc, calls.read_text().splitlines() if calls.exists() else []


def most_at_once(calls: list[str]) -> int:
    events = sorted((int(line.split()[2]), line.split()[0] == "start") for line in calls)
    running = peak = 0
    for _, starts in events:
        running += 1 if starts else -1
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_no_more_than_jobs_builds_run_at_once(tmp_path: Path, jobs: int) -> None:
    proc, calls = run(tmp_path, [f"i/{n}:t" for n in range(4)], jobs)
    assert proc.returncode == 0, proc.stderr
    assert most_at_once(calls) == jobs
    # The first JOBS start together, so their own order is the threads'.
    starts = [line.split()[1] for line in calls if line.startswith("start")]
    assert set(starts[:jobs]) == {f"i/{n}:t" for n in range(jobs)}
    assert [json.loads(line)["image"] for line in proc.stdout.splitlines()] == [
        f"i/{n}:t" for n in range(4)
    ]


def test_the_shared_stage_ends_before_any_image_starts(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, ["i/a:t", "i/b:t"], 2, shared=True)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[:2] for line in calls[:2]] == [
        ["start", "shipyard-runtime"],
        ["end", "shipyard-runtime"],
    ]


def test_a_failed_build_is_named_with_its_output_and_the_others_finish(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, ["i/broken:t", "i/fine:t"], 1)
    assert proc.returncode == 1
    assert "i/broken:t (exit 100)" in proc.stderr and "Unable to locate package" in proc.stderr
    assert "i/fine:t" not in proc.stderr
    assert ["end", "i/fine:t"] in [line.split()[:2] for line in calls]


def test_a_negative_job_count_is_refused_naming_the_variable(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, ["i/a:t"], -1)
    assert proc.returncode == 2 and "container_image_build_jobs" in proc.stderr
    assert calls == []


def test_a_build_gives_the_image_every_tag(tmp_path: Path) -> None:
    proc, argv = run(
        tmp_path,
        ["i/a:latest"],
        1,
        images=[{**image("i/a:latest"), "also": ["i/a:1.0", "i/a:1"]}],
        fake='#!/bin/sh\nprintf "%s\\n" "$@" >> "$DOCKER_CALLS"\n',
    )
    assert proc.returncode == 0, proc.stderr
    tags = [argv[n + 1] for n, arg in enumerate(argv) if arg == "--tag"]
    assert tags == ["i/a:latest", "i/a:1.0", "i/a:1"]
