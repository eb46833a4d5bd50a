"""The helpers of tests/helpers.py under the names the molecule verifiers know.

One module holds them (tests/helpers.py, on pytest's pythonpath); this keeps
the verifiers that import `container_checks` working. Here `docker` returns
the CompletedProcess, as those verifiers expect; new code imports helpers.
"""

from __future__ import annotations

from helpers import (
    address,
    assert_no_secret_logged,
    inspect,
    logs,
    supervised,
    wait_exited,
    wait_healthy,
    wait_ready,
)
from helpers import docker_proc as docker

__all__ = [
    "address",
    "assert_no_secret_logged",
    "docker",
    "inspect",
    "logs",
    "supervised",
    "wait_exited",
    "wait_healthy",
    "wait_ready",
]
