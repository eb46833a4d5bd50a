"""No provisioning path gives a secret away, failing ones included.

Both servers log every statement (prepare.yml: PostgreSQL log_statement =
all, the MariaDB general log). Each test runs the roles for real and checks
what they printed and what the server logged while they ran:
- reserved names (pg_*, public, none; root, mariadb.sys, PUBLIC) are refused
  before any database task, naming the variable and the rule;
- a CREATE ROLE or a password-changing ALTER ROLE that fails in the server
  (a lock timeout), and a reserved name the server itself refuses (the
  role's roles phase run past its own check), are reported with the role and
  the reason, and neither the password nor its SCRAM verifier reaches the
  output or the server log; a login that may not turn the
  statement logs off is refused before it sends any verifier, and one granted
  those settings provisions without logging one;
- statement logging on: no password, verifier or mysql_native_password hash
  in the server logs of successful runs either;
- update_password: always changes only what differs (changed=0 when equal);
- MariaDB quoting holds under NO_BACKSLASH_ESCAPES and ANSI_QUOTES;
- a MariaDB that refuses password hashes (strict password validation) is
  reported with the account and the reason, and no secret leaks.
The last test greps everything the scenario wrote for every secret it used.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import secret_scan
from password_forms import scram
from provisioning import (
    GENERATED,
    LAMP,
    LOGS,
    PASSWORDS,
    PG,
    RUNS,
    SECRETS,
    changed,
    docker,
    maria_login,
    mariadb,
    mariadb_general_log,
    new_secret,
    pg_login,
    postgresql_log,
    psql,
    run_role,
)

PG_LOGIN = {"postgresql_provision_login_user": "shipyard"}
VERIFIER = "SCRAM-SHA-256$"  # how every stored verifier starts
# The first line of files/quiet.sql: logged, as statement logging is on, and
# the last statement of the role's transaction the server logs.
QUIET = "keep the rest of this transaction out of the"


def no_secret(secret: str, *places: str) -> None:
    for place in places:
        assert secret not in place


@pytest.mark.parametrize(
    ("container", "role", "prefix", "names", "rule"),
    [
        (
            PG,
            "postgresql_provision",
            "postgresql_provision",
            ["pg_app", "public", "none"],
            'postgresql_provision_users[0].name "pg_app": role names starting with pg_',
        ),
        (
            LAMP,
            "mariadb_provision",
            "mariadb_provision",
            ["root", "mariadb.sys", "PUBLIC"],
            'mariadb_provision_users[0].name "root" is reserved',
        ),
    ],
)
def test_reserved_names_are_refused_before_any_database_task(
    container: str, role: str, prefix: str, names: list[str], rule: str
) -> None:
    secret = new_secret(f"reserved-{prefix}")
    server = postgresql_log() if container == PG else mariadb_general_log()
    users = [{"name": n, "password": secret} for n in names]
    proc = run_role(
        container, role, {f"{prefix}_users": users, **(PG_LOGIN if container == PG else {})}
    )
    assert proc.returncode != 0
    assert rule in proc.stdout, proc.stdout[-3000:]
    for i in range(1, len(names)):
        assert f"{prefix}_users[{i}].name" in proc.stdout
    # Refused by the role's first task: no database task ran.
    assert "Check psycopg2" not in proc.stdout and "Check pymysql" not in proc.stdout
    no_secret(secret, proc.stdout + proc.stderr, server.new())
    if container == LAMP:
        assert (
            mariadb(
                "SELECT COUNT(*) FROM mysql.user WHERE User = 'root' AND Host = '%'"
            ).stdout.strip()
            == "0"
        )


def test_postgresql_login_that_cannot_quiet_the_logs_is_refused_before_any_verifier() -> None:
    """A login that may not turn log_statement off for its session sends nothing secret."""
    secret = new_secret("unquiet-postgresql")
    server = postgresql_log()
    proc = run_role(
        PG,
        "postgresql_provision",
        {
            "postgresql_provision_login_user": "app",
            "postgresql_provision_users": [{"name": "newbie", "password": secret}],
        },
    )
    assert proc.returncode != 0
    assert "the login role app may not turn the statement logs off" in proc.stdout, proc.stdout[
        -3000:
    ]
    logged = server.new()
    no_secret(secret, proc.stdout + proc.stderr, logged)
    assert VERIFIER not in logged
    assert psql("SELECT count(*) FROM pg_roles WHERE rolname = 'newbie'").stdout.strip() == "0"


def test_postgresql_createrole_login_granted_the_log_settings_provisions_quietly() -> None:
    """PostgreSQL 15+: GRANT SET ON PARAMETER lets a non-superuser keep the logs quiet."""
    settings = ", ".join(
        f"log_{s}"
        for s in (
            "statement",
            "min_duration_statement",
            "min_duration_sample",
            "min_error_statement",
        )
    )
    for sql in (
        "CREATE ROLE creator LOGIN CREATEROLE",
        f"GRANT SET ON PARAMETER {settings} TO creator",
    ):
        assert psql(sql).returncode == 0
    secret = new_secret("creator-postgresql")
    server = postgresql_log()
    proc = run_role(
        PG,
        "postgresql_provision",
        {
            "postgresql_provision_login_user": "creator",
            "postgresql_provision_users": [{"name": "created", "password": secret}],
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert pg_login("created", "postgres", secret).returncode == 0
    logged = server.new()
    assert QUIET in logged and "shipyard_apply" not in logged
    no_secret(secret, proc.stdout + proc.stderr, logged)
    assert VERIFIER not in logged


PARITY = [
    "plain ascii",
    "I\u00adX",
    "\u2168 nine",
    "caf\u00e9 \u00a0space",
    "\u00e9\u0007bell",
    "\u05d0\u05d1",
]


def test_verifiers_are_the_ones_the_server_computes() -> None:
    """The server's own verifiers of test passwords, recomputed here from their salts."""
    for i, password in enumerate(PARITY):
        literal = password.replace("'", "''")
        assert psql(f"CREATE ROLE parity{i} PASSWORD '{literal}'").returncode == 0
        stored = psql(
            f"SELECT rolpassword FROM pg_authid WHERE rolname = 'parity{i}'"  # noqa: S608
        ).stdout.strip()
        psql(f"DROP ROLE parity{i}")
        assert scram.scram_sha_256(password, stored) == stored, repr(password)


