"""What the tests and the molecule verifiers share: real playbook runs and the docker CLI.

The Docker helpers drive this machine's docker CLI (DOCKER_HOST picks another
engine), for what a view from inside a container cannot see: readiness, exit
codes, logs, addresses. Readiness is the supervisor's word (`shipyard-init
status`), not Docker's health state, which may lag a long HEALTHCHECK interval.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import secret_scan  # molecule/secret_scan.py: pytest's pythonpath has molecule/

ROOT = Path(__file__).resolve().parent.parent
# The label dev_environment puts on what it makes (its vars/main.yml name,
# its defaults' value): containers, volumes and the network.
ENVIRONMENT_LABEL = "io.shipyard.environment=dev"
BIN = Path(sys.executable).parent


@dataclass
class PlaybookRun:
    """What one ansible-playbook run did, read from the json callback."""

    rc: int
    seconds: float
    stats: dict[str, int]
    messages: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    raw: str = ""

    @property
    def changed(self) -> int:
        return self.stats.get("changed", 0)

    @property
    def failed(self) -> int:
        return self.stats.get("failures", 0) + self.stats.get("unreachable", 0)


def _walk_results(report: dict) -> tuple[list[str], dict[str, object]]:
    messages: list[str] = []
    facts: dict[str, object] = {}
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                for item in result.get("results", [result]):
                    if item.get("msg"):
                        messages.append(str(item["msg"]))
                    facts.update(item.get("ansible_facts", {}))
    return messages, facts


def run_playbook(
    playbook: str | Path,
    extra_vars: dict[str, object] | None = None,
    timeout: float = 900,
    tags: str | None = None,
    check: bool = False,
) -> PlaybookRun:
    """Run a playbook from the project root with the json callback (check: --check)."""
    env = os.environ | {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    cmd = [str(BIN / "ansible-playbook"), str(playbook)]
    if extra_vars:
        cmd += ["--extra-vars", json.dumps(extra_vars)]
    if tags:
        cmd += ["--tags", tags]
    if check:
        cmd.append("--check")
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    seconds = time.monotonic() - started
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook printed no JSON report:\n{proc.stdout}\n{proc.stderr}")
    stats = next(iter(report.get("stats", {}).values()), {})
    messages, facts = _walk_results(report)
    return PlaybookRun(proc.returncode, seconds, stats, messages, facts, proc.stdout + proc.stderr)


def docker_proc(
    *args: str, host: str | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; a failure (with check) fails the test with its stderr."""
    cmd = ["docker", *(["--host", host] if host else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def docker(*args: str, host: str | None = None, check: bool = True, timeout: float = 300) -> str:
    """Run the docker CLI and return its stdout."""
    return docker_proc(*args, host=host, check=check, timeout=timeout).stdout


def environment_state() -> str:
    """The ids of the dev environment's containers, volumes and networks.

    Only its own, by its label: the molecule scenarios that `make test` runs
    beside pytest make and remove theirs on the same engine meanwhile.
    """
    only = ("--filter", f"label={ENVIRONMENT_LABEL}")
    # Volumes are listed by name, which never shortens; `volume ls` has no --no-trunc.
    listings = {
        "container": ("--all", "--no-trunc"),
        "volume": (),
        "network": ("--no-trunc",),
    }
    return "\n".join(
        docker(kind, "ls", "--quiet", *options, *only) for kind, options in listings.items()
    )


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container))[0]


def logs(container: str, since: str | None = None) -> str:
    proc = docker_proc("logs", *(["--since", since] if since else []), container)
    return proc.stdout + proc.stderr


def _fail_unless_running(container: str, what: str) -> None:
    state = inspect(container)["State"]
    if not state["Running"]:
        pytest.fail(f"{container} exited ({state['ExitCode']}) {what}:\n{logs(container)[-3000:]}")


def wait_ready(container: str, timeout: float = 180) -> None:
    """Until the container's supervisor reports every service ready.

    One `shipyard-init status --wait`: it answers the moment the last service
    is ready, and fails at once, naming what is not, if the supervisor stops.
    """
    wait = ("/usr/local/bin/shipyard-init", "status", "--wait", f"{timeout:g}")
    proc = docker_proc("exec", container, *wait, check=False, timeout=timeout + 30)
    if proc.returncode != 0:
        answer = (proc.stdout + proc.stderr).strip()
        pytest.fail(f"{container} not ready: {answer}\n{logs(container)[-3000:]}")


def supervised(container: str) -> list[str]:
    """The services the container's supervisor runs, in start order (its status file)."""
    status = docker("exec", container, "cat", "/run/shipyard/init-status.json")
    return [service["name"] for service in json.loads(status)["services"]]


def assert_no_secret_logged(container: str, secrets: Mapping[str, str]) -> None:
    """No secret (name -> value) in `docker logs` or in any file under /var/log.

    /var/log holds every server's own log files, which the log agent ships.
    The scan (molecule/secret_scan.py) reports where, never the values.
    """
    scan = secret_scan.Scan()
    for name, value in secrets.items():
        scan.secret(name, value)
    scan.add("docker logs", secret_scan.docker_logs(container))
    scan.add("/var/log", secret_scan.container_files(container, "/var/log"))
    hits = scan.run()
    if hits:
        pytest.fail(secret_scan.report(hits, scan.read))


def wait_healthy(container: str, timeout: float = 180) -> None:
    """Until Docker's HEALTHCHECK reports healthy: for checks of the HEALTHCHECK itself;
    everything else waits for readiness with wait_ready."""
    deadline = time.monotonic() + timeout
    while True:
        if inspect(container)["State"]["Health"]["Status"] == "healthy":
            return
        _fail_unless_running(container, "before it was healthy")
        if time.monotonic() > deadline:
            pytest.fail(f"{container} not healthy after {timeout:g} s:\n{logs(container)[-3000:]}")
        time.sleep(0.3)


def wait_exited(container: str, timeout: float = 120) -> int:
    """Until the container has stopped; its exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = inspect(container)["State"]
        if not state["Running"]:
            return int(state["ExitCode"])
        time.sleep(0.3)
    pytest.fail(f"{container} still runs after {timeout:g} s:\n{logs(container)[-3000:]}")


def address(container: str) -> str:
    """The container's address on its first network that gives it one."""
    networks = inspect(container)["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in networks.values() if n["IPAddress"])


def free_port() -> int:
    """A port on 127.0.0.1 free for both TCP and UDP right now (the log
    collector answers heartbeats over UDP on its TCP port)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port on 127.0.0.1 is free for both TCP and UDP")
