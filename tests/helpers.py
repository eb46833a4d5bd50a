"""Helpers for the tests: run real playbooks and the docker CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class PlaybookRun:
    """What one ansible-playbook run did, read from the json callback."""

    rc: int
    seconds: float
    stats: dict[str, int]
    messages: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    raw: str = ""

    @property
    def changed(self) -> int:
        return self.stats.get("changed", 0)

    @property
    def failed(self) -> int:
        return self.stats.get("failures", 0) + self.stats.get("unreachable", 0)


def _walk_results(report: dict) -> tuple[list[str], dict[str, object]]:
    messages: list[str] = []
    facts: dict[str, object] = {}
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                for item in result.get("results", [result]):
                    if item.get("msg"):
                        messages.append(str(item["msg"]))
                    facts.update(item.get("ansible_facts", {}))
    return messages, facts


def run_playbook(
    playbook: str | Path,
    extra_vars: dict[str, object] | None = None,
    timeout: float = 900,
    tags: str | None = None,
) -> PlaybookRun:
    """Run a playbook from the project root with the json callback."""
    env = os.environ | {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    cmd = [str(BIN / "ansible-playbook"), str(playbook)]
    if extra_vars:
        cmd += ["--extra-vars", json.dumps(extra_vars)]
    if tags:
        cmd += ["--tags", tags]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    seconds = time.monotonic() - started
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook printed no JSON report:\n{proc.stdout}\n{proc.stderr}")
    stats = next(iter(report.get("stats", {}).values()), {})
    messages, facts = _walk_results(report)
    return PlaybookRun(proc.returncode, seconds, stats, messages, facts, proc.stdout + proc.stderr)


def docker(*args: str, host: str | None = None, check: bool = True) -> str:
    """Run the docker CLI and return its stdout."""
    cmd = ["docker", *(["--host", host] if host else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed: {proc.stderr}")
    return proc.stdout
