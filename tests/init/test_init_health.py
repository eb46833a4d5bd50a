"""A service's own health report (`health_file`) in `shipyard-init status`.

A backup service that is running but failing must turn the container's health
red while the database goes on; the supervisor learns it from a file the
service rewrites, and only a report from the service's current process counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from init_harness import InitRunner

# The reporter: mirrors the control file into $SHIPYARD_HEALTH_FILE, stamped with
# its pid (or with another pid, to play a report left by an earlier process).
REPORTER = """
import json, os, sys, time
control, ready = sys.argv[1], sys.argv[2]
target = os.environ["SHIPYARD_HEALTH_FILE"]
open(ready, "w").close()
while True:
    try:
        wanted = json.load(open(control))
    except (OSError, ValueError):
        wanted = {}
    report = {"pid": wanted.pop("pid", os.getpid()), **wanted}
    with open(target + ".tmp", "w") as out:
        json.dump(report, out)
    os.replace(target + ".tmp", target)
    time.sleep(0.02)
"""


def reporter(init: InitRunner, name: str, health: Path, control: Path) -> dict[str, object]:
    ready = init.dir / f"{name}.ready"
    return {
        "name": name,
        "command": [sys.executable, "-S", "-c", REPORTER, str(control), str(ready)],
        "critical": False,
        "health_file": str(health),
        "ready": {"file": str(ready)},
        "ready_interval": 0.02,
        "stop_timeout": 1.0,
    }


def say(control: Path, **report: object) -> None:
    tmp = control.with_suffix(".tmp")
    tmp.write_text(json.dumps(report))
    tmp.replace(control)


def test_a_degraded_report_fails_status_and_names_the_service(init: InitRunner) -> None:
    health, control = init.dir / "backup-health.json", init.dir / "control.json"
    say(control, healthy=True, message="")
    init.write_config(
        [init.service("db", stop_timeout=2.0), reporter(init, "backup", health, control)]
    )
    init.start()
    init.wait_running()
    init.wait_for(lambda: init.cli("status").returncode == 0, "status ready")
    init.wait_for(init.ready_file.exists, "the ready marker")

    say(control, healthy=False, message="S3 does not answer: s3_endpoint")
    init.wait_for(lambda: init.cli("status").returncode == 1, "status to turn degraded")
    # The HEALTHCHECK tests the marker: it goes too, and the log says why.
    init.wait_for(lambda: not init.ready_file.exists(), "the ready marker to go")
    init.wait_for(
        lambda: "health: backup (degraded: S3 does not answer" in init.stderr, "the log line"
    )
    status = init.cli("status")
    assert "backup (degraded: S3 does not answer: s3_endpoint)" in status.stdout, status.stdout
    assert "db" not in status.stdout.replace("degraded", ""), "db itself is fine"
    # The supervisor does not act on it: both services still run.
    document = init.status_document()
    assert document is not None
    assert [s["state"] for s in document["services"]] == ["ready", "ready"]  # type: ignore[index]

    say(control, healthy=True, message="")
    init.wait_for(lambda: init.cli("status").returncode == 0, "status to recover")
    init.wait_for(init.ready_file.exists, "the ready marker to come back")


def test_a_report_from_another_process_is_ignored(init: InitRunner) -> None:
    health, control = init.dir / "backup-health.json", init.dir / "control.json"
    # A pid that is not the service's: what a previous run of the container left.
    say(control, healthy=False, message="stale", pid=1)
    init.write_config([reporter(init, "backup", health, control)])
    init.start()
    init.wait_running()
    init.wait_for(lambda: health.exists(), "the report")
    status = init.cli("status")
    assert status.returncode == 0, status.stdout


def test_no_report_yet_is_no_complaint(init: InitRunner) -> None:
    health = init.dir / "never-written.json"
    init.write_config([init.service("quiet", health_file=str(health))])
    init.start()
    init.wait_running()
    assert init.cli("status").returncode == 0


def test_the_service_is_told_where_to_report(init: InitRunner) -> None:
    health, control = init.dir / "h.json", init.dir / "control.json"
    say(control, healthy=True)
    init.write_config([reporter(init, "backup", health, control)])
    init.start()
    init.wait_running()
    init.wait_for(health.exists, "the file named by SHIPYARD_HEALTH_FILE")


def test_health_file_is_checked_where_it_is_read(init: InitRunner) -> None:
    init.write_config([init.service("a", health_file="relative.json")])
    check = init.cli("--check-config")
    assert check.returncode == 78
    assert "service 'a': key 'health_file': expected an absolute path" in check.stderr

    init.write_config(
        [{"name": "once", "type": "oneshot", "command": ["true"], "health_file": "/run/x.json"}]
    )
    check = init.cli("--check-config")
    assert check.returncode == 78
    assert "key 'health_file': applies to longrun services only" in check.stderr
