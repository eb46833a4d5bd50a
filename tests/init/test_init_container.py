"""shipyard-init as it runs in the images: under tini, PID 1 of a real container."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import docker

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.docker

STUB = "/usr/local/lib/shipyard-test/service_stub.py"
EVENTS = "/var/lib/shipyard-test/events.log"
ORPHANS = 1000
# The test image: its Dockerfile and service file, plus the supervisor and the stub.
CONTEXT = Path(__file__).with_name("container")


@pytest.fixture(scope="module")
def image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context = tmp_path_factory.mktemp("init-image")
    shutil.copytree(CONTEXT, context, dirs_exist_ok=True)
    shutil.copy(ROOT / "images/common/init/shipyard_init.py", context)
    shutil.copy(Path(__file__).with_name("service_stub.py"), context)
    name = f"shipyard-test/init:{uuid.uuid4().hex[:8]}"
    docker("build", "--quiet", "--build-arg", f"BASE_IMAGE={base_image}", "-t", name, str(context))
    yield name
    docker("image", "rm", "--force", name, check=False)


@pytest.fixture
def run(image: str) -> Iterator[Callable[..., str]]:
    """Start containers of the test image with extra `docker run` options; remove them after."""
    names: list[str] = []

    def start(*options: str) -> str:
        name = f"shipyard-test-init-{uuid.uuid4().hex[:8]}"
        names.append(name)
        docker("run", "--detach", "--name", name, *options, image)
        return name

    yield start
    for name in names:
        docker("rm", "--force", name, check=False)


@pytest.fixture
def container(run: Callable[..., str]) -> str:
    return run()


def logs(container: str) -> str:
    proc = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=False
    )
    return proc.stdout + proc.stderr


def state(container: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", container))


def wait_until(predicate: callable, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def wait_ready(container: str) -> None:
    """As roles and tests wait for an image: ask the supervisor, not Docker's health."""
    proc = subprocess.run(
        ["docker", "exec", container, "shipyard-init", "status", "--wait", "60"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs(container)


def wait_healthy(container: str) -> None:
    def healthy() -> bool:
        current = state(container)
        assert current["Running"], logs(container)
        return current.get("Health", {}).get("Status") == "healthy"

    wait_until(healthy, f"{container} to turn healthy")


def events(container: str, kind: str) -> list[str]:
    """Service names in the order the stubs recorded `kind`, read even from a stopped container."""
    return [name for name, _ in event_details(container, kind)]


def event_details(container: str, kind: str) -> list[tuple[str, str]]:
    """(service, first detail) for each `kind` event the stubs recorded."""
    archive = subprocess.run(
        ["docker", "cp", f"{container}:{EVENTS}", "-"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(Path(EVENTS).name)
        assert member is not None
        text = member.read().decode()
    lines = [line.split() for line in text.splitlines()]
    return [(parts[2], " ".join(parts[3:])) for parts in lines if parts[1:2] == [kind]]


def test_tini_is_pid_1_and_the_supervisor_runs_under_it(container: str) -> None:
    wait_ready(container)
    assert docker("exec", container, "cat", "/proc/1/comm").strip() == "tini"
    cmdline = docker("exec", container, "cat", "/proc/1/cmdline").split("\0")
    assert cmdline[:3] == ["/usr/bin/tini", "--", "/usr/local/bin/shipyard-init"]
    users = {
        fields[2]: fields[0]
        for fields in (
            line.split(None, 2)
            for line in docker("top", container, "-eo", "user:20,pid,args").splitlines()[1:]
        )
    }
    assert users[f"python3 {STUB} db --events {EVENTS} --tcp 5432 --stdout db says hello\\n"] == (
        "nobody"
    )
    assert users["/usr/bin/python3 /usr/local/bin/shipyard-init"] == "root"


def test_docker_stop_exits_0_fast_in_reverse_order(container: str) -> None:
    wait_ready(container)
    assert events(container, "start") == ["prepare", "db", "web"]
    began = time.monotonic()
    docker("stop", container)
    took = time.monotonic() - began
    final = state(container)
    assert final["ExitCode"] == 0, logs(container)
    # Docker kills at 10 s; anything near that means the stop was not handled.
    assert took < 5, f"docker stop took {took:.1f} s"
    # Each service got its own stop signal, in reverse start order.
    assert event_details(container, "stop") == [("web", "SIGTERM"), ("db", "SIGINT")]


def test_output_is_prefixed_per_service(container: str) -> None:
    wait_ready(container)
    docker("stop", container)
    proc = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=True)
    assert "db | db says hello" in proc.stdout
    assert "web | web warns" in proc.stderr
    assert "shipyard-init | " in proc.stderr


def test_critical_crash_exits_with_its_code(container: str) -> None:
    wait_ready(container)
    pid = dict(event_details(container, "start"))["db"]
    docker("exec", container, "sh", "-c", f"kill -KILL {pid}")
    wait_until(lambda: not state(container)["Running"], "the container to exit", timeout=15)
    assert state(container)["ExitCode"] == 137, logs(container)
    assert events(container, "stop") == ["web"]


def test_orphans_in_the_container_leave_no_zombies(container: str) -> None:
    wait_ready(container)
    spawn = (
        f"import os\nfor _ in range({ORPHANS}):\n"
        "    if os.fork() == 0:\n"
        "        if os.fork() == 0:\n"
        "            os._exit(0)\n"
        "        os._exit(0)\n"
        "    os.wait()\n"
    )
    docker("exec", container, "python3", "-c", spawn)
    count = "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l"
    wait_until(
        lambda: docker("exec", container, "sh", "-c", count).strip() == "0",
        "zombies to be reaped",
        timeout=10,
    )
    docker("stop", container)
    assert state(container)["ExitCode"] == 0


def test_status_wait_answers_long_before_the_healthcheck_would(container: str) -> None:
    began = time.monotonic()
    status = docker("exec", container, "shipyard-init", "status", "--wait", "60")
    assert status.strip() == "ready"
    assert time.monotonic() - began < 30
    # The HEALTHCHECK (test -e on the ready marker) agrees once it has run.
    wait_healthy(container)


def test_under_an_arbitrary_uid_every_service_runs_as_that_uid(run: Callable[..., str]) -> None:
    name = run("--user", "12345:0")
    assert docker("exec", name, "shipyard-init", "status", "--wait", "60").strip() == "ready"
    rows = docker("top", name, "-eo", "uid,pid,args").splitlines()[1:]
    uids = {args: uid for uid, _, args in (row.split(None, 2) for row in rows)}
    assert uids["/usr/bin/python3 /usr/local/bin/shipyard-init"] == "12345"
    assert {uid for args, uid in uids.items() if STUB in args} == {"12345"}
    assert "running as uid 12345, not root: every service runs as this uid" in logs(name)
    docker("stop", name)
    assert state(name)["ExitCode"] == 0, logs(name)
    assert event_details(name, "stop") == [("web", "SIGTERM"), ("db", "SIGINT")]
