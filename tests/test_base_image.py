"""base_image on a real engine: the bootstrap path, the present path, bad input."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, PlaybookRun, docker, run_playbook

PLAYBOOK = "playbooks/base_image.yml"
# The two plays as site.yml runs them: the Docker host, then the base image.
HOST_THEN_BASE = f"""
- import_playbook: {ROOT}/playbooks/docker_host.yml
- import_playbook: {ROOT}/{PLAYBOOK}
"""
# What the docker_host play sees on a host whose engine is not installed yet.
NO_DOCKERD = "/nonexistent/dockerd"
# A mirror nothing answers on, so a bootstrap fails at once.
DEAD_MIRROR = "http://127.0.0.1:9/debian"


def host_then_base(tmp_path: Path, extra: dict) -> PlaybookRun:
    playbook = tmp_path / "host-then-base.yml"
    playbook.write_text(HOST_THEN_BASE)
    return run_playbook(playbook, extra)


def task_outcomes(run: PlaybookRun) -> list[tuple[str, str]]:
    """(task name, ok/changed/skipped/failed) in the order the run took them."""
    report = json.loads(run.raw[run.raw.index("{") :].rsplit("}", 1)[0] + "}")
    outcomes = []
    for play in report["plays"]:
        for task in play["tasks"]:
            for result in task["hosts"].values():
                state = (
                    "failed"
                    if result.get("failed")
                    else "skipped"
                    if result.get("skipped")
                    else "changed"
                    if result.get("changed")
                    else "ok"
                )
                # Without the "role : " prefix that role tasks carry.
                outcomes.append((task["task"]["name"].split(" : ", 1)[-1], state))
    return outcomes


def position(outcomes: list[tuple[str, str]], prefix: str, state: str | None = None) -> int:
    """Where the first task named prefix... ran (with that outcome); fails when none did."""
    for index, (name, outcome) in enumerate(outcomes):
        if name.startswith(prefix) and state in (None, outcome):
            return index
    pytest.fail(f"no task {prefix!r} ({state or 'any'}) in {outcomes}")


pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def bootstrapped(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Bootstrap a throwaway image once; the tests read what that run did."""
    tag = uuid.uuid4().hex[:8]
    extra = {
        "base_image_name": f"shipyard-test/absent:{tag}",
        "base_image_bootstrap_name": f"shipyard-test/base:{tag}",
        "base_image_bootstrap_dir": str(tmp_path_factory.mktemp("bootstrap")),
        # Nothing named shipyard-test exists anywhere; skip the pull to keep the run short.
        "base_image_pull": False,
    }
    # The first run is a fresh host's: no dockerd yet, so debootstrap starts
    # in the docker_host play. The second is every later run's.
    first = host_then_base(
        tmp_path_factory.mktemp("playbook"), extra | {"docker_host_dockerd_path": NO_DOCKERD}
    )
    second = run_playbook(PLAYBOOK, extra)
    yield {"extra": extra, "first": first, "second": second}
    docker("image", "rm", "--force", extra["base_image_bootstrap_name"], check=False)


def test_bootstrap_imports_a_labelled_image(bootstrapped: dict) -> None:
    first, name = bootstrapped["first"], bootstrapped["extra"]["base_image_bootstrap_name"]
    assert first.rc == 0, first.raw
    assert first.changed > 0
    assert first.facts["base_image_resolved"] == name
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", name))
    assert labels["io.shipyard.base.suite"] == "trixie"
    assert labels["io.shipyard.base.variant"] == "minbase"
    assert labels["io.shipyard.base.date"].startswith("20")


def test_a_host_without_dockerd_bootstraps_while_the_engine_is_made_ready(
    bootstrapped: dict,
) -> None:
    outcomes = task_outcomes(bootstrapped["first"])
    started = position(outcomes, "Start debootstrap in the background", "changed")
    engine = position(outcomes, "Check that the engine answers")
    waited = position(outcomes, "Wait for debootstrap to finish", "ok")
    assert started < engine < waited, outcomes
    # One bootstrap: the base_image play waited for the one already running.
    assert [name for name, _ in outcomes].count(
        "Start debootstrap in the background for Debian trixie"
    ) == 1
    left = sorted(p.name for p in Path(bootstrapped["extra"]["base_image_bootstrap_dir"]).iterdir())
    assert left == [], f"working files left behind: {left}"


