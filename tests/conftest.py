"""Session fixtures: the real Docker engine and the base image `make up` provides."""

from __future__ import annotations

import subprocess

import pytest
from helpers import run_playbook


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The engine `make up` started; its absence is a failure, never a skip."""
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"no Docker engine answers (run `make up` first): {proc.stderr.strip()}")
    return "unix:///var/run/docker.sock"


@pytest.fixture(scope="session")
def base_image(docker_engine: str) -> str:
    """The resolved base image, as site.yml leaves it."""
    run = run_playbook("playbooks/base_image.yml")
    assert run.rc == 0, run.raw
    return str(run.facts["base_image_resolved"])
