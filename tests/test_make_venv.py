"""make installs into .venv what a target needs: the stack's tools for the
targets that run it, the test tools on top only for those that test it."""

from __future__ import annotations

import re
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


# uv installs the pinned sets; pip installs uv alone.
INSTALLER = "/uv pip install "


def install_line(plan: str, requirements: str) -> int:
    """The line of PLAN that installs REQUIREMENTS, or -1."""
    for number, line in enumerate(plan.splitlines()):
        if INSTALLER in line and f" -r {requirements} " in f"{line} ":
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


def compiled(plan: list[str]) -> list[str]:
    """The compileall lines of PLAN."""
    return [line for line in plan if " -m compileall " in line]


def test_every_install_is_followed_by_a_byte_compile(checkout: Path) -> None:
    # Where PYTHONDONTWRITEBYTECODE is set, the install is the only time the
    # venv's bytecode is written; without it every run compiles again.
    plan = planned(checkout, "venv").splitlines()
    installs = [n for n, line in enumerate(plan) if INSTALLER in line]
    compiles = [n for n, line in enumerate(plan) if " -m compileall " in line]
    assert len(installs) >= 3
    assert len(compiles) == 2, plan
    assert compiles[0] > installs[1] and compiles[1] > installs[-1], plan


# A task or filter written as namespace.collection.name, in the files the plays load.
FQCN = re.compile(r"\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*\b")
PLAY_FILES = ["site.yml", "playbooks", "roles", "molecule", "inventory"]


def named_collections() -> set[str]:
    found: set[str] = set()
    for top in PLAY_FILES:
        path = ROOT / top
        for file in [path] if path.is_file() else [*path.rglob("*.yml"), *path.rglob("*.j2")]:
            for namespace, collection in FQCN.findall(file.read_text()):
                core = collection in {"builtin", "legacy"}
                if namespace in {"community", "ansible"} and not core:
                    found.add(f"{namespace}/{collection}")
    return found


def test_the_collections_the_plays_name_are_byte_compiled(checkout: Path) -> None:
    lines = compiled(planned(checkout, "venv-stack").splitlines())
    assert lines
    paths = set(re.findall(r"/ansible_collections/([a-z_]+/[a-z_]+)", " ".join(lines)))
    named = named_collections()
    # The check sees the collections that are there to be seen.
    assert {"community/docker", "community/postgresql"} <= named
    missing, unnamed = sorted(named - paths), sorted(paths - named)
    assert not missing, f"add {missing} to COMPILED_COLLECTIONS in the Makefile"
    assert not unnamed, f"no play names {unnamed}: drop it from COMPILED_COLLECTIONS"


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


def test_uv_is_installed_at_its_pin_before_it_installs_the_rest(checkout: Path) -> None:
    plan = planned(checkout, "venv-stack").splitlines()
    bootstrap = [n for n, line in enumerate(plan) if " -m pip install " in line]
    assert len(bootstrap) == 1, plan
    assert "--constraint requirements.txt uv" in plan[bootstrap[0]]
    assert "uv" in pins("requirements.txt")
    assert bootstrap[0] < install_line("\n".join(plan), "requirements.txt")


def test_no_pin_is_in_both_files() -> None:
    assert pins("requirements.txt") & pins("requirements-test.txt") == set()
    assert "-r requirements.txt" in (ROOT / "requirements-test.txt").read_text().splitlines()
