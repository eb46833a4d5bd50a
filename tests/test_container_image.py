"""container_image on a real engine: skip when unchanged, rebuild on change, labels, bad input."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import PlaybookRun, docker, run_playbook

pytestmark = pytest.mark.docker

PLAYBOOK = """\
- name: Build one image with container_image
  hosts: docker_hosts
  gather_facts: false
  roles:
    - role: container_image
"""

DOCKERFILE = """\
ARG BASE_IMAGE=debian:trixie-slim
FROM ${BASE_IMAGE}
ARG GREETING=hello
COPY app/greeting.txt /greeting.txt
RUN echo "$GREETING" > /arg.txt
"""


def git(context: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(context), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).strip()


def labels(ref: str) -> dict[str, str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref))


class Builder:
    """Runs the role against one throwaway context, playbook and image name."""

    def __init__(self, tmp: Path, base_image: str) -> None:
        self.name = f"shipyard-test/image-{uuid.uuid4().hex[:8]}"
        self.context = tmp / "context"
        (self.context / "app").mkdir(parents=True)
        (self.context / "other").mkdir()
        (self.context / "app" / "Dockerfile").write_text(DOCKERFILE)
        (self.context / "app" / "greeting.txt").write_text("one\n")
        (self.context / "other" / "notes.txt").write_text("not an input\n")
        self.playbook = tmp / "build.yml"
        self.playbook.write_text(PLAYBOOK)
        self.base_image = base_image

    def run(self, **overrides: object) -> PlaybookRun:
        extra = {
            "container_image_name": self.name,
            "container_image_context": str(self.context),
            "container_image_dockerfile": "app/Dockerfile",
            "container_image_inputs": ["app"],
            "container_image_base_image": self.base_image,
        }
        extra.update(overrides)
        return run_playbook(self.playbook, {k: v for k, v in extra.items() if v is not None})


@pytest.fixture(scope="module")
def builder(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    built = Builder(tmp_path_factory.mktemp("container_image"), base_image)
    yield built
    for tag in ("latest", "0.1.0"):
        docker("image", "rm", "--force", f"{built.name}:{tag}", check=False)


@pytest.fixture(scope="module")
def first(builder: Builder) -> PlaybookRun:
    git(builder.context, "init", "--quiet")
    git(builder.context, "add", ".")
    git(builder.context, "commit", "--quiet", "--message", "context")
    run = builder.run()
    assert run.rc == 0, run.raw
    return run


def test_first_run_builds_and_tags(builder: Builder, first: PlaybookRun) -> None:
    assert first.changed > 0
    assert first.facts["container_image_result"]["built"] is True
    assert image_id(f"{builder.name}:latest") == image_id(f"{builder.name}:0.1.0")
    assert docker("run", "--rm", f"{builder.name}:latest", "cat", "/greeting.txt") == "one\n"


def test_labels_name_revision_time_and_inputs(builder: Builder, first: PlaybookRun) -> None:
    found = labels(f"{builder.name}:latest")
    assert found["org.opencontainers.image.revision"] == git(builder.context, "rev-parse", "HEAD")
    created = datetime.strptime(found["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(datetime.now(UTC) - created.replace(tzinfo=UTC)) < timedelta(minutes=30)
    assert found["io.shipyard.input-hash"] == first.facts["container_image_result"]["input_hash"]


def test_unchanged_inputs_skip_the_build(builder: Builder, first: PlaybookRun) -> None:
    before = image_id(f"{builder.name}:latest")
    again = builder.run()
    assert again.rc == 0, again.raw
    assert again.changed == 0
    assert again.facts["container_image_result"]["built"] is False
    assert any("is up to date" in m for m in again.messages), again.messages
    assert image_id(f"{builder.name}:latest") == before


def test_files_outside_the_inputs_do_not_count(builder: Builder, first: PlaybookRun) -> None:
    (builder.context / "other" / "notes.txt").write_text("changed, still not an input\n")
    run = builder.run()
    assert run.rc == 0, run.raw
    assert run.changed == 0


def test_a_changed_input_file_rebuilds(builder: Builder, first: PlaybookRun) -> None:
    before = labels(f"{builder.name}:latest")["io.shipyard.input-hash"]
    # Without a git repository the revision is recorded as unknown.
    subprocess.run(["rm", "-rf", str(builder.context / ".git")], check=True)
    (builder.context / "app" / "greeting.txt").write_text("two\n")
    run = builder.run()
    assert run.rc == 0, run.raw
    assert run.changed > 0
    after = labels(f"{builder.name}:latest")
    assert after["io.shipyard.input-hash"] != before
    assert after["org.opencontainers.image.revision"] == "unknown"
    assert docker("run", "--rm", f"{builder.name}:0.1.0", "cat", "/greeting.txt") == "two\n"


def test_a_changed_build_argument_rebuilds(builder: Builder, first: PlaybookRun) -> None:
    args = {"container_image_build_args": {"GREETING": "bonjour"}}
    run = builder.run(**args)
    assert run.rc == 0, run.raw
    assert run.facts["container_image_result"]["built"] is True
    assert docker("run", "--rm", f"{builder.name}:latest", "cat", "/arg.txt") == "bonjour\n"
    assert builder.run(**args).changed == 0


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"container_image_name": None}, "container_image_name"),
        ({"container_image_name": "Not/A Name:tag"}, "container_image_name"),
        ({"container_image_dockerfile": "nope/Dockerfile"}, "container_image_dockerfile"),
        ({"container_image_inputs": ["app", "missing"]}, "container_image_inputs"),
        ({"container_image_build_args": "GREETING"}, "container_image_build_args"),
        ({"container_image_tags": []}, "container_image_tags"),
    ],
)
def test_bad_input_names_the_variable(
    builder: Builder, overrides: dict[str, object], variable: str
) -> None:
    run = builder.run(**overrides)
    assert run.rc != 0
    assert run.changed == 0
    assert any(variable in m for m in run.messages), run.messages


MANIFESTS_PLAYBOOK = """\
- name: Build every manifest of a context with container_image
  hosts: docker_hosts
  gather_facts: false
  tasks:
    - name: Read the manifests
      ansible.builtin.include_role:
        name: container_image
        tasks_from: manifests
    - name: Build them
      ansible.builtin.include_role:
        name: container_image
