"""molecule/run.sh: scenarios side by side, each log whole, every failure named.

A stand-in `molecule` on PATH records when each scenario starts and ends and
exits with the code its scenario name asks for; the real scenarios run in
`make molecule`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import ROOT

RUN = ROOT / "molecule" / "run.sh"
# `molecule test -s NAME`: a start mark, a wait for the other scenario's start
# mark (when asked, so that overlap is proven rather than timed), output, an
# end mark; exits with the number after "rc" in the name.
FAKE = """#!/bin/bash
set -eu
name=$3
echo "start $name" >>"$EVENTS"
if [ -n "${WAIT_FOR:-}" ] && [ "$name" != "$WAIT_FOR" ]; then
    for _ in $(seq 100); do grep -q "start $WAIT_FOR" "$EVENTS" && break; sleep 0.05; done
fi
for i in 1 2 3; do echo "$name line $i"; sleep 0.01; done
echo "end $name" >>"$EVENTS"
case $name in *rc*) exit "${name##*rc}" ;; esac
"""


def run(tmp_path: Path, jobs: str, *scenarios: str, **env: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "molecule"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    return subprocess.run(
        [str(RUN), jobs, str(tmp_path / "logs"), *scenarios],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "EVENTS": str(tmp_path / "events"),
            **env,
        },
    )


def events(tmp_path: Path) -> list[str]:
    return (tmp_path / "events").read_text().splitlines()


def test_two_jobs_overlap_and_each_log_is_printed_whole(tmp_path: Path) -> None:
    proc = run(tmp_path, "2", "alpha", "beta", WAIT_FOR="beta")
    assert proc.returncode == 0, proc.stderr
    # alpha waited for beta's start: both ran at once.
    assert events(tmp_path).index("start beta") < events(tmp_path).index("end alpha")
    for name in ("alpha", "beta"):
        block = proc.stdout.split(f"== molecule test -s {name}\n", 1)[1]
        lines = block.splitlines()
        assert lines[:3] == [f"{name} line {i}" for i in (1, 2, 3)], proc.stdout
        assert lines[3].startswith(f"== molecule test -s {name}: rc=0 in ")
        log = tmp_path / "logs" / f"molecule-{name}.log"
        assert log.read_text().splitlines() == lines[:3]


def test_one_job_runs_them_in_turn(tmp_path: Path) -> None:
    proc = run(tmp_path, "1", "alpha", "beta")
    assert proc.returncode == 0, proc.stderr
    assert events(tmp_path) == ["start alpha", "end alpha", "start beta", "end beta"]


def test_a_failed_scenario_fails_the_run_and_the_others_still_run(tmp_path: Path) -> None:
    proc = run(tmp_path, "2", "brokenrc3", "alpha", "beta")
    assert proc.returncode == 1
    assert {"end alpha", "end beta", "end brokenrc3"} <= set(events(tmp_path))
    assert "== molecule test -s brokenrc3: rc=3 in " in proc.stdout
    assert "failed scenarios:\nbrokenrc3 (rc=3, " in proc.stderr
    assert "alpha (rc=" not in proc.stderr
    # A rerun that passes does not inherit the old failure.
    assert run(tmp_path, "2", "alpha").returncode == 0


def test_a_bad_job_count_fails_naming_it(tmp_path: Path) -> None:
    proc = run(tmp_path, "two", "alpha")
    assert proc.returncode == 2
    assert "JOBS must be a whole number >= 1, not 'two'" in proc.stderr
    assert not (tmp_path / "events").exists()
