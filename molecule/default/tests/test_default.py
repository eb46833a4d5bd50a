"""Verify the environment site.yml brought up on the fresh Docker host.

The sample page, fetched over the network at the host's address, must show
the MariaDB row, the PostgreSQL row and access-log lines read back from S3.
The database and log ports must answer there too. Then every container must
stop with exit code 0. The docker CLI talks to the host's engine through the
socket the scenario shares with this machine.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time
import urllib.error
import urllib.request
import uuid
from functools import cache
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, docker, inspect, logs, wait_exited, wait_healthy
from testinfra.host import Host

DOCKER_HOST_CONTAINER = "shipyard-molecule-dockerhost"
NAME = "shipyard"
CONTAINERS = [f"{NAME}-{s}" for s in ("s3", "log-collector", "postgresql", "lamp")]
HTTP_PORT = 8080
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
# This machine's engine; the flag wins over the DOCKER_HOST that inner_engine sets.
LOCAL_ENGINE = "unix:///var/run/docker.sock"


@cache
def host_address() -> str:
    """The Docker host's address on this machine's bridge: over the network.

    Asked of this machine's engine: the flag wins over the DOCKER_HOST that
    inner_engine sets."""
    found = docker("inspect", DOCKER_HOST_CONTAINER, host=LOCAL_ENGINE)
    return json.loads(found)[0]["NetworkSettings"]["IPAddress"]


@pytest.fixture
def inner_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the docker CLI at the Docker host's engine (testinfra's own
    backend must keep talking to this machine's)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{EPHEMERAL}/engine/docker.sock")


def manifest_images() -> list[str]:
    """name:first tag of every image the manifests name."""
    found = []
    for path in sorted((ROOT / "images").glob("*/image.yml")):
        manifest = yaml.safe_load(path.read_text())
        found.append(f"{manifest['name']}:{(manifest.get('tags') or ['latest'])[0]}")
    return found


def fetch(path: str) -> str:
    url = f"http://{host_address()}:{HTTP_PORT}{path}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


def test_the_plays_installed_and_started_the_engine(host: Host) -> None:
    assert host.package("docker.io").is_installed
    assert host.package("python3-docker").is_installed
    assert host.process.filter(comm="dockerd")
    # The base image is on this host, loaded from this machine: nothing was pulled.
    assert host.run("docker image inspect shipyard/base:trixie").rc == 0


@pytest.mark.usefixtures("inner_engine")
def test_the_host_runs_the_images_this_machine_built() -> None:
    """Loaded, not built again: the same ids, so CI builds each image once."""
    for image in [*manifest_images(), "shipyard/base:trixie"]:
        here = docker("image", "inspect", "--format", "{{.Id}}", image, host=LOCAL_ENGINE)
        assert docker("image", "inspect", "--format", "{{.Id}}", image) == here, image


@pytest.mark.usefixtures("inner_engine")
def test_every_container_is_healthy_and_labelled() -> None:
    for name in CONTAINERS:
        # Docker's first check comes one 30 s HEALTHCHECK interval after the start.
        wait_healthy(name, timeout=120)
        assert inspect(name)["Config"]["Labels"]["io.shipyard.environment"] == "dev"


def test_page_shows_both_database_rows() -> None:
    page = fetch("/")
    assert re.search(r'<p id="mariadb">Hello from MariaDB', page), page
    assert re.search(r'<p id="postgresql">Hello from PostgreSQL', page), page


def test_page_shows_access_lines_shipped_through_s3() -> None:
    marker = f"/shipped-{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + 240
    while True:
        # Keep producing lines: the page lists the newest closed slice.
        with pytest.raises(urllib.error.HTTPError):
            fetch(marker)
        page = fetch("/")
        if marker in page:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{marker} never appeared on the page:\n{page}")
        time.sleep(5)
    assert re.search(r'<code id="s3-object">logs/\d{8}/lamp-\d{4}\.log\.gz</code>', page), page


def test_database_ports_answer_on_the_network() -> None:
    for port in (3306, 5432, 9000, 24224):
        with socket.create_connection((host_address(), port), timeout=10):
            pass


@pytest.mark.usefixtures("inner_engine")
def test_secrets_are_private_files_and_not_in_the_containers_logs() -> None:
    secrets = sorted((EPHEMERAL / ".shipyard" / "secrets").iterdir())
    assert {p.name for p in secrets} >= {"mariadb-root", "postgresql-superuser", "app-mariadb"}
    for path in secrets:
        # The log path's certificates are public and readable by the agents'
        # users; every other file there (passwords, keys) is the owner's alone.
        expected = 0o644 if path.suffix == ".crt" else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    values = [p.read_text().strip() for p in secrets if p.suffix != ".crt"]
    for name in CONTAINERS:
        output = logs(name)
        assert not any(v in output for v in values), name


@pytest.mark.usefixtures("inner_engine")
def test_docker_stop_of_every_container_exits_zero() -> None:
    for name in reversed(CONTAINERS):
        began = time.monotonic()
        docker("stop", name, timeout=60)
        assert wait_exited(name) == 0, json.dumps(inspect(name)["State"])
        assert time.monotonic() - began < 12, name
