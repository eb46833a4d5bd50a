"""The Vagrant VM publishes on its network only the ports it forwards.

The Vagrantfile is read by Vagrant's own configuration loader (no VM is
started); the extra variables it gives site.yml are then applied to the dev
environment's description, which is what the containers are started from.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import ROOT, run_playbook

# What a port published on every address reports; nothing binds to it here.
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104

HARNESS = Path(__file__).with_name("vagrant_config.rb")


def vagrant_config(forward: str | None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"VAGRANT_CHECKPOINT_DISABLE": "1"}
    env.pop("SHIPYARD_VM_FORWARD", None)
    if forward is not None:
        env["SHIPYARD_VM_FORWARD"] = forward
    with tempfile.TemporaryDirectory() as dotfile:
        env["VAGRANT_DOTFILE_PATH"] = dotfile
        return subprocess.run(
            ["ruby", str(HARNESS), str(ROOT)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )


def published(extra_vars: dict) -> dict[str, tuple[str, int]]:
    """Every port of the dev environment: container.port -> (address, host port)."""
    run = run_playbook("playbooks/describe.yml", extra_vars)
    assert run.rc == 0, run.raw[-3000:]
    return {
        f"{service}.{name}": (port["address"], port["host"])
        for service, container in run.facts["dev_environment"]["containers"].items()
        for name, port in container["ports"].items()
    }


@pytest.mark.parametrize(
    ("forward", "forwards", "on_the_network"),
    [
        (None, [(8080, 8080)], {"lamp.http"}),
        (
            "http postgresql=15432",
            [(8080, 8080), (5432, 15432)],
            {"lamp.http", "postgresql.postgresql"},
        ),
    ],
)
def test_only_the_forwarded_ports_leave_the_vm_loopback(
    forward: str | None, forwards: list[tuple[int, int]], on_the_network: set[str]
) -> None:
    proc = vagrant_config(forward)
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    assert [(f["guest"], f["host"]) for f in config["forwards"]] == forwards
    assert {f["host_ip"] for f in config["forwards"]} == {"127.0.0.1"}
    ports = published(config["extra_vars"])
    assert {
        name for name, (address, _) in ports.items() if address != "127.0.0.1"
    } == on_the_network
    assert {ports[name][0] for name in on_the_network} == {EVERY_ADDRESS}


def test_an_unknown_port_name_fails_naming_it() -> None:
    proc = vagrant_config("http nosuch")
    assert proc.returncode != 0
    assert "SHIPYARD_VM_FORWARD: no image publishes a port named nosuch" in proc.stderr
