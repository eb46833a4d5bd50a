"""The shipyard-logs entry point dispatches to agent, collector and report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMON = Path(__file__).resolve().parents[2] / "images/common"


def shipyard_logs(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(COMMON)}
    return subprocess.run(
        [sys.executable, "-m", "shipyard_logs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["agent", "collector", "report"])
def test_each_command_reaches_its_own_parser(command: str) -> None:
    proc = shipyard_logs(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
    assert ("--date" in proc.stdout) == (command == "report")


@pytest.mark.parametrize("args", [[], ["bogus"]])
def test_missing_or_unknown_command_is_a_usage_error(args: list[str]) -> None:
    proc = shipyard_logs(*args)
    assert proc.returncode == 64
    assert "usage: shipyard-logs {agent|collector|report}" in proc.stdout + proc.stderr
