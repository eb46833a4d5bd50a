"""`make test` installs what it needs on a fresh machine, as `make up` installs the engine.

playbooks/test_host.yml (the Makefile's test-host, which `make test` runs
first) installs the Debian packages the tests need when they are missing; in
check mode it shows what it would install without touching the machine.
"""

from __future__ import annotations

import subprocess

from helpers import ROOT, run_playbook

PLAYBOOK = "playbooks/test_host.yml"
# Small Debian packages, one of which this machine is unlikely to have.
CANDIDATES = ["sl", "cowsay", "figlet", "toilet", "bsdgames"]


def installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "--show", "--showformat", "${db:Status-Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() == "installed"


def test_make_test_runs_test_host_first() -> None:
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "--dry-run", "test"], capture_output=True, text=True, check=False
    )
    lines = proc.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "playbooks/test_host.yml" in line)
    assert first < next(i for i, line in enumerate(lines) if "vagrant validate" in line)


def test_what_the_tests_need_is_installed_here() -> None:
    run = run_playbook(PLAYBOOK)
    assert run.rc == 0, run.raw[-3000:]
    assert run.changed == 0
    for package in ("vagrant", "vagrant-libvirt", "tini"):
        assert installed(package), package


def test_a_missing_package_is_installed() -> None:
    missing = next(p for p in CANDIDATES if not installed(p))
    run_vars = {"test_host_packages": ["tini", missing]}
    run = run_playbook(PLAYBOOK, run_vars, check=True)
    assert run.rc == 0, run.raw[-3000:]
    assert run.changed == 1, run.raw[-3000:]
    assert not installed(missing), "check mode must not install"


def test_a_missing_command_installs_its_packages() -> None:
    missing = next(p for p in CANDIDATES if not installed(p))
    run_vars = {
        "test_host_packages": ["tini"],
        "test_host_commands": {"sh": ["tini"], f"no-such-{missing}": [missing]},
    }
    run = run_playbook(PLAYBOOK, run_vars, check=True)
    assert run.rc == 0, run.raw[-3000:]
    assert run.changed == 1, run.raw[-3000:]
    assert missing in run.raw, run.raw[-3000:]
