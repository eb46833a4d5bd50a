"""The secret scan: no secret in anything the stack wrote. Run last by `make test`.

It needs the dev environment `make up` started, and reads what every run
before it kept in .shipyard/logs (ansible.cfg and the Makefile point every
ansible-playbook and molecule run there: the output, and every task result in
full). Then, with both servers' statement logs on (PostgreSQL log_statement =
all, the MariaDB general log), it provisions users with secrets of its own
through playbooks/databases.yml:
- users created;
- reserved names (pg_*; root), refused before any database task;
- a CREATE ROLE that fails in the server (a lock timeout) and a CREATE USER
  the server refuses (strict password validation);
waits until a marker logged after them has been shipped to S3, and greps for
every secret (the environment's, in the secrets directory its fact
dev_environment names, and its own) and for
each user's SCRAM verifier and mysql_native_password hash:
- Ansible's log and results, and the output of its own runs;
- `docker logs`, `docker inspect` and `docker history` of every container
  and image;
- every file under /var/log of every container (the server logs, the
  collector's slices in its volume);
- every object in S3;
- /proc/*/environ of every process in every running container.
A hit fails the test, which prints where each was found (never the secret).

The file is not named test_*.py: a plain `pytest` run does not collect it, as
it must run after everything else.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import secret_scan
from helpers import ROOT, PlaybookRun, docker, run_playbook

pytestmark = pytest.mark.docker

LOGS = ROOT / ".shipyard" / "logs"  # where the Makefile sends every run's output
SHIPPED_WITHIN = (
    300  # seconds: slices close and upload within about a minute in the dev environment
)


@dataclass(frozen=True)
class Env:
    """The running dev environment, as its fact dev_environment describes it."""

    postgresql: str  # container names
    lamp: str
    s3: str
    superuser: str  # the PostgreSQL container's superuser
    s3_url: str  # S3 as this machine reaches it
    secrets_dir: Path
    s3_keys: tuple[Path, Path]  # access key id, secret access key

    def s3_objects(self) -> secret_scan.Source:
        key_id, secret_key = (p.read_text().strip() for p in self.s3_keys)
        return secret_scan.s3_objects(self.s3_url, key_id, secret_key)


def running() -> Env:
    """The environment playbooks/describe.yml describes, which must be running."""
    run = run_playbook("playbooks/describe.yml")
    fact = run.facts.get("dev_environment")
    if run.rc != 0 or not isinstance(fact, dict):
        pytest.fail(f"playbooks/describe.yml published no dev_environment:\n{run.raw[-3000:]}")
    containers = fact["containers"]
    label = f"label=io.shipyard.environment={fact['label']}"
    up = docker("ps", "--filter", label, "--format", "{{.Names}}").split()
    missing = sorted(k for k in ("postgresql", "lamp", "s3") if containers[k]["name"] not in up)
    if missing:
        pytest.fail(
            f"the dev environment is not running (no {', '.join(missing)}): run `make up` first"
        )
    secrets = fact["secrets"]
    return Env(
        postgresql=containers["postgresql"]["name"],
        lamp=containers["lamp"]["name"],
        s3=containers["s3"]["name"],
        superuser=containers["postgresql"]["env"]["POSTGRES_USER"],
        s3_url=containers["s3"]["ports"]["s3"]["url"].rstrip("/"),
        secrets_dir=Path(fact["secrets_dir"]),
        s3_keys=(Path(secrets["s3-access-key-id"]), Path(secrets["s3-secret-access-key"])),
    )


def psql(env: Env, sql: str) -> str:
    login = ["-h", "/run/postgresql", "-U", env.superuser, "-d", "postgres"]
    return docker("exec", "-u", "postgres", env.postgresql, "psql", "-X", "-qAt", *login, "-c", sql)


def mariadb(container: str, sql: str) -> str:
    return docker("exec", container, "mariadb", "--protocol=socket", "-Nse", sql)


@pytest.fixture(scope="module")
def env() -> Env:
    return running()


@pytest.fixture(scope="module")
def statement_logs(env: Env) -> Iterator[None]:
    """Both servers log every statement while the scan's runs provision."""
    psql(env, "ALTER SYSTEM SET log_statement = 'all'")
    psql(env, "SELECT pg_reload_conf()")
    mariadb(env.lamp, "SET GLOBAL general_log_file = '/var/log/mysql/general.log'")
    mariadb(env.lamp, "SET GLOBAL general_log = ON")
    try:
        yield
    finally:
        psql(env, "ALTER SYSTEM RESET log_statement")
        psql(env, "SELECT pg_reload_conf()")
        mariadb(env.lamp, "SET GLOBAL general_log = OFF")