@contextmanager
def pg_authid_locked() -> Iterator[None]:
    """Another session holds pg_authid, and the role's login waits for it 2 s at most.

    EXCLUSIVE mode lets the role read pg_authid (its read phase) but blocks
    the CREATE ROLE or ALTER ROLE that would set a password, so the server
    cancels that statement inside the role's function.
    """
    assert psql("ALTER ROLE shipyard SET lock_timeout = '2s'").returncode == 0
    hold = "BEGIN; LOCK TABLE pg_authid IN EXCLUSIVE MODE; SELECT pg_sleep(120)"
    login = ["-h", "/run/postgresql", "-U", "shipyard", "-d", "postgres"]
    holder = subprocess.Popen(
        ["docker", "exec", "-u", "postgres", PG, "psql", "-X", *login, "-c", hold],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            "ExclusiveLock"
            not in psql(
                "SELECT mode FROM pg_locks WHERE relation = 'pg_authid'::regclass AND granted"
            ).stdout
        ):
            assert time.monotonic() < deadline, "the lock on pg_authid was never granted"
            time.sleep(0.2)
        yield
    finally:
        psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()"
        )
        holder.wait(timeout=30)
        psql("ALTER ROLE shipyard RESET lock_timeout")


@pytest.mark.parametrize("statement", ["CREATE ROLE", "ALTER ROLE"])
def test_postgresql_password_setting_failing_in_the_server_leaves_no_secret_in_any_log(
    statement: str,
) -> None:
    """The superuser's CREATE ROLE, or the ALTER ROLE of a changed password, fails in the server.

    A lock timeout cancels the statement inside the role's function: the
    report names the role and the server's reason, and neither the password
    nor its verifier reaches the output or the server log (which, with
    log_statement = all, logged the error and its context).
    """
    user = "locked" if statement == "CREATE ROLE" else "relocked"
    secret = new_secret(f"locked-postgresql-{user}")
    mode = "on_create"
    if statement == "ALTER ROLE":
        first = new_secret("relocked-postgresql-first")
        created = run_role(
            PG,
            "postgresql_provision",
            {**PG_LOGIN, "postgresql_provision_users": [{"name": user, "password": first}]},
        )
        assert created.returncode == 0, created.stdout[-3000:]
        mode = "always"
    extra = {
        **PG_LOGIN,
        "postgresql_provision_update_password": mode,
        "postgresql_provision_users": [{"name": user, "password": secret}],
    }
    server = postgresql_log()
    with pg_authid_locked():
        proc = run_role(PG, "postgresql_provision", extra)
    assert proc.returncode != 0
    assert f"role {user}: canceling statement due to lock timeout" in proc.stdout, proc.stdout[
        -3000:
    ]
    logged = server.new()
    assert "lock timeout" in logged  # the server did log the error, with its context
    no_secret(secret, proc.stdout + proc.stderr, logged)
    assert VERIFIER not in proc.stdout + logged
    if statement == "ALTER ROLE":
        assert pg_login(user, "postgres", first).returncode == 0  # nothing was half set