"""


@pytest.fixture(scope="module")
def manifests_context(
    base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, list[str]]]:
    """Two images, each a folder with a Dockerfile and a manifest, in a context of their own."""
    tmp = tmp_path_factory.mktemp("manifests")
    context = tmp / "images"
    names = []
    for folder in ("one", "two"):
        (context / folder).mkdir(parents=True)
        (context / folder / "Dockerfile").write_text(
            f"ARG BASE_IMAGE=debian:trixie-slim\nFROM ${{BASE_IMAGE}}\n"
            f"COPY {folder}/greeting.txt /greeting.txt\n"
        )
        (context / folder / "greeting.txt").write_text(f"{folder}\n")
        name = f"shipyard-test/manifest-{folder}-{uuid.uuid4().hex[:6]}"
        (context / folder / "image.yml").write_text(f"name: {name}\ntags: [edge]\n")
        names.append(name)
    (tmp / "build.yml").write_text(MANIFESTS_PLAYBOOK)
    yield tmp, names
    for name in names:
        for tag in ("edge", "latest", (Path(__file__).parents[1] / "VERSION").read_text().strip()):
            docker("image", "rm", "--force", f"{name}:{tag}", check=False)


def build_manifests(tmp: Path, base_image: str, **extra: object) -> PlaybookRun:
    return run_playbook(
        tmp / "build.yml",
        {
            "container_image_manifests_dir": str(tmp / "images"),
            "container_image_context": str(tmp / "images"),
            "container_image_base_image": base_image,
            **extra,
        },
    )


def test_every_manifest_is_built_with_its_defaults_then_left_alone(
    manifests_context: tuple[Path, list[str]], base_image: str
) -> None:
    tmp, names = manifests_context
    version = (Path(__file__).parents[1] / "VERSION").read_text().strip()
    first = build_manifests(tmp, base_image)
    assert first.rc == 0, first.raw[-3000:]
    results = {r["name"]: r for r in first.facts["container_image_results"]}
    assert set(results) == set(names)
    for folder, name in zip(("one", "two"), names, strict=True):
        # The project version is added as the last tag; Dockerfile and inputs default to the folder.
        assert results[name]["tags"] == ["edge", version]
        assert results[name]["built"] is True
        assert image_id(f"{name}:edge") == image_id(f"{name}:{version}")
        assert docker("run", "--rm", f"{name}:edge", "cat", "/greeting.txt") == f"{folder}\n"
    again = build_manifests(tmp, base_image)
    assert again.rc == 0, again.raw[-3000:]
    assert again.changed == 0
    assert not any(r["built"] for r in again.facts["container_image_results"])


def test_one_image_changed_rebuilds_that_image_alone(
    manifests_context: tuple[Path, list[str]], base_image: str
) -> None:
    tmp, names = manifests_context
    assert build_manifests(tmp, base_image).rc == 0
    before = image_id(f"{names[1]}:edge")
    (tmp / "images" / "one" / "greeting.txt").write_text("one, again\n")
    run = build_manifests(tmp, base_image)
    assert run.rc == 0, run.raw[-3000:]
    built = {r["name"]: r["built"] for r in run.facts["container_image_results"]}
    assert built == {names[0]: True, names[1]: False}
    assert image_id(f"{names[1]}:edge") == before


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("name: Bad Name\n", "bad/image.yml: name must be an image repository without a tag"),
        ("name: shipyard-test/bad\ncolour: blue\n", "bad/image.yml: unknown key colour"),
        ("name: shipyard-test/bad\ntags: edge\n", "bad/image.yml: tags must be a list of strings"),
        ("- just\n- a list\n", "bad/image.yml must be a mapping"),
    ],
)
def test_a_malformed_manifest_fails_naming_its_file_and_key(
    base_image: str, tmp_path: Path, manifest: str, message: str
) -> None:
    (tmp_path / "images" / "bad").mkdir(parents=True)
    (tmp_path / "images" / "bad" / "image.yml").write_text(manifest)
    (tmp_path / "build.yml").write_text(MANIFESTS_PLAYBOOK)
    run = build_manifests(tmp_path, base_image)
    assert run.rc != 0
    assert run.changed == 0
    assert any(message in m for m in run.messages), run.messages


# The stage writes a token no second run of it could repeat; its sleep makes
# builds started together overlap in it.
SHARED_STAGE = """\
ARG BASE_IMAGE=debian:trixie-slim
FROM ${BASE_IMAGE} AS common
RUN sleep 3; od -An -N8 -tx8 /dev/urandom > /stage-token

