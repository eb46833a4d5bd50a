"""site.yml skips a stage whose inputs are those of the last run that succeeded.

Against the running dev environment (`make up` first): a run with nothing
changed skips the databases, logging, app and backup stages; a changed variable of
one stage's roles runs that stage (and those after it) again; a failed run
leaves the record as it was, so the next run does not skip what failed.
"""

from __future__ import annotations

import pytest
from helpers import ROOT, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SKIPPED = "Unchanged since the last run that succeeded, so skipped: "
RECORD = ROOT / ".shipyard" / "stages" / "localhost.json"
CA_TASK = "backup : Create the CA's private key"


def skipped(messages: list[str]) -> list[str]:
    found = [m for m in messages if m.startswith(SKIPPED)]
    if not found:
        return []
    return found[0][len(SKIPPED) :].split(" (")[0].split(", ")


@pytest.fixture(scope="module")
def settled(docker_engine: str) -> None:
    run = run_playbook("site.yml")
    assert run.rc == 0, run.raw[-3000:]


@pytest.mark.usefixtures("settled")
def test_a_run_with_nothing_changed_skips_the_stages() -> None:
    run = run_playbook("site.yml")
    assert run.rc == 0, run.raw[-3000:]
    assert skipped(run.messages) == ["databases", "logging", "app", "backup"]
    assert run.changed == 0, run.raw[-3000:]
    # The backup endpoint's CA and certificate are unchanged: not one
    # community.crypto check of them runs.
    assert CA_TASK not in run.raw


@pytest.mark.usefixtures("settled")
def test_a_changed_variable_runs_its_stage_again() -> None:
    changed = run_playbook("site.yml", {"sample_app_log_lines": 7})
    assert changed.rc == 0, changed.raw[-3000:]
    assert skipped(changed.messages) == ["databases", "logging"]
    assert changed.changed > 0
    back = run_playbook("site.yml")
    assert back.rc == 0, back.raw[-3000:]
    assert skipped(back.messages) == ["databases", "logging"]


@pytest.mark.usefixtures("settled")
def test_full_runs_every_stage() -> None:
    run = run_playbook("site.yml", {"stage_cache_enabled": False})
    assert run.rc == 0, run.raw[-3000:]
    assert skipped(run.messages) == []
    assert run.changed == 0, run.raw[-3000:]
    assert CA_TASK in run.raw


@pytest.mark.usefixtures("settled")
def test_a_failed_run_leaves_the_record_alone() -> None:
    before = RECORD.read_text()
    failed = run_playbook("site.yml", {"sample_app_database": "no_such_database"})
    assert failed.rc != 0
    assert RECORD.read_text() == before
    again = run_playbook("site.yml")
    assert again.rc == 0, again.raw[-3000:]
    assert skipped(again.messages) == ["databases", "logging", "app", "backup"]
