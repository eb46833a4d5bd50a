"""Adding an image is adding one folder: a Dockerfile and a manifest under images/.

A throw-away fifth image (the base image, tini and the project's supervisor
running one HTTP server) goes into images/<dir>/ with nothing else changed:
`make up` builds it and runs it next to the other four, which stay as they
were; `make down` removes it with them. The folder then goes, and a dev
environment that ran before the test is brought back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from helpers import ENVIRONMENT_LABEL, ROOT, docker, free_port, run_playbook

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LABEL = ENVIRONMENT_LABEL

# The fifth image's folder, with @DIR@, @IMAGE@ and @PORT@ to fill in
# (the manifest as image.yml.in: with them it is not yet YAML).
FIXTURE = ROOT / "tests" / "fixtures" / "add_image"


def fill(name: str, **values: object) -> str:
    text = (FIXTURE / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    return text


@dataclass
class Probe:
    dir: str
    image: str
    port: int

    @property
    def container(self) -> str:
        return f"shipyard-{self.dir}"


def make(*targets: str) -> str:
    proc = subprocess.run(
        ["make", "-C", str(ROOT), *targets], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"make {' '.join(targets)}:\n{proc.stdout[-4000:]}{proc.stderr}"
    return proc.stdout


def environment() -> dict[str, str]:
    """The dev environment's containers, name to id."""
    listed = docker("ps", "--all", "--filter", f"label={LABEL}", "--format", "{{json .}}")
    rows = [json.loads(line) for line in listed.splitlines()]
    return {row["Names"]: row["ID"] for row in rows}


@pytest.fixture(scope="module")
def probe(docker_engine: str) -> Iterator[Probe]:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    found = Probe(dir=name, image=f"shipyard-test/{name}", port=free_port())
    folder = ROOT / "images" / name
    folder.mkdir()
    ran_before = bool(environment())
    try:
        values = {"dir": name, "image": found.image, "port": found.port}
        for file in ("Dockerfile", "services.toml", "image.yml"):
            template = "image.yml.in" if file == "image.yml" else file
            (folder / file).write_text(fill(template, **values))
        yield found
    finally:
        shutil.rmtree(folder)
        docker("rm", "--force", found.container, check=False)
        version = (ROOT / "VERSION").read_text().strip()
        for tag in ("latest", version):
            docker("image", "rm", "--force", f"{found.image}:{tag}", check=False)
        if ran_before:
            make("up")


@dataclass
class Up:
    before: dict[str, str]
    after: dict[str, str]
    output: str


@pytest.fixture(scope="module")
def up(probe: Probe) -> Up:
    before = environment()
    output = make("up")
    return Up(before, environment(), output)


def test_make_up_builds_the_new_image(probe: Probe, up: Up) -> None:
    assert f"Image {probe.image}:latest" in up.output
    labels = json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Labels}}", probe.image)
    )
    assert len(labels["io.shipyard.input-hash"]) == 64


def test_make_up_runs_it_next_to_the_others(probe: Probe, up: Up) -> None:
    assert probe.container in up.after
    url = f"http://127.0.0.1:{probe.port}/services.toml"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert b'name = "web"' in resp.read()
    # The others are the containers that ran before, untouched.
    others = {name: cid for name, cid in up.after.items() if name != probe.container}
    if up.before:
        assert others == up.before
    else:
        assert len(others) == 4


@dataclass
class Down:
    stopped: list[str]  # the containers, in the order they stopped
    volumes: dict[str, bool]  # each volume the containers mounted: is it named


@pytest.fixture(scope="module")
def down(probe: Probe, up: Up) -> Down:
    inspected = docker("inspect", "--format", "{{json .Mounts}}", *up.after).splitlines()
    volumes = {
        m["Name"]: not re.fullmatch("[0-9a-f]{64}", m["Name"])
        for line in inspected
        for m in json.loads(line)
        if m["Type"] == "volume"
    }
    since = f"{time.time() - 1:.3f}"
    make("down")
    until = f"{time.time() + 1:.3f}"
    events = docker(
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "type=container",
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.name}}",
    )
    return Down(events.split(), volumes)


def test_make_down_stops_the_services_the_others_send_to_last(up: Up, down: Down) -> None:
    run = run_playbook("playbooks/describe.yml")
    assert run.rc == 0, run.raw[-3000:]
    containers = run.facts["dev_environment"]["containers"].values()
    last = {c["name"] for c in containers if c["stop_last"]}
    assert last, "no manifest says stop_last"
    assert set(down.stopped) == set(up.after), down.stopped
    first_of_last = min(down.stopped.index(name) for name in last)
    assert all(down.stopped.index(name) < first_of_last for name in set(up.after) - last), (
        down.stopped
    )


def test_make_down_removes_it(probe: Probe, up: Up, down: Down) -> None:
    assert environment() == {}
    assert not docker("ps", "--all", "--quiet", "--filter", f"name={probe.container}").strip()


def test_make_down_keeps_the_named_volumes_and_removes_the_anonymous_ones(down: Down) -> None:
    # An image's VOLUME without a name in the manifest (/var/log) gets an
    # anonymous volume, which no later container mounts again.
    assert any(down.volumes.values()) and not all(down.volumes.values()), down.volumes
    left = set(docker("volume", "ls", "--quiet").split())
    assert {name for name, named in down.volumes.items() if named} <= left
    assert not {name for name, named in down.volumes.items() if not named} & left
