"""dev_environment: its fact, its checks, secrets as files, readiness from the supervisor.

The running environment is the one `make up` brought up; the checks of bad
input run site.yml, which must stop before anything changes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import (
    ENVIRONMENT_LABEL,
    ROOT,
    docker,
    docker_proc,
    environment_state,
    inspect,
    run_playbook,
    wait_exited,
)

# What a port published on every address reports; nothing binds to it here.
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104

pytestmark = pytest.mark.docker

LABEL = ENVIRONMENT_LABEL
WAIT_READY = ROOT / "roles" / "dev_environment" / "files" / "wait-ready.sh"


def described(extra_vars: dict[str, object] | None = None) -> dict:
    run = run_playbook("playbooks/describe.yml", extra_vars)
    assert run.rc == 0, run.raw[-3000:]
    return run.facts["dev_environment"]


def environment_containers() -> list[str]:
    listed = docker("ps", "--filter", f"label={LABEL}", "--format", "{{.Names}}").split()
    assert listed, "the dev environment is not running: make up first"
    return listed


def test_the_fact_names_every_container_port_secret_and_the_bucket() -> None:
    fact = described()
    assert set(fact["containers"]) == {"lamp", "postgresql", "log-collector", "s3"}
    lamp = fact["containers"]["lamp"]
    assert lamp["name"] == "shipyard-lamp"
    assert lamp["ports"]["http"] == {
        "container": 80,
        "host": 8080,
        "address": "127.0.0.1",
        "protocols": ["tcp"],
        "url": "http://127.0.0.1:8080/",
        "internal_url": "http://lamp:80",
    }
    assert fact["containers"]["s3"]["ports"]["s3"]["internal_url"] == "http://s3:5000"
    assert fact["secrets"]["app-mariadb"] == f"{fact['secrets_dir']}/app-mariadb"
    assert fact["bucket"] == "shipyard-logs"


def test_a_port_gets_its_own_address_and_the_others_keep_the_default() -> None:
    override = {"lamp": {"ports": {"http": {"address": EVERY_ADDRESS, "host": 18080}}}}
    fact = described({"dev_environment_containers": override})
    ports = {
        f"{service}.{name}": (port["address"], port["host"])
        for service, container in fact["containers"].items()
        for name, port in container["ports"].items()
    }
    assert ports.pop("lamp.http") == (EVERY_ADDRESS, 18080)
    assert {address for address, _ in ports.values()} == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {
                "dev_environment_secret_names": [
                    "mariadb-root",
                    "postgresql-superuser",
                    "../../escape",
                ]
            },
            'dev_environment_secret_names: "../../escape" is not a plain file name',
        ),
        (
            {"dev_environment_secret_names": ["postgresql-superuser"]},
            "dev_environment_secret_names lacks mariadb-root, which images/lamp/image.yml gives its"
            " container as MARIADB_ROOT_PASSWORD_FILE",
        ),
        (
            {"dev_environment_containers": {"lamp": {"ports": {"http": {"host": "eighty"}}}}},
            'dev_environment_containers.lamp.ports.http.host must be a port number; got "eighty"',
        ),
        (
            {"dev_environment_containers": {"lamp": {"ports": {"htp": {"host": 1}}}}},
            "dev_environment_containers.lamp.ports.htp: the image publishes no such port",
        ),
        (
            {"dev_environment_containers": {"lampp": {}}},
            "dev_environment_containers.lampp: no image manifest runs a container of that name",
        ),
        (
            {"dev_environment_containers": {"s3": {"ports": {"s3": {"host": 8080}}}}},
            "the same host port: 127.0.0.1:8080/tcp (lamp.http, s3.s3)",
        ),
    ],
)
def test_bad_names_secrets_and_overrides_fail_before_any_change(
    docker_engine: str, extra_vars: dict[str, object], message: str
) -> None:
    before = environment_state()
    run = run_playbook("site.yml", extra_vars)
    assert run.rc != 0
    # Said in the clear, not hidden behind no_log.
    assert any(message in m for m in run.messages), run.messages
    assert "Prepare the Docker host" not in run.raw
    assert not (ROOT / ".shipyard" / "escape").exists()
    assert environment_state() == before


def test_no_container_holds_a_secret_in_its_environment() -> None:
    fact = described()
    values = {name: Path(path).read_text().strip() for name, path in fact["secrets"].items()}
    for name in environment_containers():
        found = inspect(name)
        seen = json.dumps(found["Config"]["Env"]) + json.dumps(found["Config"].get("Labels"))
        # What every `docker exec` inherits, and what PID 1 started with.
        seen += docker("exec", name, "env") + docker("exec", name, "cat", "/proc/1/environ")
        for secret, value in values.items():
            assert value not in seen, f"{secret} is in the environment of {name}"


@pytest.mark.parametrize(
    ("service", "variable", "secret", "owner"),
    [
        ("postgresql", "POSTGRES_PASSWORD_FILE", "postgresql-superuser", "postgres"),
        ("lamp", "MARIADB_ROOT_PASSWORD_FILE", "mariadb-root", "root"),
    ],
)
def test_secrets_reach_the_containers_as_files_for_their_reader_alone(
    service: str, variable: str, secret: str, owner: str
) -> None:
    fact = described()
    name = fact["containers"][service]["name"]
    path = f"/run/secrets/{secret}"
    assert f"{variable}={path}" in inspect(name)["Config"]["Env"]
    mode, user = docker("exec", name, "stat", "--format", "%a %U", path).split()
    assert (mode, user) == ("400", owner)
    value = Path(fact["secrets"][secret]).read_text().strip()
    assert docker("exec", "--user", owner, name, "cat", path).strip() == value
    refused = docker_proc("exec", "--user", "nobody", name, "cat", path, check=False)
    assert refused.returncode != 0


def test_published_ports_stay_on_the_loopback_address() -> None:
    for name in environment_containers():
        bindings = inspect(name)["HostConfig"]["PortBindings"] or {}
        addresses = {b["HostIp"] for published in bindings.values() for b in published}
        assert addresses <= {"127.0.0.1"}, (name, bindings)


def wait_ready(timeout: int, *containers: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(WAIT_READY), str(timeout), *containers],
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        check=False,
    )


def test_the_wait_asks_the_supervisors(docker_engine: str) -> None:
    """Ready when every supervisor says so; a stopped container fails at once, named."""
    s3 = docker("run", "--detach", "shipyard/s3:latest").strip()
    stopped = docker("run", "--detach", "--entrypoint", "true", "shipyard/s3:latest").strip()
    try:
        ready = wait_ready(120, s3)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert docker("exec", s3, "shipyard-init", "status").strip() == "ready"
        wait_exited(stopped)
        failed = wait_ready(120, s3, stopped)
        assert failed.returncode == 1
        assert f"{stopped}: the container is exited" in failed.stdout
    finally:
        docker("rm", "--force", s3, stopped, check=False)


def logs_in(container: str, command: list[str], variable: str, password: str) -> bool:
    """Whether a TCP login inside the container succeeds with this password."""
    proc = docker_proc("exec", "--env", f"{variable}={password}", container, *command, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "1"


def test_a_fresh_checkout_takes_over_the_environment_an_earlier_one_left() -> None:
    """A new clone at this path, with the engine holding (and restarting) the old containers.

    The new checkout has no secrets, mounts or stage records; the engine's
    containers mount the old secret files and their volumes hold the old
    passwords. `make up` must create the containers again with the new
    secrets and make every listed password the new one, and a run after it
    changes nothing.
    """
    fact = described()
    state = Path(fact["host_dir"])
    for part in ("secrets", "mounts", "stages"):
        subprocess.run(["rm", "-rf", str(state / part)], check=True)
    # As the engine does at boot with restart policy unless-stopped.
    containers = environment_containers()
    docker_proc("restart", "--time", "5", *containers, check=False)

    taken_over = run_playbook("site.yml", timeout=1200)
    assert taken_over.rc == 0, taken_over.raw[-4000:]
    secrets = fact["secrets"]
    pg = fact["containers"]["postgresql"]["name"]
    lamp = fact["containers"]["lamp"]["name"]
    superuser = fact["containers"]["postgresql"]["env"]["POSTGRES_USER"]
    psql = [
        "psql",
        "--host=127.0.0.1",
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "--command=SELECT 1",
    ]
    mariadb = [
        "mariadb",
        "--host=127.0.0.1",
        "--batch",
        "--skip-column-names",
        "--execute=SELECT 1",
    ]
    logins = {
        "postgresql-superuser": logs_in(
            pg,
            [*psql, f"--username={superuser}", "--dbname=postgres"],
            "PGPASSWORD",
            Path(secrets["postgresql-superuser"]).read_text().strip(),
        ),
        "app-postgresql": logs_in(
            pg,
            [*psql, "--username=app", "--dbname=app"],
            "PGPASSWORD",
            Path(secrets["app-postgresql"]).read_text().strip(),
        ),
        "app-mariadb": logs_in(
            lamp,
            [*mariadb, "--user=app", "app"],
            "MYSQL_PWD",
            Path(secrets["app-mariadb"]).read_text().strip(),
        ),
    }
    assert all(logins.values()), logins

    again = run_playbook("site.yml", timeout=900)
    assert again.rc == 0, again.raw[-4000:]
    assert again.changed == 0, again.raw[-4000:]
