"""make installs into .venv what a target needs: the stack's tools for the
targets that run it, the test tools on top only for those that test it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

FILES = (
    "Makefile",
    "requirements.txt",
    "requirements-test.txt",
    "pyproject.toml",
    "VERSION",
    "tests/logs/interop/package.json",
    "tests/logs/interop/package-lock.json",
)


def install_line(plan: str, requirements: str) -> int:
    """The line of PLAN that pip-installs REQUIREMENTS, or -1."""
    for number, line in enumerate(plan.splitlines()):
        if " -m pip install " in line and f" -r {requirements} " in f"{line} ":
            return number
    return -1


def planned(workdir: Path, target: str) -> str:
    """What `make -n TARGET` would run in a checkout without .venv."""
    proc = subprocess.run(
        ["make", "-n", target], cwd=workdir, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("target", ["up", "down", "report", "backup", "venv-stack", "test-host"])
def test_the_stack_targets_install_the_stack_tools_alone(checkout: Path, target: str) -> None:
    plan = planned(checkout, target)
    assert install_line(plan, "requirements.txt") >= 0
    assert "requirements-test.txt" not in plan


@pytest.mark.parametrize("target", ["lint", "pytest", "molecule", "scan", "venv"])
def test_the_test_targets_add_the_test_tools(checkout: Path, target: str) -> None:
    plan = planned(checkout, target)
    stack = install_line(plan, "requirements.txt")
    assert stack >= 0
    assert install_line(plan, "requirements-test.txt") > stack


def test_pip_byte_compiles_what_it_installs(checkout: Path) -> None:
    # Where PYTHONDONTWRITEBYTECODE is set, the install is the only time the
    # venv's bytecode is written; without it every run compiles again.
    plan = planned(checkout, "venv").splitlines()
    installs = [line for line in plan if " -m pip install " in line]
    assert len(installs) >= 3
    assert not any("--no-compile" in line.split() for line in installs), installs


def pins(name: str) -> set[str]:
    lines = (ROOT / name).read_text().splitlines()
    return {line.split("==")[0] for line in lines if "==" in line and not line.startswith("#")}


def test_the_stack_set_holds_no_test_tool() -> None:
    test_tools = {
        "pytest",
        "molecule",
        "ansible-lint",
        "ruff",
        "pyspark",
        "playwright",
        "moto[server]",
    }
    assert pins("requirements.txt") & test_tools == set()
    assert pins("requirements-test.txt") >= test_tools


def test_no_pin_is_in_both_files() -> None:
    assert pins("requirements.txt") & pins("requirements-test.txt") == set()
    assert "-r requirements.txt" in (ROOT / "requirements-test.txt").read_text().splitlines()
