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


def test_one_image_by_tag_uses_the_resolved_base(base_image: str) -> None:
    """`--tags lamp` must still resolve the base image, or the build arg (and so the
    input hash) changes and the build goes looking for debian:trixie-slim."""
    assert run_playbook("site.yml").rc == 0
    run = run_playbook("playbooks/images.yml", tags="lamp")
    assert run.rc == 0, run.raw
    assert run.facts["base_image_resolved"] == base_image
    assert run.changed == 0, run.raw