def test_postgresql_reserved_name_the_server_refuses_leaves_no_secret_in_any_log() -> None:
    """Past the role's own check, the server itself refuses pg_app: still no secret anywhere.

    The role refuses reserved names first (tasks/validate.yml); here its
    roles phase (tasks/apply.yml) runs alone with a pg_ name, the way such a
    name reached the server before that check existed, so the server's error
    path is exercised for real.
    """
    secret = new_secret("server-reserved-postgresql")
    verifier = scram.scram_sha_256(secret)
    user = {"name": "pg_app", "state": "present", "db": None, "privs": ["ALL"]}
    server = postgresql_log()
    proc = run_role(
        PG,
        "postgresql_provision",
        {
            **PG_LOGIN,
            "postgresql_provision_phase": "roles",
            "postgresql_provision_phase_users": [user | {"verifier": verifier}],
            "postgresql_provision_user_spec": [
                user | {"password": secret, "verifier": verifier, "problem": ""}
            ],
            "postgresql_provision_db_spec": [],
        },
        tasks_from="apply",
    )
    assert proc.returncode != 0
    assert 'role pg_app: role name "pg_app" is reserved' in proc.stdout, proc.stdout[-3000:]
    logged = server.new()
    assert "is reserved" in logged  # the server logged its error
    scan = secret_scan.Scan()
    scan.secret("the password", secret)
    scan.scram_verifier("its verifier", verifier)
    scan.add("output", secret_scan.text("the run's output", proc.stdout + proc.stderr))
    scan.add("server log", secret_scan.text("the server log", logged))
    hits = scan.run()
    assert not hits, secret_scan.report(hits, scan.read)
    assert psql("SELECT count(*) FROM pg_roles WHERE rolname = 'pg_app'").stdout.strip() == "0"


def test_postgresql_passwords_set_and_changed_reach_no_log() -> None:
    """Create, then update_password: always with the same and with a new password."""
    first, second = new_secret("logged-postgresql-1"), new_secret("logged-postgresql-2")
    server = postgresql_log()
    runs = []
    for password, mode in ((first, "on_create"), (first, "always"), (second, "always")):
        runs.append(
            run_role(
                PG,
                "postgresql_provision",
                {
                    **PG_LOGIN,
                    "postgresql_provision_update_password": mode,
                    "postgresql_provision_users": [{"name": "logged", "password": password}],
                },
            )
        )
        assert runs[-1].returncode == 0, runs[-1].stdout[-3000:]
    assert [changed(r) for r in runs] == [1, 0, 1]
    assert "set the password of role logged" in runs[2].stdout
    assert pg_login("logged", "postgres", second).returncode == 0
    assert pg_login("logged", "postgres", first).returncode != 0
    logged = server.new()
    assert QUIET in logged and "shipyard_apply" not in logged
    for secret in (first, second):
        no_secret(secret, logged, *(r.stdout for r in runs))
    assert VERIFIER not in logged


def test_mariadb_passwords_set_and_changed_reach_no_log() -> None:
    first, second = new_secret("logged-mariadb-1"), new_secret("logged-mariadb-2")
    server = mariadb_general_log()
    runs = []
    for password, mode in ((first, "on_create"), (first, "always"), (second, "always")):
        runs.append(
            run_role(
                LAMP,
                "mariadb_provision",
                {
                    "mariadb_provision_update_password": mode,
                    "mariadb_provision_users": [
                        {"name": "logged", "password": password, "db": "app"}
                    ],
                },
            )
        )
        assert runs[-1].returncode == 0, runs[-1].stdout[-3000:]
    assert [changed(r) for r in runs] == [1, 0, 1]
    assert maria_login("logged", "app", second).returncode == 0
    assert maria_login("logged", "app", first).returncode != 0
    logged = server.new()
    assert "Connect" in logged  # the general log was on: the sessions were logged
    scan = secret_scan.Scan()
    for label, secret in (("first", first), ("second", second)):
        scan.secret(label, secret)
        scan.native_hash(label, secret)
    scan.add("general log", secret_scan.text("general log", logged))
    for i, r in enumerate(runs):
        scan.add(f"run {i}", secret_scan.text(f"run {i}", r.stdout))
    hits = scan.run()
    assert not hits, secret_scan.report(hits, scan.read)


