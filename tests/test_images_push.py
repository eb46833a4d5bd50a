"""playbooks/images.yml pushes to a registry when asked, and refuses bad settings.

The registry is a real one: Debian's docker-registry (the distribution
project's server) in a container built from the base image.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import PlaybookRun, docker, free_port, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REGISTRY_DOCKERFILE = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends docker-registry apache2-utils \\
    && rm -rf /var/lib/apt/lists/*
COPY entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
"""
# Debian's configuration asks for htpasswd logins; the account comes at run time.
REGISTRY_ENTRYPOINT = """#!/bin/sh
set -e
htpasswd -Bbc /etc/docker/registry/htpasswd "$REGISTRY_USER" "$REGISTRY_PASSWORD"
exec /usr/bin/docker-registry serve /etc/docker/registry/config.yml
"""
USER = "ci"
PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def registry_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("registry")
    (context / "Dockerfile").write_text(REGISTRY_DOCKERFILE)
    entrypoint = context / "entrypoint.sh"
    entrypoint.write_text(REGISTRY_ENTRYPOINT)
    entrypoint.chmod(0o755)
    tag = "shipyard-test/registry:latest"
    docker("build", "--quiet", "--build-arg", f"BASE_IMAGE={base_image}", "-t", tag, str(context))
    return tag


@contextmanager
def running_registry(image: str, *run_args: str) -> Iterator[str]:
    """A registry container on a free port of 127.0.0.1; its address."""
    name, port = f"shipyard-test-registry-{uuid.uuid4().hex[:6]}", free_port()
    docker(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:5000",
        "-e",
        f"REGISTRY_USER={USER}",
        "-e",
        f"REGISTRY_PASSWORD={PASSWORD}",
        *run_args,
        image,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=5):
                    break
            except urllib.error.HTTPError:
                break  # it answers, asking for a login
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"registry not answering: {docker('logs', name)}")
                time.sleep(0.5)
        yield address
    finally:
        docker("rm", "-f", name)
        # The push tags the images with the registry's address; drop those tags.
        pushed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"{address}/*/*")
        if pushed.split():
            docker("image", "rm", *pushed.split())


@pytest.fixture(scope="module")
def registry(registry_image: str) -> Iterator[str]:
    with running_registry(registry_image) as address:
        yield address


@pytest.fixture(scope="module")
def read_only_registry(
    registry_image: str,
) -> Iterator[str]:
    """A registry that takes the login and refuses every push: it is in read-only mode.

    Its answer, 405, is final to Docker; a read-only volume would answer 500,
    which Docker retries with back-off for over a minute.
    """
    with running_registry(
        registry_image, "-e", "REGISTRY_STORAGE_MAINTENANCE_READONLY=enabled: true"
    ) as address:
        yield address


def push_with_fake_tests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, registry: str, tags: str, tests_rc: int
) -> tuple[PlaybookRun, list[str]]:
    """images.yml with images_push, logged in from the environment, with a
    stand-in for `molecule test --scenario-name X` that exits with tests_rc:
    the scenarios themselves run in `make molecule`; here only the gate in
    front of the push is under test. Returns the run and the scenarios asked for."""
    monkeypatch.setenv("SHIPYARD_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("SHIPYARD_REGISTRY_PASSWORD", PASSWORD)
    calls = tmp_path / "molecule-calls"
    script = tmp_path / "molecule"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit {tests_rc}\n')
    script.chmod(0o755)
    run = run_playbook(
        "playbooks/images.yml",
        {"images_push": True, "images_registry": registry, "images_test_command": [str(script)]},
        tags=tags,
    )
    return run, calls.read_text().splitlines() if calls.exists() else []


def registry_tags(registry: str, repository: str) -> list[str]:
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/tags/list")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - http://127.0.0.1
            return json.load(r)["tags"] or []
    except urllib.error.HTTPError as err:
        if err.code == 404:  # the registry has never seen the repository
            return []
        raise


def test_push_puts_every_tag_into_the_registry_after_the_image_tests(
    registry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run, scenarios = push_with_fake_tests(
        monkeypatch, tmp_path, f"{registry}/shipyard", tags="s3", tests_rc=0
    )
    assert run.rc == 0, run.raw[-3000:]
    assert PASSWORD not in run.raw
    assert scenarios == ["logging"]
    assert sorted(registry_tags(registry, "shipyard/s3")) == sorted(["latest", "0.1.0"])
    # The login was for the push only.
    config = Path.home() / ".docker" / "config.json"
    assert not config.exists() or registry not in config.read_text()


def test_failed_image_tests_push_nothing(
    registry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run, scenarios = push_with_fake_tests(
        monkeypatch, tmp_path, f"{registry}/failing", tags="postgresql", tests_rc=1
    )
    assert run.rc != 0
    assert scenarios == ["postgresql"]
    assert "Log in to the registry" not in run.raw
    assert registry_tags(registry, "failing/postgresql") == []


def test_push_without_settings_fails_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_REGISTRY_PASSWORD", raising=False)
    run = run_playbook("playbooks/images.yml", {"images_push": True}, tags="s3")
    assert run.rc != 0
    assert "images_push is true: set images_registry" in run.raw
    assert "Build the S3 image" not in run.raw and "s3_image" not in run.raw


def test_a_failed_push_still_logs_out(
    read_only_registry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = Path.home() / ".docker" / "config.json"
    run, _ = push_with_fake_tests(
        monkeypatch, tmp_path, f"{read_only_registry}/shipyard", tags="s3", tests_rc=0
    )
    assert run.rc != 0
    assert "Push every image under every tag" in run.raw
    assert PASSWORD not in run.raw
    # The login happened, the push failed, and the credentials are gone anyway.
    assert "Log out again" in run.raw
    assert not config.exists() or read_only_registry not in config.read_text()
