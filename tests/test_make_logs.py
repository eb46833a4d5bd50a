"""make keeps the runs' logs private: .shipyard/logs 0700, ansible.log 0600 before Ansible."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

from helpers import ROOT


def make_help(workdir: Path) -> None:
    for name in (
        "Makefile",
        "requirements.txt",
        "requirements-test.txt",
        "pyproject.toml",
        "VERSION",
    ):
        shutil.copy(ROOT / name, workdir / name)
    proc = subprocess.run(
        ["make", "help"], cwd=workdir, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_any_make_run_creates_the_logs_private(tmp_path: Path) -> None:
    make_help(tmp_path)
    logs = tmp_path / ".shipyard" / "logs"
    assert mode(logs) == 0o700
    assert mode(logs / "ansible.log") == 0o600


def test_a_log_an_earlier_version_left_readable_is_closed_and_kept(tmp_path: Path) -> None:
    logs = tmp_path / ".shipyard" / "logs"
    logs.mkdir(parents=True)
    logs.chmod(0o755)
    (logs / "ansible.log").write_text("earlier run\n")
    (logs / "ansible.log").chmod(0o644)
    make_help(tmp_path)
    assert mode(logs) == 0o700
    assert mode(logs / "ansible.log") == 0o600
    assert (logs / "ansible.log").read_text() == "earlier run\n"
