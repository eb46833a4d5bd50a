"""Verify the environment site.yml brought up, over the network.

The sample page, fetched through the host's own address (the ports are
published on every address in this scenario), must show the MariaDB row, the
PostgreSQL row and access-log lines read back from S3. Then every container
must stop with exit code 0.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from container_checks import docker, inspect, wait_exited

NAME = "shipyard-molecule-default"
CONTAINERS = [f"{NAME}-{s}" for s in ("s3", "log-collector", "postgresql", "lamp")]
HTTP_PORT = 18080


def host_address() -> str:
    """This machine's address on its default route: not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
        return probe.getsockname()[0]


def fetch(path: str) -> str:
    url = f"http://{host_address()}:{HTTP_PORT}{path}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


def test_every_container_is_healthy_and_labelled() -> None:
    for name in CONTAINERS:
        state = inspect(name)
        assert state["State"]["Health"]["Status"] == "healthy", name
        assert state["Config"]["Labels"]["io.shipyard.environment"] == "molecule-default"


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
    for port in (13306, 15432, 19000, 24225):
        with socket.create_connection((host_address(), port), timeout=10):
            pass


def test_secrets_are_private_files_and_not_in_the_containers_logs() -> None:
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    secrets = sorted((ephemeral / ".shipyard" / "secrets").iterdir())
    assert {p.name for p in secrets} >= {"mariadb-root", "postgresql-superuser", "app-mariadb"}
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    values = [p.read_text().strip() for p in secrets]
    for name in CONTAINERS:
        logs = subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, timeout=60, check=False
        )
        assert not any(v in logs.stdout + logs.stderr for v in values), name


def test_docker_stop_of_every_container_exits_zero() -> None:
    for name in reversed(CONTAINERS):
        began = time.monotonic()
        docker("stop", name, timeout=60)
        assert wait_exited(name) == 0, json.dumps(inspect(name)["State"])
        assert time.monotonic() - began < 12, name
