"""Verify database provisioning against the real LAMP and PostgreSQL images.

- created users log in over TCP to their own databases and are refused on
  the others; the user declared absent can no longer log in;
- names with quotes, semicolons and spaces are created exactly as given;
- the ordering trap: `pip install --no-binary` of psycopg2 and mysqlclient
  into a virtualenv succeeds in the converged containers, where db_clients put
  the headers first, and the drivers built connect; in a fresh container of
  the same image with every build tool but the headers the same build fails
  with the missing-header error;
- bad input: an empty or missing password fails early naming the variable,
  and no password appears in `ansible-playbook -v` output.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from provisioning import (
    LAMP,
    ODD_DB,
    ODD_USER,
    PASSWORDS,
    PG,
    docker,
    maria_login,
    new_secret,
    pg_login,
    run_role,
)

INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
BUILD = "/opt/shipyard-driver-build"  # in the containers
# The drivers built from source, and the build backend pip needs for them.
DIST_FILES = {
    "psycopg2": "psycopg2-2.9.10.tar.gz",
    "mysqlclient": "mysqlclient-2.2.7.tar.gz",
    "setuptools": "setuptools-80.9.0-py3-none-any.whl",
}


ACCESS = [
    ("app", "app", True),
    (
        "app",
        ODD_DB,
        True,
    ),  # the owner of every PostgreSQL database here; granted nothing in MariaDB
    ("reader", "app", True),
    ("reader", ODD_DB, False),
    ("reader", "other", False),
    (ODD_USER, ODD_DB, True),
    (ODD_USER, "app", False),
    (ODD_USER, "other", False),
]


@pytest.mark.parametrize(("user", "db", "allowed"), ACCESS)
def test_postgresql_logins(user: str, db: str, allowed: bool) -> None:
    proc = pg_login(user, db)
    if allowed:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == user
    else:
        assert proc.returncode != 0
        assert "permission denied for database" in proc.stderr


@pytest.mark.parametrize(("user", "db", "allowed"), ACCESS)
def test_mariadb_logins(user: str, db: str, allowed: bool) -> None:
    if user == "app" and db == ODD_DB:
        allowed = False
    proc = maria_login(user, db)
    if allowed:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().startswith(user + "@")
    else:
        assert proc.returncode != 0
        assert "Access denied" in proc.stderr


def test_removed_user_cannot_log_in() -> None:
    proc = pg_login("gone", "other")
    assert proc.returncode != 0
    assert 'password authentication failed for user "gone"' in proc.stderr
    proc = maria_login("gone", "other")
    assert proc.returncode != 0
    assert "Access denied for user 'gone'" in proc.stderr


def test_names_created_exactly_as_given() -> None:
    proc = docker(
        "exec",
        "-u",
        "postgres",
        PG,
        "psql",
        "-X",
        "-h",
        "/run/postgresql",
        "-U",
        "shipyard",
        "-d",
        "postgres",
        "-Atc",
        "SELECT rolname FROM pg_roles WHERE rolname LIKE 'we%%' UNION ALL "
        "SELECT datname FROM pg_database WHERE datname LIKE 'app;%%'",
    )
    assert proc.stdout.split("\n")[:2] == [ODD_USER, ODD_DB], proc.stderr
    proc = docker(
        "exec",
        LAMP,
        "mariadb",
        "-Nse",
        "SELECT user FROM mysql.user WHERE user LIKE 'we%'; SHOW DATABASES LIKE 'app;%'",
    )
    assert proc.stdout.split("\n")[:2] == [ODD_USER, ODD_DB], proc.stderr


def fetch(project: str, filename: str, dest: Path) -> None:
    """Download one file from the package index, checked against its sha256."""
    assert INDEX.startswith(("https://", "http://")), f"PIP_INDEX_URL {INDEX!r} is not HTTP"
    with urllib.request.urlopen(f"{INDEX}/{project}/", timeout=120) as resp:  # noqa: S310
        page = resp.read().decode()
    match = re.search(rf'href="([^"]*/{re.escape(filename)})#sha256=([0-9a-f]{{64}})"', page)
    assert match, f"{filename} not on {INDEX}/{project}/"
    url = urllib.parse.urljoin(f"{INDEX}/{project}/", html.unescape(match.group(1)))
    assert url.startswith(("https://", "http://")), url
    with urllib.request.urlopen(url, timeout=300) as resp:  # noqa: S310
        data = resp.read()
    assert hashlib.sha256(data).hexdigest() == match.group(2), f"{filename}: sha256 mismatch"
    (dest / filename).write_bytes(data)


@pytest.fixture(scope="module")
def driver_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The drivers' source archives, fetched on the host: containers reach only Debian's archive."""
    dest = tmp_path_factory.mktemp("dist")
    for project, filename in DIST_FILES.items():
        fetch(project, filename, dest)
    return dest


def source_build(container: str, driver: str, dist: Path) -> subprocess.CompletedProcess:
    """`pip install --no-binary` of a driver into a fresh virtualenv in the container."""
    docker("exec", container, "rm", "-rf", BUILD)
    docker("exec", container, "mkdir", "-p", BUILD)
    proc = docker("cp", str(dist), f"{container}:{BUILD}/dist")
    assert proc.returncode == 0, proc.stderr
    return docker(
        "exec",
        container,
        "sh",
        "-c",
        f"python3 -m venv {BUILD}/venv && {BUILD}/venv/bin/pip install --no-index"
        f" --find-links {BUILD}/dist --no-binary {driver} --no-cache-dir {driver}",
        timeout=900,
    )


