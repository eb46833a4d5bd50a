"""The project's Dockerfiles, read as files: what the builds rely on."""

from __future__ import annotations

import yaml
from helpers import ROOT


def shared_stage_name() -> str:
    playbook = yaml.safe_load((ROOT / "playbooks/images.yml").read_text())
    tasks = playbook[0]["tasks"]
    build = next(
        t
        for t in tasks
        if t.get("ansible.builtin.include_role", {}).get("name") == "container_image"
        and "container_image_shared_stage" in t.get("vars", {})
    )
    return build["vars"]["container_image_shared_stage"]


def test_every_project_dockerfile_begins_with_the_same_shared_stage() -> None:
    stage = shared_stage_name()
    heads = {}
    for dockerfile in sorted((ROOT / "images").glob("*/Dockerfile")):
        text = dockerfile.read_text()
        # The stage runs to the FROM that starts from it; everything up to
        # there must be identical for Docker's layer cache to share it.
        end = text.find(f"\nFROM {stage}\n")
        assert end > 0, f"{dockerfile.relative_to(ROOT)} does not continue FROM {stage}"
        head = text[:end]
        assert f" AS {stage}\n" in head, (
            f"{dockerfile.relative_to(ROOT)} does not name its first stage {stage}"
        )
        heads[dockerfile.parent.name] = head
    assert len(heads) >= 4
    assert len(set(heads.values())) == 1, sorted(heads)