def provision(
    pg_users: list[dict], maria_users: list[dict], extra: dict[str, object] | None = None
) -> PlaybookRun:
    """playbooks/databases.yml with these users (and no databases) for both engines."""
    return run_playbook(
        "playbooks/databases.yml",
        {
            "postgresql_provision_users": pg_users,
            "postgresql_provision_databases": [],
            "mariadb_provision_users": maria_users,
            "mariadb_provision_databases": [],
            **(extra or {}),
        },
    )


class Runs:
    """The scan's own secrets and the output of its runs."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.outputs: list[tuple[str, str]] = []
        self.verifiers: dict[str, str] = {}

    def secret(self, label: str) -> str:
        self.secrets[label] = f"scan-{label}-{uuid.uuid4().hex}"
        return self.secrets[label]

    def run(
        self, what: str, pg_users: list[dict], maria_users: list[dict], extra: dict | None = None
    ) -> PlaybookRun:
        run = provision(pg_users, maria_users, extra)
        self.outputs.append((what, run.raw))
        return run


@pytest.fixture(scope="module")
def runs(env: Env, statement_logs: None) -> Iterator[Runs]:
    """Every provisioning path, succeeding and failing, with the statement logs on."""
    r = Runs()
    try:
        created = r.secret("created")
        run = r.run(
            "create",
            [{"name": "scan_pg", "password": created}],
            [{"name": "scan_maria", "password": created}],
        )
        assert run.rc == 0, run.raw[-3000:]
        assert "created role scan_pg" in run.raw and "created user 'scan_maria'" in run.raw
        r.verifiers["scan_pg"] = psql(
            env, "SELECT rolpassword FROM pg_authid WHERE rolname = 'scan_pg'"
        ).strip()

        # One engine per failing run: a play whose every host failed ends the playbook.
        reserved = r.secret("reserved")
        run = r.run("reserved (PostgreSQL)", [{"name": "pg_scan", "password": reserved}], [])
        assert run.rc != 0
        assert (
            'postgresql_provision_users[0].name \\"pg_scan\\": role names starting with pg_'
            in run.raw
        )
        run = r.run("reserved (MariaDB)", [], [{"name": "root", "password": reserved}])
        assert run.rc != 0
        assert 'mariadb_provision_users[0].name \\"root\\" is reserved' in run.raw, run.raw[-3000:]

        refused = r.secret("refused")
        with pg_authid_locked(env):
            run = r.run("refused (PostgreSQL)", [{"name": "scan_lock", "password": refused}], [])
        assert run.rc != 0
        assert "role scan_lock: canceling statement due to lock timeout" in run.raw, run.raw[-3000:]
        with strict_password_validation(env.lamp):
            run = r.run("refused (MariaDB)", [], [{"name": "scan_strict", "password": refused}])
        assert run.rc != 0
        assert "user 'scan_strict'@'%': The MariaDB server is running with the" in run.raw, run.raw[
            -3000:
        ]
        yield r
    finally:
        gone = [{"name": n, "state": "absent"} for n in ("scan_pg", "scan_lock")]
        provision(gone, [{"name": n, "state": "absent"} for n in ("scan_maria", "scan_strict")])


class pg_authid_locked:  # noqa: N801 (a context manager used like a function)
    """Another session holds pg_authid, and the provisioning login waits 2 s at most."""

    def __init__(self, env: Env) -> None:
        self.env = env

    def __enter__(self) -> None:
        psql(self.env, f"ALTER ROLE {self.env.superuser} SET lock_timeout = '2s'")
        hold = "BEGIN; LOCK TABLE pg_authid IN EXCLUSIVE MODE; SELECT pg_sleep(300)"
        login = ["-h", "/run/postgresql", "-U", self.env.superuser, "-d", "postgres"]
        pg = self.env.postgresql
        self.holder = subprocess.Popen(
            ["docker", "exec", "-u", "postgres", pg, "psql", "-X", *login, "-c", hold],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        sql = "SELECT mode FROM pg_locks WHERE relation = 'pg_authid'::regclass AND granted"
        while "ExclusiveLock" not in psql(self.env, sql):
            assert time.monotonic() < deadline, "the lock on pg_authid was never granted"
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        psql(
            self.env,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE '%pg_sleep(300)%' AND pid <> pg_backend_pid()",
        )
        self.holder.wait(timeout=30)
        psql(self.env, f"ALTER ROLE {self.env.superuser} RESET lock_timeout")


class strict_password_validation:  # noqa: N801
    """A password validation plugin: with strict_password_validation the server refuses hashes."""

    def __init__(self, container: str) -> None:
        self.container = container

    def __enter__(self) -> None:
        mariadb(self.container, "INSTALL SONAME 'simple_password_check'")

    def __exit__(self, *exc: object) -> None:
        mariadb(self.container, "UNINSTALL SONAME 'simple_password_check'")


def wait_shipped(env: Env, marker: str) -> None:
    """Until a line the PostgreSQL server logged after the runs is in an S3 object."""
    deadline = time.monotonic() + SHIPPED_WITHIN
    source = env.s3_objects()
    needle = [secret_scan.Needle("marker", marker.encode())]
    while not any(any(secret_scan.find(needle, where, data)) for where, data in source()):
        assert time.monotonic() < deadline, (
            f"the marker logged after the runs never reached S3 in {SHIPPED_WITHIN} s"
        )
        time.sleep(5)


def test_nothing_the_stack_wrote_holds_a_secret(env: Env, runs: Runs) -> None:
    marker = f"scan-marker-{uuid.uuid4().hex}"
    psql(env, f"SELECT '{marker}'")  # logged: log_statement is still all here
    wait_shipped(env, marker)

    scan = secret_scan.Scan()
    # Every file there: the generated secrets, and the log shipping keys beside them.
    environment = sorted(env.secrets_dir.iterdir()) if env.secrets_dir.is_dir() else []
    assert environment, f"no secrets in {env.secrets_dir}: run `make up` first"
    for f in environment:
        value = f.read_text().strip()
        scan.secret(f"the environment's {f.name}", value)
        scan.native_hash(f"the environment's {f.name}", value)
    for label, value in runs.secrets.items():
        scan.secret(f"the scan's {label}", value)
        scan.native_hash(f"the scan's {label}", value)
    app = psql(env, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").strip()
    for user, verifier in {**runs.verifiers, "app": app}.items():
        scan.scram_verifier(f"the verifier of {user}", verifier)

    scan.add("ansible logs", secret_scan.files(LOGS / "ansible.log"))
    scan.add("ansible logs", secret_scan.results_log(LOGS / "results.jsonl"))
    for what, output in runs.outputs:
        scan.add("scan runs", secret_scan.text(f"output of the scan's {what} run", output))
    containers = docker("ps", "--all", "--format", "{{.Names}}").split()
    images = sorted(set(docker("images", "--quiet", "--no-trunc").split()))
    scan.add("docker logs", secret_scan.docker_logs(*containers))
    scan.add("docker inspect", secret_scan.docker_inspect(*containers, *images))
    scan.add("docker history", secret_scan.docker_history(*images))
    for c in containers:
        scan.add("container /var/log", secret_scan.container_files(c, "/var/log"))
    scan.add("s3", env.s3_objects())
    for c in docker("ps", "--format", "{{.Names}}").split():
        scan.add("environ", secret_scan.container_environ(c))
    hits = scan.run()
    (LOGS / "scan-report.json").write_text(
        json.dumps({"hits": [h.__dict__ for h in hits], "read": scan.read}, indent=1)
    )
    assert not hits, secret_scan.report(hits, scan.read)
    for label in (
        "ansible logs",
        "scan runs",
        "docker logs",
        "docker inspect",
        "container /var/log",
        "s3",
        "environ",
    ):
        assert scan.read.get(label, 0) > 0, f"nothing read from {label}: " + secret_scan.report(
            hits, scan.read
        )