def test_bootstrap_is_reported(bootstrapped: dict) -> None:
    name = bootstrapped["extra"]["base_image_bootstrap_name"]
    report = [m for m in bootstrapped["first"].messages if m.startswith("Base image:")]
    assert report, bootstrapped["first"].messages
    assert name in report[0]
    assert "bootstrapped" in report[0]


def test_bootstrapped_image_is_a_slim_trixie(bootstrapped: dict) -> None:
    name = bootstrapped["extra"]["base_image_bootstrap_name"]
    script = (
        "cat /etc/debian_version; "
        "ls /var/lib/apt/lists | wc -l; "
        "ls /usr/share/man | wc -l; "
        "test -s /etc/resolv.conf.orig || echo no-host-resolv; "
        "grep -c '^Suites: trixie' /etc/apt/sources.list.d/debian.sources"
    )
    out = docker("run", "--rm", name, "sh", "-c", script).split()
    assert out[0].startswith("13"), out
    assert out[1:] == ["0", "0", "no-host-resolv", "2"]


def test_bootstrapped_image_installs_packages(bootstrapped: dict) -> None:
    """The sources, keyring and apt settings work: images build FROM this."""
    name = bootstrapped["extra"]["base_image_bootstrap_name"]
    script = (
        "apt-get update -qq && apt-get install -qq -y --no-install-recommends tini >/dev/null "
        "&& tini --version && ls /var/cache/apt/archives/*.deb 2>/dev/null | wc -l"
    )
    out = docker("run", "--rm", name, "sh", "-c", script)
    assert "tini version" in out
    assert out.split()[-1] == "0", "downloaded packages must not stay in the layer"


def test_bootstrap_size_is_slim(bootstrapped: dict) -> None:
    name = bootstrapped["extra"]["base_image_bootstrap_name"]
    size = int(docker("image", "inspect", "--format", "{{.Size}}", name))
    assert size < 130 * 1024 * 1024, f"{size} bytes"


def test_second_run_changes_nothing(bootstrapped: dict) -> None:
    second = bootstrapped["second"]
    assert second.rc == 0, second.raw
    assert second.changed == 0, second.raw
    assert second.facts["base_image_resolved"] == bootstrapped["extra"]["base_image_bootstrap_name"]