@pytest.fixture
def no_backslash_escapes() -> Iterator[None]:
    assert (
        mariadb(
            "SET GLOBAL sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES,PIPES_AS_CONCAT'"
        ).returncode
        == 0
    )
    try:
        yield
    finally:
        mariadb("SET GLOBAL sql_mode = DEFAULT")


@pytest.mark.usefixtures("no_backslash_escapes")
def test_mariadb_quoting_holds_under_any_sql_mode() -> None:
    """Names and passwords with quotes and backslashes; a grant on nb_1 must not match nbx1."""
    user, password = 'o\'back\\slash "x"', new_secret("escapes-mariadb") + "\\'\""
    proc = run_role(
        LAMP,
        "mariadb_provision",
        {
            "mariadb_provision_users": [{"name": user, "password": password, "db": "nb_1"}],
            "mariadb_provision_databases": [{"name": "nb_1"}, {"name": "nbx1"}],
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    hexed = mariadb("SELECT HEX(User) FROM mysql.user").stdout.split()
    assert user.encode().hex().upper() in hexed
    assert maria_login(user, "nb_1", password).returncode == 0
    refused = maria_login(user, "nbx1", password)
    assert refused.returncode != 0 and "Access denied" in refused.stderr


@pytest.fixture
def strict_password_validation() -> Iterator[None]:
    assert mariadb("INSTALL SONAME 'simple_password_check'").returncode == 0
    try:
        yield
    finally:
        mariadb("UNINSTALL SONAME 'simple_password_check'")


@pytest.mark.usefixtures("strict_password_validation")
def test_mariadb_refused_password_names_the_account_not_the_secret() -> None:
    """A validation plugin with strict_password_validation refuses hashes: the server says no."""
    secret = new_secret("strict-mariadb") + "-Aa1"
    server = mariadb_general_log()
    proc = run_role(
        LAMP,
        "mariadb_provision",
        {"mariadb_provision_users": [{"name": "strict", "password": secret}]},
    )
    assert proc.returncode != 0
    assert (
        "user 'strict'@'%': The MariaDB server is running with the --strict-password-validation"
        in proc.stdout
    ), proc.stdout[-3000:]
    no_secret(secret, proc.stdout + proc.stderr, server.new())


def test_scan_finds_no_secret_anywhere_the_scenario_wrote() -> None:
    """Every secret of the run, and its verifier or hash, in everything the scenario wrote."""
    scan = secret_scan.Scan()
    for f in sorted(SECRETS.iterdir()):
        scan.secret(f"secret {f.name}", f.read_text().strip())
        scan.native_hash(f"secret {f.name}", f.read_text().strip())
    for label, secret in GENERATED.items():
        scan.secret(f"test secret {label}", secret)
        scan.native_hash(f"test secret {label}", secret)
    for user in ("app", "reader", "logged", "relocked"):
        verifier = psql(
            f"SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"  # noqa: S608 (fixed names)
        ).stdout.strip()
        scan.scram_verifier(f"verifier of {user}", verifier)
    assert len(PASSWORDS) == 4 and GENERATED, "the tests above ran and made secrets"
    scan.add("ansible logs", secret_scan.files(LOGS / "ansible.log"))
    scan.add("ansible logs", secret_scan.results_log(LOGS / "results.jsonl"))
    for what, output in RUNS:
        scan.add("role runs", secret_scan.text(f"output of {what}", output))
    scan.add("docker logs", secret_scan.docker_logs(PG, LAMP))
    images = [
        docker("inspect", "--format", "{{.Config.Image}}", c).stdout.strip() for c in (PG, LAMP)
    ]
    scan.add("docker inspect", secret_scan.docker_inspect(PG, LAMP, *images))
    scan.add("docker history", secret_scan.docker_history(*images))
    scan.add("server logs", secret_scan.container_files(PG, "/var/log"))
    scan.add("server logs", secret_scan.container_files(LAMP, "/var/log"))
    scan.add("environ", secret_scan.container_environ(PG))
    scan.add("environ", secret_scan.container_environ(LAMP))
    hits = scan.run()
    assert not hits, secret_scan.report(hits, scan.read)
    # Each source was read, or the scan proves nothing.
    for label in ("ansible logs", "role runs", "docker logs", "server logs", "environ"):
        assert scan.read.get(label, 0) > 0, secret_scan.report(hits, scan.read)
