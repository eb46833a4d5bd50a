"""Docker checks the molecule scenarios' testinfra suites share.

They drive the host's docker CLI directly, for what testinfra's view from
inside the instance cannot see: health, exit codes, logs, restarts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping

import pytest


def docker(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"docker {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def logs(container: str, since: str | None = None) -> str:
    proc = docker("logs", *(["--since", since] if since else []), container)
    return proc.stdout + proc.stderr


def wait_healthy(container: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = inspect(container)["State"]
        if state["Health"]["Status"] == "healthy":
            return
        if not state["Running"]:
            pytest.fail(f"{container} exited ({state['ExitCode']}):\n{logs(container)[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{container} not healthy after {timeout:g} s:\n{logs(container)[-3000:]}")
        time.sleep(0.3)


def wait_ready(container: str, timeout: float = 180) -> None:
    """Until shipyard-init reports every service ready (`status --wait`), not Docker's health.

    The images' HEALTHCHECK runs every 30 s; the supervisor answers the moment
    the last service is ready.
    """
    wait = ("/usr/local/bin/shipyard-init", "status", "--wait", f"{timeout:g}")
    proc = docker("exec", container, *wait, check=False, timeout=timeout + 30)
    if proc.returncode != 0:
        answer = (proc.stdout + proc.stderr).strip()
        pytest.fail(f"{container} is not ready: {answer}\n{logs(container)[-3000:]}")


def logged_secrets(container: str, secrets: Mapping[str, str]) -> dict[str, list[str]]:
    """Where each secret (name -> value) shows: `docker logs`, or files under /var/log.

    /var/log holds every server's own log files, which the log agent ships.
    The answer names the secrets, never their values.
    """
    found: dict[str, list[str]] = {}
    output = logs(container)
    for name, value in secrets.items():
        grep = docker("exec", container, "grep", "-rlaF", "--", value, "/var/log", check=False)
        if grep.returncode > 1:
            pytest.fail(f"grep in {container}'s /var/log failed: {grep.stderr.strip()}")
        places = (["docker logs"] if value in output else []) + grep.stdout.split()
        if places:
            found[name] = places
    return found


def wait_exited(container: str, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = inspect(container)["State"]
        if not state["Running"]:
            return int(state["ExitCode"])
        time.sleep(0.3)
    pytest.fail(f"{container} still runs after {timeout:g} s:\n{logs(container)[-3000:]}")


def address(container: str) -> str:
    networks = inspect(container)["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in networks.values() if n["IPAddress"])