def test_present_image_is_used_as_is(bootstrapped: dict, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    present = f"shipyard-test/present:{tag}"
    docker("image", "tag", bootstrapped["extra"]["base_image_bootstrap_name"], present)
    try:
        run = run_playbook(
            PLAYBOOK,
            {
                "base_image_name": present,
                "base_image_bootstrap_name": f"shipyard-test/never:{tag}",
                "base_image_bootstrap_dir": str(tmp_path / "unused"),
            },
        )
    finally:
        docker("image", "rm", present, check=False)
    assert run.rc == 0, run.raw
    assert run.changed == 0
    assert run.facts["base_image_resolved"] == present
    assert not (tmp_path / "unused").exists(), "the present path must not touch the bootstrap dir"
    assert not docker("image", "ls", "--quiet", f"shipyard-test/never:{tag}").strip()


def test_an_unneeded_background_bootstrap_is_discarded(bootstrapped: dict, tmp_path: Path) -> None:
    """No dockerd, yet the engine has the preferred image: the bootstrap that
    started beside the engine's install is waited for and its files removed."""
    workdir = tmp_path / "bootstrap"
    run = host_then_base(
        tmp_path,
        {
            "docker_host_dockerd_path": NO_DOCKERD,
            "base_image_name": bootstrapped["extra"]["base_image_bootstrap_name"],
            "base_image_bootstrap_name": f"shipyard-test/never:{uuid.uuid4().hex[:8]}",
            "base_image_bootstrap_dir": str(workdir),
            "base_image_mirror": DEAD_MIRROR,
        },
    )
    assert run.rc == 0, run.raw
    outcomes = task_outcomes(run)
    assert position(outcomes, "Start debootstrap in the background", "changed") < position(
        outcomes, "Wait for a bootstrap still running", "ok"
    )
    position(outcomes, "Forget the background bootstrap's job", "ok")
    assert run.facts["base_image_resolved"] == bootstrapped["extra"]["base_image_bootstrap_name"]
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_a_seeded_host_starts_no_bootstrap(bootstrapped: dict, tmp_path: Path) -> None:
    """The controller seeds its images into such a host, the base among them."""
    run = host_then_base(
        tmp_path,
        {
            "docker_host_dockerd_path": NO_DOCKERD,
            "docker_host_seed_images": ["shipyard/*"],
            "base_image_name": bootstrapped["extra"]["base_image_bootstrap_name"],
            "base_image_bootstrap_dir": str(tmp_path / "unused"),
        },
    )
    assert run.rc == 0, run.raw
    assert run.changed == 0, run.raw
    position(task_outcomes(run), "Start the base image's bootstrap beside", "skipped")
    assert not (tmp_path / "unused").exists()


def test_a_failed_background_bootstrap_fails_the_run_with_its_error(
    docker_engine: str, tmp_path: Path
) -> None:
    run = host_then_base(
        tmp_path,
        {
            "docker_host_dockerd_path": NO_DOCKERD,
            "base_image_name": f"shipyard-test/absent:{uuid.uuid4().hex[:8]}",
            "base_image_bootstrap_name": f"shipyard-test/never:{uuid.uuid4().hex[:8]}",
            "base_image_bootstrap_dir": str(tmp_path / "bootstrap"),
            "base_image_pull": False,
            "base_image_mirror": DEAD_MIRROR,
        },
    )
    assert run.rc != 0
    assert position(task_outcomes(run), "Wait for debootstrap to finish", "failed")
    assert "127.0.0.1:9" in run.raw, run.raw


def test_failed_pull_falls_back_and_says_why(docker_engine: str, tmp_path: Path) -> None:
    """The pull is tried and its failure logged; with the bootstrap dir unusable the
    run then stops there, so this stays fast while proving the order."""
    run = run_playbook(
        PLAYBOOK,
        {
            "base_image_name": f"shipyard-test/unpullable:{uuid.uuid4().hex[:8]}",
            "base_image_bootstrap_name": f"shipyard-test/never:{uuid.uuid4().hex[:8]}",
            "base_image_bootstrap_dir": "/proc/shipyard-cannot-exist",
        },
    )
    assert run.rc != 0
    assert any(m.startswith("Cannot pull shipyard-test/unpullable") for m in run.messages), run.raw
    assert run.stats.get("rescued", 0) >= 1


@pytest.mark.parametrize("suite", ["jessie", "trixie; rm -rf /", ""])
def test_unknown_suite_fails_naming_the_variable(docker_engine: str, suite: str) -> None:
    run = run_playbook(PLAYBOOK, {"base_image_suite": suite})
    assert run.rc != 0
    assert "base_image_suite" in " ".join(run.messages), run.raw


@pytest.mark.parametrize(
    "bootstrap_dir", ["/proc/shipyard-cannot-exist", "/etc/passwd/below-a-file"]
)
def test_unwritable_bootstrap_dir_fails_naming_the_variable(
    docker_engine: str, bootstrap_dir: str
) -> None:
    run = run_playbook(
        PLAYBOOK,
        {
            "base_image_name": f"shipyard-test/absent:{uuid.uuid4().hex[:8]}",
            "base_image_bootstrap_name": f"shipyard-test/never:{uuid.uuid4().hex[:8]}",
            "base_image_bootstrap_dir": bootstrap_dir,
            "base_image_pull": False,
        },
    )
    assert run.rc != 0
    failure = " ".join(run.messages)
    assert "base_image_bootstrap_dir" in failure, run.raw
    assert bootstrap_dir in failure