FROM common
"""


def test_the_stage_every_image_begins_with_is_built_once(base_image: str, tmp_path: Path) -> None:
    context = tmp_path / "images"
    names = []
    for folder in ("one", "two", "three"):
        (context / folder).mkdir(parents=True)
        (context / folder / "Dockerfile").write_text(f"{SHARED_STAGE}LABEL folder={folder}\n")
        name = f"shipyard-test/stage-{folder}-{uuid.uuid4().hex[:6]}"
        (context / folder / "image.yml").write_text(f"name: {name}\ntags: [edge]\n")
        names.append(name)
    (tmp_path / "build.yml").write_text(MANIFESTS_PLAYBOOK)
    try:
        run = build_manifests(tmp_path, base_image, container_image_shared_stage="common")
        assert run.rc == 0, run.raw[-3000:]
        tokens = {docker("run", "--rm", f"{name}:edge", "cat", "/stage-token") for name in names}
        # The stage ran once and every image reuses its layer. Without the
        # stage built first, the parallel builds each run it: 2 or 3 tokens.
        assert len(tokens) == 1, tokens
    finally:
        for name in names:
            for tag in (
                "edge",
                "latest",
                (Path(__file__).parents[1] / "VERSION").read_text().strip(),
            ):
                docker("image", "rm", "--force", f"{name}:{tag}", check=False)
