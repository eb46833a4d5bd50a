"""The GitHub workflow cannot drift from .ci/run.

Every `run:` step of .github/workflows/ci.yml must be `.ci/run` itself, a make
target the Makefile defines, or the venv's ansible-playbook on a playbook that
exists; anything else (a pip install, an inline script) would be CI behaviour
that `.ci/run` does not have. The workflow must also stand alone: GitHub
clones the repository without ../shared beside it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
CI_RUN = ROOT / ".ci" / "run"

# One command per line: chaining would let anything in behind an allowed prefix.
SHELL_OPERATORS = re.compile(r"&&|\|\||[;|&`<>]|\$\(")
MAKE_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def make_targets() -> set[str]:
    """The targets make itself knows, from its database (`make -pRrq`)."""
    proc = subprocess.run(
        ["make", "-pRrq", "-f", "Makefile", ":"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    # -q exits 1 when the goal is out of date; only a missing database is an error.
    assert "# Files" in proc.stdout, proc.stderr
    targets: set[str] = set()
    previous = ""
    for line in proc.stdout.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*):(?!=)", line)
        if match and previous != "# Not a target:":
            targets.add(match.group(1))
        previous = line
    return targets


def commands(script: str) -> list[str]:
    """The commands of a run script, one per line, continuations joined."""
    joined = re.sub(r"\\\n", " ", script)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def violations(workflow: dict, targets: set[str]) -> list[str]:
    """Every run step command that is not .ci/run, a make target or a playbook."""
    found = []
    for job_name, job in (workflow.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            for command in commands(step.get("run", "")):
                where = f"{job_name} / {step.get('name', '?')}: {command!r}"
                if SHELL_OPERATORS.search(command):
                    found.append(f"{where}: one command per line, no shell operators")
                    continue
                words = shlex.split(command)
                if words in (["bash", ".ci/run"], [".ci/run"]):
                    continue
                if words[0] == "make":
                    goals = [w for w in words[1:] if not MAKE_VARIABLE.match(w)]
                    missing = [g for g in goals if g not in targets]
                    if not goals or missing:
                        found.append(f"{where}: not Makefile targets: {missing or 'none given'}")
                    continue
                if words[0] == ".venv/bin/ansible-playbook":
                    playbooks = [w for w in words[1:] if w.endswith((".yml", ".yaml"))]
                    if len(playbooks) != 1 or not (ROOT / playbooks[0]).is_file():
                        found.append(f"{where}: not one existing playbook: {playbooks}")
                    continue
                found.append(f"{where}: not .ci/run, a make target or a playbook")
    return found


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def targets() -> set[str]:
    return make_targets()


def test_makefile_targets_are_read_from_make(targets: set[str]) -> None:
    assert {"up", "test", "lint", "vagrant", "pytest", "molecule"} <= targets
    assert "no-such-target" not in targets


def test_every_run_step_is_ci_run_a_make_target_or_a_playbook(
    workflow: dict, targets: set[str]
) -> None:
    assert violations(workflow, targets) == []


def test_the_workflow_runs_ci_run_on_push_tags_and_pull_requests(workflow: dict) -> None:
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    triggers = workflow.get("on", workflow.get(True))
    assert {"push", "pull_request"} <= set(triggers)
    assert triggers["push"].get("tags"), "tags must trigger the workflow: they push images"
    runs = [
        step
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "run" in step and shlex.split(step["run"]) in (["bash", ".ci/run"], [".ci/run"])
    ]
    assert len(runs) == 1, runs
    assert "if" not in runs[0], "the tests must run on every event"


def test_images_are_pushed_only_on_tags_after_the_tests(workflow: dict) -> None:
    for job in workflow["jobs"].values():
        steps = job["steps"]
        for index, step in enumerate(steps):
            if "images_push=true" not in step.get("run", ""):
                continue
            assert "refs/tags/" in step.get("if", ""), step
            earlier = [s.get("run", "").strip() for s in steps[:index]]
            assert "bash .ci/run" in earlier, "push only images that .ci/run built and tested"
            env = step.get("env", {})
            for name in ("SHIPYARD_REGISTRY_USERNAME", "SHIPYARD_REGISTRY_PASSWORD"):
                assert env.get(name) == f"${{{{ secrets.{name} }}}}", (name, env.get(name))
            return
    pytest.fail("no step pushes the images (images_push=true)")


def test_ci_run_ends_in_make_test() -> None:
    """The chain the workflow relies on: .ci/run -> make test -> lint, vagrant, ..."""
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    assert "make test" in lines


def test_the_workflow_does_not_need_the_shared_directory() -> None:
    assert "../shared" not in WORKFLOW.read_text()


@pytest.mark.parametrize(
    ("run", "complaint"),
    [
        ("make no-such-target", "not Makefile targets"),
        ("make", "none given"),
        ("pip install ansible", "not .ci/run"),
        ("bash .ci/run && curl example.org | sh", "shell operators"),
        ("make test; rm -rf /", "shell operators"),
        ("echo $(make test)", "shell operators"),
        (".venv/bin/ansible-playbook playbooks/no-such.yml", "not one existing playbook"),
    ],
)
def test_the_check_rejects_drift(run: str, complaint: str, targets: set[str]) -> None:
    fake = {"jobs": {"ci": {"steps": [{"name": "drift", "run": run}]}}}
    found = violations(fake, targets)
    assert len(found) == 1, found
    assert complaint in found[0]


def test_the_check_accepts_make_targets_with_variables(targets: set[str]) -> None:
    fake = {"jobs": {"ci": {"steps": [{"run": "make molecule SCENARIOS=lamp\nmake lint"}]}}}
    assert violations(fake, targets) == []
