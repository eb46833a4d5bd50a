"""site.yml end to end on the default inventory: converges, then changes nothing."""

from __future__ import annotations

import pytest
from helpers import docker, run_playbook

pytestmark = pytest.mark.docker


def test_site_converges_then_changes_nothing(docker_engine: str) -> None:
    first = run_playbook("site.yml")
    assert first.rc == 0, first.raw
    second = run_playbook("site.yml")
    assert second.rc == 0, second.raw
    assert second.changed == 0, second.raw
    resolved = str(second.facts["base_image_resolved"])
    assert docker("image", "ls", "--quiet", resolved).strip(), f"{resolved} is not in the engine"
