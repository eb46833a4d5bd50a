"""docker_host without systemd: a second, throwaway engine started by the role."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import docker, run_playbook

PLAYBOOK = "playbooks/docker_host.yml"

pytestmark = pytest.mark.docker


def engine_vars(workdir: Path, timeout: int = 60, extra_args: tuple[str, ...] = ()) -> dict:
    """Variables for an engine that shares nothing with the host's own."""
    return {
        "docker_host_service_manager": "none",
        "docker_host_socket": str(workdir / "docker.sock"),
        "docker_host_pidfile": str(workdir / "docker.pid"),
        "docker_host_log_file": str(workdir / "dockerd.log"),
        "docker_host_start_timeout": timeout,
        "docker_host_dockerd_args": [
            f"--data-root={workdir}/data",
            f"--exec-root={workdir}/exec",
            # --bridge=none would make dockerd delete the host engine's docker0.
            f"--bridge={workdir.name}",
            "--iptables=false",
            *extra_args,
        ],
    }


def stop_engine(workdir: Path) -> None:
    subprocess.run(
        [
            "start-stop-daemon",
            "--stop",
            "--quiet",
            "--oknodo",
            "--retry",
            "TERM/15/KILL/5",
            "--pidfile",
            str(workdir / "docker.pid"),
        ],
        check=False,
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory (unix socket paths stop at 108 bytes) and a bridge of its own."""
    path = Path(tempfile.mkdtemp(prefix="sy-", dir="/tmp"))
    subprocess.run(["ip", "link", "add", path.name, "type", "bridge"], check=True)
    yield path
    stop_engine(path)
    subprocess.run(["ip", "link", "delete", path.name], check=False)
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_starts_dockerd_without_systemd_then_leaves_it_alone(docker_engine: str, workdir: Path):
    extra = engine_vars(workdir)
    first = run_playbook(PLAYBOOK, extra)
    assert first.rc == 0, first.raw
    assert first.changed == 1, first.raw

    host = f"unix://{extra['docker_host_socket']}"
    assert docker("info", "--format", "{{.DockerRootDir}}", host=host).strip() == f"{workdir}/data"
    pid = int((workdir / "docker.pid").read_text())
    assert Path(f"/proc/{pid}/exe").resolve().name == "dockerd"

    second = run_playbook(PLAYBOOK, extra)
    assert second.rc == 0, second.raw
    assert second.changed == 0, second.raw
    assert int((workdir / "docker.pid").read_text()) == pid, "the running engine was restarted"


def test_engine_that_never_answers_fails_with_its_log(docker_engine: str, workdir: Path):
    extra = engine_vars(workdir, timeout=5, extra_args=("--no-such-flag",))
    run = run_playbook(PLAYBOOK, extra)
    assert run.rc != 0
    failure = next(m for m in run.messages if "did not answer" in m)
    assert "docker_host_start_timeout" in failure
    assert "unknown flag: --no-such-flag" in failure


def test_host_engine_keeps_working(base_image: str, workdir: Path):
    """The throwaway engine must not disturb the host's: it still runs containers."""
    assert run_playbook(PLAYBOOK, engine_vars(workdir)).rc == 0
    stop_engine(workdir)
    assert docker("run", "--rm", base_image, "echo", "still-running") == "still-running\n"
    assert "docker0" in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout


def test_already_running_engine_is_not_touched(docker_engine: str):
    run = run_playbook(PLAYBOOK)
    assert run.rc == 0, run.raw
    assert run.changed == 0
    assert run.stats.get("skipped", 0) >= 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [("docker_host_service_manager", "upstart"), ("docker_host_start_timeout", "soon")],
)
def test_bad_input_fails_naming_the_variable(docker_engine: str, variable: str, value: str):
    run = run_playbook(PLAYBOOK, {variable: value})
    assert run.rc != 0
    failure = next(m for m in run.messages if m.startswith("Validation of arguments failed"))
    assert variable in failure
    assert value in failure