@pytest.fixture(scope="module")
def bare_containers() -> Iterator[dict[str, str]]:
    """Fresh containers of both images with every build tool but the client headers."""
    names = {}
    for image in ("shipyard/postgresql:17", "shipyard/lamp:latest"):
        name = f"shipyard-test-bare-{uuid.uuid4().hex[:8]}"
        proc = docker("run", "-d", "--name", name, "--entrypoint", "sleep", image, "1200")
        assert proc.returncode == 0, proc.stderr
        names[image] = name
    try:
        for name in names.values():
            proc = docker(
                "exec",
                name,
                "sh",
                "-c",
                "apt-get update -qq && apt-get install -qq -y --no-install-recommends"
                " gcc libc6-dev python3-dev python3-venv",
                timeout=900,
            )
            assert proc.returncode == 0, proc.stderr
        yield names
    finally:
        for name in names.values():
            docker("rm", "-f", name)


def test_psycopg2_source_build_succeeds_after_the_role(driver_dist: Path) -> None:
    proc = source_build(PG, "psycopg2", driver_dist)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The driver just built talks to the server as a provisioned user.
    proc = docker(
        "exec",
        PG,
        f"{BUILD}/venv/bin/python",
        "-c",
        "import psycopg2; c = psycopg2.connect(host='127.0.0.1', dbname='app', user='app',"
        f" password={PASSWORDS['app']!r}); k = c.cursor(); k.execute('SELECT current_user');"
        " print(k.fetchone()[0], psycopg2.__file__)",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"app {BUILD}/venv/"), proc.stdout


def test_psycopg2_source_build_fails_without_the_role(
    bare_containers: dict[str, str], driver_dist: Path
) -> None:
    proc = source_build(bare_containers["shipyard/postgresql:17"], "psycopg2", driver_dist)
    assert proc.returncode != 0
    assert "libpq-fe.h: No such file or directory" in proc.stdout + proc.stderr


def test_mysqlclient_source_build_succeeds_after_the_role(driver_dist: Path) -> None:
    proc = source_build(LAMP, "mysqlclient", driver_dist)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = docker(
        "exec",
        LAMP,
        f"{BUILD}/venv/bin/python",
        "-c",
        "import MySQLdb; c = MySQLdb.connect(host='127.0.0.1', database='app', user='app',"
        f" password={PASSWORDS['app']!r}); k = c.cursor(); k.execute('SELECT current_user()');"
        " print(k.fetchone()[0], MySQLdb.__file__)",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"app@% {BUILD}/venv/"), proc.stdout


def test_mysqlclient_source_build_fails_without_the_role(
    bare_containers: dict[str, str], driver_dist: Path
) -> None:
    proc = source_build(bare_containers["shipyard/lamp:latest"], "mysqlclient", driver_dist)
    assert proc.returncode != 0
    assert "Can not find valid pkg-config name" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("container", "role", "prefix"),
    [
        (PG, "postgresql_provision", "postgresql_provision"),
        (LAMP, "mariadb_provision", "mariadb_provision"),
    ],
)
@pytest.mark.parametrize("password", ["", None])
def test_empty_or_missing_password_fails_naming_the_variable(
    container: str, role: str, prefix: str, password: str | None
) -> None:
    user: dict[str, object] = {"name": "nopass", "db": "app"}
    if password is not None:
        user["password"] = password
    login = "shipyard" if container == PG else "root"
    proc = run_role(container, role, {f"{prefix}_users": [user], f"{prefix}_login_user": login})
    assert proc.returncode != 0
    assert f"{prefix}_users[0].password is empty or missing" in proc.stdout
    assert "Check psycopg2" not in proc.stdout and "Check pymysql" not in proc.stdout


@pytest.mark.parametrize(
    ("container", "role", "prefix"),
    [
        (PG, "postgresql_provision", "postgresql_provision"),
        (LAMP, "mariadb_provision", "mariadb_provision"),
    ],
)
def test_no_secret_in_verbose_output(container: str, role: str, prefix: str) -> None:
    """A user created, one failing on a missing database, then both removed."""
    secret = new_secret(f"verbose-{prefix}")
    login = {f"{prefix}_login_user": "shipyard" if container == PG else "root"}
    users = [
        {"name": "verbose", "password": secret, "db": "app"},
        {"name": "verbose2", "password": secret, "db": "no such db"},
    ]
    proc = run_role(container, role, {f"{prefix}_users": users, **login})
    assert proc.returncode != 0
    assert "no such db" in proc.stdout or "does not exist" in proc.stdout
    assert secret not in proc.stdout + proc.stderr
    cleanup = [{"name": "verbose", "state": "absent"}, {"name": "verbose2", "state": "absent"}]
    proc = run_role(container, role, {f"{prefix}_users": cleanup, **login})
    assert proc.returncode == 0, proc.stdout
    assert secret not in proc.stdout + proc.stderr


def test_missing_driver_is_reported_before_any_database_task(
    bare_containers: dict[str, str],
) -> None:
    bare_pg = bare_containers["shipyard/postgresql:17"]  # has psycopg2, not PyMySQL
    proc = run_role(bare_pg, "mariadb_provision", {"mariadb_provision_users": []})
    assert proc.returncode != 0
    assert "python3-pymysql (Python module pymysql) cannot be imported by /usr/bin/python3" in (
        proc.stdout
    )
    assert "Create users and databases" not in proc.stdout
    proc = run_role(
        bare_pg, "db_clients", {"db_clients_engines": ["mariadb"], "db_clients_install": False}
    )
    assert proc.returncode != 0
    assert "python3-pymysql, mariadb-client (db_clients_install is false" in proc.stdout
