"""Verify the converged PostgreSQL container and the image's runtime contract.

What is checked, against the molecule instance unless a test starts its own
container of the same image:
- the supervisor (shipyard-init, root, under tini) runs the server and all its
  processes as postgres; no service holds the password in its environment;
- TCP logins need the password (SCRAM-SHA-256): right password in, none or a
  wrong one out, also from another container; the unix socket is peer only;
- the converged role, database and row are there; the HEALTHCHECK is healthy;
- /docker-entrypoint-initdb.d/ (*.sql, *.sql.gz, sourced and executed *.sh)
  ran once, against a server without TCP, and a restart does not rerun it;
- `docker stop` exits 0 well inside Docker's 10 s, and after `docker start`
  the data is there and the server logs no recovery; its log is JSON lines;
- without a password the container refuses to start and names the variables;
  POSTGRES_PASSWORD_FILE, odd user and database names, POSTGRES_INITDB_ARGS
  and conf.d drop-ins work, and a bad drop-in fails with the server's message
  in `docker logs`; no secret is in the image;
- the official image's conventions: any other command runs without the
  supervisor (`psql --version`, `bash -c`), server flags (first, or after
  `postgres`) reach the server and the first run, PGDATA,
  POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_WALDIR, an arbitrary uid
  (`--user 12345:0`) on an empty volume, and a read-only root with tmpfs
  /run and /tmp: each initialises, serves, stops cleanly and starts again;
  without a tmpfs on /run the start fails, naming the path;
- no password shows in `docker logs` or in the server's log files; the
  server's death stops the container with its status.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from container_checks import (
    address,
    assert_no_secret_logged,
    docker,
    inspect,
    logs,
    supervised,
    wait_exited,
    wait_healthy,
    wait_ready,
)
from testinfra.host import Host

IMAGE = "shipyard/postgresql:17"
SOCKET_DIR = "/run/postgresql"
EXPECTED_INIT_SOURCES = ["10-schema.sql", "20-seed.sql.gz", "30-sourced.sh", "40-executed.sh"]
# PostgreSQL logs these on start-up only when the previous run did not shut down cleanly.
UNCLEAN_SIGNS = ("not properly shut down", "automatic recovery", "crash recovery")


def psql(
    container: str,
    sql: str,
    *,
    user: str,
    database: str,
    password: str | None = None,
    tcp: bool = False,
    os_user: str = "postgres",
    check: bool = True,
) -> subprocess.CompletedProcess:
    """psql in the container: over the unix socket (peer), or TCP to the container's address."""
    env = ["--env", f"PGPASSWORD={password}"] if password is not None else []
    host = address(container) if tcp else SOCKET_DIR
    proc = docker(
        "exec",
        "--user",
        os_user,
        *env,
        container,
        "psql",
        "--no-psqlrc",
        "--no-password",
        "--tuples-only",
        "--no-align",
        "--host",
        host,
        "--username",
        user,
        "--dbname",
        database,
        "--command",
        sql,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"psql {sql!r} as {user} failed: {proc.stderr.strip()}")
    return proc


def server_log(container: str) -> list[dict]:
    """Every record of the server's JSON log files, oldest first."""
    out = docker(
        "exec", container, "sh", "-c", "cat /var/log/postgresql/*.json 2>/dev/null || true"
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def instance(host: Host) -> str:
    name = host.backend.host
    wait_ready(name)
    return name


@pytest.fixture(scope="module")
def env(instance: str) -> dict[str, str]:
    pairs = inspect(instance)["Config"]["Env"]
    return dict(pair.split("=", 1) for pair in pairs)


@pytest.fixture(scope="module")
def app(host: Host) -> dict[str, str]:
    """The application role converge created (the scenario's host_vars)."""
    variables = host.ansible.get_variables()
    return {
        "user": variables["postgresql_test_app_user"],
        "password": variables["postgresql_test_app_password"],
        "database": variables["postgresql_test_app_database"],
    }


RunContainer = Callable[..., str]


@pytest.fixture
def run_container() -> Iterator[RunContainer]:
    """Start throwaway containers of the image: `docker run` options, then the command.

    Each is removed afterwards with its volumes, named ones (`volume:NAME`
    in an option is replaced by a fresh volume) included.
    """
    names: list[str] = []
    volumes: list[str] = []

    def run(*args: str, command: tuple[str, ...] = ()) -> str:
        name = f"shipyard-molecule-pg-{uuid.uuid4().hex[:8]}"
        names.append(name)
        options = []
        for arg in args:
            if arg.startswith("volume:"):
                volume, _, target = arg.removeprefix("volume:").partition(":")
                volumes.append(f"{name}-{volume}")
                options += ["--volume", f"{name}-{volume}:{target}"]
            else:
                options.append(arg)
        docker("run", "--detach", "--name", name, *options, IMAGE, *command)
        return name

    yield run
    for name in names:
        docker("rm", "--force", "--volumes", name, check=False)
    for volume in volumes:
        docker("volume", "rm", "--force", volume, check=False)


def test_services_run_as_postgres(instance: str) -> None:
    rows = docker("exec", instance, "ps", "-eo", "pid=,ppid=,user=,comm=").stdout.split("\n")
    procs = [row.split(None, 3) for row in rows if row.strip()]
    by_pid = {int(pid): (int(ppid), user, comm) for pid, ppid, user, comm in procs}
    assert by_pid[1][1:] == ("root", "tini")
    supervisor = [pid for pid, (ppid, _, comm) in by_pid.items() if ppid == 1 and comm != "ps"]
    assert len(supervisor) == 1
    assert by_pid[supervisor[0]][1] == "root"
    services = {
        pid: by_pid[pid][1:] for pid, (ppid, _, _) in by_pid.items() if ppid == supervisor[0]
    }
    # The log agent, the log pruner and the backup service (idle without a
    # bucket) run beside the server (images/postgresql/README.md).
    assert sorted(services.values()) == [
        ("log-age+", "shipyard-logs"),
        ("postgres", "postgres"),
        ("postgres", "shipyard-backup"),
        ("root", "shipyard-log-ro"),
    ], by_pid
    postmaster = [pid for pid, (_, comm) in services.items() if comm == "postgres"]
    assert by_pid[postmaster[0]][1:] == ("postgres", "postgres")
    children = [(user, comm) for ppid, user, comm in by_pid.values() if ppid == postmaster[0]]
    assert children, "the postmaster has no child processes"
    assert {user for user, _ in children} == {"postgres"}
    # The first-run one-shots are gone; only the supervisor and the pruner run as root.
    # runc's init is a health check or exec being set up at that instant.
    root = {c for _, user, c in by_pid.values() if user == "root" and not c.startswith("runc:")}
    assert root - {"ps"} == {"tini", by_pid[supervisor[0]][2], "shipyard-log-ro"}


def holders_of(container: str, secret: str) -> dict[str, bool]:
    """Command name -> whether any process of that name holds `secret` in its environment.

    Read on the Docker host, where `docker top` gives the pids: root in the
    container lacks CAP_SYS_PTRACE for other users' environments.
    """
    holders: dict[str, bool] = {}
    for line in docker("top", container, "-eo", "pid,comm").stdout.splitlines()[1:]:
        pid, comm = line.split(None, 1)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except FileNotFoundError:
            continue  # a process that has just exited
        except PermissionError:
            pytest.fail("reading another process's environment needs root on the Docker host")
        holders[comm] = holders.get(comm, False) or secret.encode() in environ
    return holders


def test_no_service_holds_the_password(
    instance: str, env: dict[str, str], app: dict[str, str]
) -> None:
    # Nor does any log: docker logs or the server's files.
    passwords = {"POSTGRES_PASSWORD": env["POSTGRES_PASSWORD"], "app": app["password"]}
    assert_no_secret_logged(instance, passwords)
    holders = holders_of(instance, env["POSTGRES_PASSWORD"])
    # tini and the supervisor hold what Docker gave the container; nothing they start does.
    assert {"tini", "shipyard-init", "postgres", "shipyard-logs"} <= set(holders)
    assert {comm for comm, holds in holders.items() if holds} <= {"tini", "shipyard-init"}


def test_healthcheck_follows_the_supervisor(instance: str) -> None:
    status = docker("exec", "--user", "postgres", instance, "shipyard-init", "status")
    assert status.stdout.strip() == "ready"
    # Docker's first check comes one 30 s interval after the start.
    wait_healthy(instance, timeout=120)


def test_the_steps_before_the_server_and_the_agent_come_in_order(
    instance: str, env: dict[str, str]
) -> None:
    """Every start waits for the one-shots: the backup ones are one process, and the
    log agent starts after them, just before the server, so it does not compete with them."""
    assert supervised(instance) == [
        "prepare",
        "backup-prepare",
        "postgres-init",
        "log-agent",
        "postgres",
        "log-rotate",
        "backup",
    ]
    # backup-prepare wrote the archive settings before the server read them.
    settings = docker("exec", instance, "cat", f"{SOCKET_DIR}/shipyard-backup.conf").stdout
    assert "archive_mode = off" in settings
    shown = psql(
        instance, "SHOW archive_mode", user=env["POSTGRES_USER"], database=env["POSTGRES_DB"]
    )
    assert shown.stdout.strip() == "off"


def test_an_unfinished_restore_is_refused_before_the_server_starts(
    run_container: RunContainer,
) -> None:
    first = run_container("--env", "POSTGRES_PASSWORD=x", "volume:data:/var/lib/postgresql/data")
    wait_ready(first)
    docker("stop", first, timeout=30)
    volume = f"{first}-data:/var/lib/postgresql/data"
    marker = "/var/lib/postgresql/data/.shipyard-restore-incomplete"
    docker("run", "--rm", "--volume", volume, IMAGE, "touch", marker)
    restore = ("--env", "SHIPYARD_BACKUP_RESTORE=latest")
    again = run_container("--env", "POSTGRES_PASSWORD=x", *restore, "--volume", volume)
    assert wait_exited(again) == 1
    output = logs(again)
    assert "did not finish" in output
    assert "one-shot backup-prepare exited with code 1" in output
    assert "started postgres " not in output


def test_tcp_login_needs_the_password(
    instance: str, env: dict[str, str], app: dict[str, str]
) -> None:
    login = {"user": app["user"], "database": app["database"], "tcp": True}
    row = psql(
        instance, "SELECT body FROM greetings WHERE id = 1", password=app["password"], **login
    )
    assert row.stdout.strip() == "hello from shipyard"
    method = psql(
        instance,
        "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = current_user",
        user=env["POSTGRES_USER"],
        database="postgres",
    )
    assert method.stdout.strip() == "t"
    without = psql(instance, "SELECT 1", check=False, **login)
    assert without.returncode != 0
    assert "no password supplied" in without.stderr
    wrong = psql(instance, "SELECT 1", password="not-the-password", check=False, **login)  # noqa: S106
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr


def test_tcp_login_from_another_container(instance: str, app: dict[str, str]) -> None:
    url = (
        f"postgresql://{app['user']}@{address(instance)}:5432/{app['database'].replace(' ', '%20')}"
    )
    # The image runs a client command as it is, without the supervisor.
    client = [
        "run",
        "--rm",
        "--env",
        f"PGPASSWORD={app['password']}",
        IMAGE,
        "psql",
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        url,
        "--command",
        "SELECT current_user",
    ]
    assert docker(*client).stdout.strip() == app["user"]


def test_unix_socket_is_peer_only(instance: str, app: dict[str, str]) -> None:
    # The OS user postgres may be any role (pg_ident.conf); nobody else may.
    who = psql(instance, "SELECT current_user", user=app["user"], database=app["database"])
    assert who.stdout.strip() == app["user"]
    other = psql(
        instance,
        "SELECT 1",
        user=app["user"],
        database=app["database"],
        password=app["password"],
        os_user="nobody",
        check=False,
    )
    assert other.returncode != 0
    assert "Peer authentication failed" in other.stderr


def test_initdb_files_ran_once_without_tcp(instance: str, env: dict[str, str]) -> None:
    rows = psql(
        instance,
        "SELECT source || ' ' || listen_addresses || ' ' || coalesce(os_user, '-')"
        " FROM init_runs ORDER BY id",
        user=env["POSTGRES_USER"],
        database=env["POSTGRES_DB"],
    ).stdout.splitlines()
    # The temporary server had listen_addresses = '' (an empty second field);
    # the scripts ran as the database's OS user.
    os_users = {"30-sourced.sh": "postgres", "40-executed.sh": "postgres"}
    assert rows == [f"{source}  {os_users.get(source, '-')}" for source in EXPECTED_INIT_SOURCES]


def test_image_holds_no_secret_and_no_database() -> None:
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE).stdout
    assert "POSTGRES_PASSWORD=" not in history
    config = json.loads(docker("image", "inspect", IMAGE).stdout)[0]["Config"]
    assert not [e for e in config["Env"] if "PASSWORD" in e]
    assert config["Healthcheck"]["Test"] == ["CMD", "/usr/bin/test", "-e", "/run/shipyard/ready"]
    assert config["Healthcheck"]["Interval"] >= 30 * 10**9
    assert "/var/lib/postgresql/data" in config["Volumes"]
    listing = docker("run", "--rm", "--entrypoint", "ls", IMAGE, "-A", "/var/lib/postgresql/data")
    assert listing.stdout.strip() == ""


def test_stop_is_clean_and_fast_and_data_survives(
    instance: str, env: dict[str, str], app: dict[str, str]
) -> None:
    records_before = len(server_log(instance))
    began = time.monotonic()
    docker("stop", instance, timeout=30)
    seconds = time.monotonic() - began
    state = inspect(instance)["State"]
    assert state["ExitCode"] == 0, logs(instance)[-2000:]
    assert seconds < 5, f"docker stop took {seconds:.1f} s"
    assert "postgres stopped after" in logs(instance)

    docker("start", instance)
    wait_ready(instance)
    restart = server_log(instance)[records_before:]
    messages = [record["message"] for record in restart]
    assert any(m.startswith("received fast shutdown request") for m in messages), messages
    assert any(m.startswith("database system was shut down at") for m in messages), messages
    assert not [m for m in messages if any(sign in m for sign in UNCLEAN_SIGNS)]

    row = psql(
        instance,
        "SELECT body FROM greetings WHERE id = 1",
        user=app["user"],
        database=app["database"],
        password=app["password"],
        tcp=True,
    )
    assert row.stdout.strip() == "hello from shipyard"
    runs = psql(
        instance,
        "SELECT count(*) FROM init_runs",
        user=env["POSTGRES_USER"],
        database=env["POSTGRES_DB"],
    )
    assert runs.stdout.strip() == str(len(EXPECTED_INIT_SOURCES))
    assert "Skipping initialization" in logs(instance)


def test_start_without_password_fails_and_names_the_variables(
    run_container: RunContainer,
) -> None:
    name = run_container("--env", "POSTGRES_USER=app")
    assert wait_exited(name) != 0
    output = logs(name)
    assert "POSTGRES_PASSWORD" in output
    assert "POSTGRES_PASSWORD_FILE" in output
    assert "one-shot postgres-init exited with code 1" in output
    assert inspect(name)["State"]["Health"]["Status"] != "healthy"


def test_user_with_a_double_quote_is_refused(run_container: RunContainer) -> None:
    # initdb puts the superuser's name in double quotes without doubling those inside it.
    name = run_container("--env", "POSTGRES_PASSWORD=x", "--env", 'POSTGRES_USER=a"b')
    assert wait_exited(name) != 0
    assert "POSTGRES_USER must not contain a double quote" in logs(name)


def test_password_file_odd_names_initdb_args_and_conf_d(
    run_container: RunContainer, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("file-Secret-3\n")
    secret.chmod(0o644)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "50-test.conf").write_text("work_mem = '7MB'\n")
    conf_d.chmod(0o755)
    (conf_d / "50-test.conf").chmod(0o644)
    user, database = "Odd User", 'db; DROP TABLE "x"'
    name = run_container(
        "--env",
        "POSTGRES_PASSWORD_FILE=/run/secrets/pg",
        "--env",
        f"POSTGRES_USER={user}",
        "--env",
        f"POSTGRES_DB={database}",
        "--env",
        "POSTGRES_INITDB_ARGS=--data-checksums --auth-local=peer",
        "--volume",
        f"{secret}:/run/secrets/pg:ro",
        "--volume",
        f"{conf_d}:/etc/postgresql/conf.d:ro",
    )
    wait_ready(name)
    login = {"user": user, "database": database, "password": "file-Secret-3", "tcp": True}
    got = psql(
        name,
        "SELECT current_user || '|' || current_database() || '|' || "
        "current_setting('work_mem') || '|' || current_setting('data_checksums')",
        **login,
    )
    assert got.stdout.strip() == f"{user}|{database}|7MB|on"
    assert_no_secret_logged(name, {"POSTGRES_PASSWORD_FILE": "file-Secret-3"})

    # A bad drop-in on an initialised volume: the server refuses to start, and
    # says why in `docker logs`.
    docker("stop", name)
    (conf_d / "60-bad.conf").write_text("shared_buffers = 'plenty'\n")
    (conf_d / "60-bad.conf").chmod(0o644)
    docker("start", name)
    assert wait_exited(name) != 0
    assert 'invalid value for parameter "shared_buffers"' in logs(name)


# ---------------------------------------------------- the official image's conventions


def run_once(*args: str) -> subprocess.CompletedProcess:
    """`docker run --rm IMAGE ARGS`: a command that is not the server."""
    return docker("run", "--rm", IMAGE, *args, check=False, timeout=120)


def test_a_command_that_is_not_the_server_runs_without_the_supervisor() -> None:
    version = run_once("psql", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("psql (PostgreSQL) 17")
    hello = run_once("bash", "-c", "echo hi; ps -o comm= -p 1")
    assert hello.returncode == 0, hello.stderr
    # tini is PID 1 and bash its child: no shipyard-init in between.
    assert hello.stdout.split() == ["hi", "tini"]
    assert "shipyard-init" not in hello.stderr
    server_version = run_once("postgres", "--version")
    assert (server_version.returncode, server_version.stdout.split()[:2]) == (
        0,
        ["postgres", "(PostgreSQL)"],
    )
    assert run_once("false").returncode == 1


def server_settings(name: str, password: str, *settings: str) -> list[str]:
    query = "SELECT " + ", ".join(f"current_setting('{s}')" for s in settings)
    got = psql(name, query, user="postgres", database="postgres", password=password, tcp=True)
    return got.stdout.strip().split("|")


@pytest.mark.parametrize(
    "command",
    [
        ("-c", "shared_buffers=48MB", "-c", "work_mem=5MB"),
        ("postgres", "-c", "shared_buffers=48MB", "-c", "work_mem=5MB"),
    ],
    ids=["flags", "postgres-and-flags"],
)
def test_server_flags_reach_the_server_and_the_first_run(
    run_container: RunContainer, tmp_path: Path, command: tuple[str, ...]
) -> None:
    initdb = tmp_path / "initdb"
    initdb.mkdir(mode=0o755)
    script = initdb / "10-seen.sql"
    script.write_text("CREATE TABLE seen AS SELECT current_setting('work_mem') AS work_mem;\n")
    script.chmod(0o644)
    name = run_container(
        "--env",
        "POSTGRES_PASSWORD=flags-Secret-4",
        "--volume",
        f"{initdb}:/docker-entrypoint-initdb.d:ro",
        command=command,
    )
    wait_ready(name)
    assert server_settings(name, "flags-Secret-4", "shared_buffers", "work_mem") == ["48MB", "5MB"]
    seen = psql(name, "SELECT work_mem FROM seen", user="postgres", database="postgres")
    assert seen.stdout.strip() == "5MB"


def assert_stops_cleanly_and_starts_again(name: str, password: str) -> None:
    began = time.monotonic()
    docker("stop", name, timeout=30)
    assert inspect(name)["State"]["ExitCode"] == 0, logs(name)[-3000:]
    assert time.monotonic() - began < 10
    assert "postgres stopped after" in logs(name)
    docker("start", name)
    wait_ready(name)
    restarted = logs(name, since=inspect(name)["State"]["StartedAt"])
    assert "Skipping initialization" in restarted
    assert server_settings(name, password, "server_version_num")[0].startswith("17")


def test_arbitrary_uid_on_an_empty_volume(run_container: RunContainer) -> None:
    # The official image's rule: the volume one level up, PGDATA a subdirectory.
    name = run_container(
        "--user",
        "12345:0",
        "--env",
        "POSTGRES_PASSWORD=uid-Secret-5",
        "--env",
        "PGDATA=/var/lib/postgresql/data/pgdata",
        "volume:data:/var/lib/postgresql/data",
    )
    wait_ready(name)
    rows = docker("top", name, "-eo", "pid,uid").stdout.splitlines()[1:]
    uids = {row.split()[1] for row in rows}
    assert uids == {"12345"}
    assert server_settings(name, "uid-Secret-5", "data_directory") == [
        "/var/lib/postgresql/data/pgdata"
    ]
    # The uid has a name for peer logins on the socket, as the image's postgres.
    who = docker("exec", name, "psql", "-U", "postgres", "-tAc", "SELECT current_user")
    assert who.stdout.strip() == "postgres"
    assert_stops_cleanly_and_starts_again(name, "uid-Secret-5")


def test_arbitrary_uid_that_cannot_own_the_data_directory_is_told_why(
    run_container: RunContainer,
) -> None:
    name = run_container(
        "--user", "12345:0", "--env", "POSTGRES_PASSWORD=x", "volume:data:/var/lib/postgresql/data"
    )
    assert wait_exited(name) == 1
    output = logs(name)
    assert "/var/lib/postgresql/data is owned by uid" in output
    assert "PGDATA=/var/lib/postgresql/data/pgdata" in output


def test_read_only_root_with_tmpfs_run_and_tmp(run_container: RunContainer) -> None:
    # The write-ahead log on a volume of its own: POSTGRES_INITDB_WALDIR.
    name = run_container(
        "--read-only",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/tmp",  # noqa: S108 - a tmpfs of the container's own
        "--env",
        "POSTGRES_PASSWORD=ro-Secret-6",
        "--env",
        "POSTGRES_INITDB_WALDIR=/var/lib/postgresql/wal",
        "volume:data:/var/lib/postgresql/data",
        "volume:wal:/var/lib/postgresql/wal",
    )
    wait_ready(name)
    assert server_settings(name, "ro-Secret-6", "server_version_num")[0].startswith("17")
    wal = docker("exec", name, "readlink", "/var/lib/postgresql/data/pg_wal").stdout.strip()
    assert wal == "/var/lib/postgresql/wal"
    # The server logs to its files (a volume) and the agent runs on.
    assert server_log(name)
    assert "log-agent" in docker("exec", name, "ps", "-eo", "user=").stdout
    assert_stops_cleanly_and_starts_again(name, "ro-Secret-6")


def test_read_only_root_without_a_tmpfs_on_run_names_the_path(run_container: RunContainer) -> None:
    name = run_container(
        "--read-only", "--env", "POSTGRES_PASSWORD=x", "volume:data:/var/lib/postgresql/data"
    )
    assert wait_exited(name) == 1
    output = logs(name)
    assert "/run/postgresql is not writable by uid 0" in output
    assert "Mount a volume or a tmpfs there" in output


def test_host_auth_method_trust_only_when_asked(run_container: RunContainer) -> None:
    name = run_container("--env", "POSTGRES_HOST_AUTH_METHOD=trust")
    wait_ready(name)
    unasked = psql(name, "SELECT current_user", user="postgres", database="postgres", tcp=True)
    assert unasked.stdout.strip() == "postgres"
    assert "POSTGRES_HOST_AUTH_METHOD=trust" in logs(name)

    refused = run_container(
        "--env", "POSTGRES_PASSWORD=x", "--env", "POSTGRES_HOST_AUTH_METHOD=ident"
    )
    assert wait_exited(refused) == 1
    assert "POSTGRES_HOST_AUTH_METHOD must be one of" in logs(refused)


def test_the_server_dying_stops_the_container_with_its_status(run_container: RunContainer) -> None:
    name = run_container("--env", "POSTGRES_PASSWORD=x")
    wait_ready(name)
    docker("exec", name, "sh", "-c", 'kill -KILL "$(head -n 1 "$PGDATA/postmaster.pid")"')
    assert wait_exited(name) == 137
    assert "critical service postgres was killed by SIGKILL" in logs(name)


# ---------------------------------------------------- replication

REPLICATION_USER = "replicator"
# A colon and a backslash: the password file escapes both.
REPLICATION_PASSWORD = "repl:Secret\\4"  # noqa: S105


# Waits in one session until row ROW is there, then prints how long ago the
# primary stamped it.
REPLAY_WAIT_SQL = """
    DO $$ BEGIN
        WHILE NOT EXISTS (SELECT 1 FROM stamps WHERE id = ROW) LOOP
            PERFORM pg_sleep(0.005);
            IF clock_timestamp() > statement_timestamp() + interval '30 s' THEN
                RAISE 'row ROW did not arrive within 30 s';
            END IF;
        END LOOP;
    END $$;
    SELECT extract(epoch FROM clock_timestamp() - written) FROM stamps WHERE id = ROW;
"""


def replication_env(secret: Path, *more: str) -> tuple[str, ...]:
    """The replication role, its password as a file, and more variables."""
    pairs = [
        f"POSTGRES_REPLICATION_USER={REPLICATION_USER}",
        "POSTGRES_REPLICATION_PASSWORD_FILE=/run/secrets/repl",
        *more,
    ]
    env = [arg for pair in pairs for arg in ("--env", pair)]
    return (*env, "--volume", f"{secret}:/run/secrets/repl:ro")


def superuser_sql(container: str, sql: str, *, check: bool = True) -> subprocess.CompletedProcess:
    return psql(container, sql, user="postgres", database="postgres", check=check)


def replay_lag(replica: str, row: int) -> float:
    """Seconds from the primary stamping `row` to the replica seeing it.

    The replica polls in one session (a new snapshot per statement on a hot
    standby), so the figure holds no `docker exec` start-up; both
    containers read the same clock.
    """
    sql = REPLAY_WAIT_SQL.replace("ROW", str(int(row)))
    proc = psql(replica, sql, user="postgres", database="postgres")
    return float(proc.stdout.split()[-1])


def test_a_replica_streams_from_the_primary_and_takes_over_when_promoted(
    run_container: RunContainer, tmp_path: Path
) -> None:
    secret = tmp_path / "replication"
    secret.write_text(REPLICATION_PASSWORD + "\n")
    secret.chmod(0o600)  # root only: the first run reads it before it drops to postgres
    primary = run_container("--env", "POSTGRES_PASSWORD=primary-Secret-5", *replication_env(secret))
    wait_ready(primary)
    superuser_sql(
        primary,
        "CREATE TABLE stamps (id int PRIMARY KEY, written timestamptz NOT NULL);"
        "INSERT INTO stamps VALUES (1, clock_timestamp())",
    )
    replica = run_container(
        *replication_env(
            secret,
            f"POSTGRES_PRIMARY_HOST={address(primary)}",
            "POSTGRES_REPLICATION_SLOT=replica_1",
        ),
        "volume:data:/var/lib/postgresql/data",
    )
    wait_ready(replica)
    assert superuser_sql(replica, "SELECT pg_is_in_recovery()").stdout.strip() == "t"
    assert superuser_sql(replica, "SELECT count(*) FROM stamps").stdout.strip() == "1"
    streaming = superuser_sql(
        primary,
        "SELECT s.active, r.state, r.application_name FROM pg_replication_slots s "
        "JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'replica_1'",
    )
    assert streaming.stdout.strip() == "t|streaming|replica_1"

    superuser_sql(primary, "INSERT INTO stamps VALUES (2, clock_timestamp())")
    lag = replay_lag(replica, 2)
    assert lag < 1.0, f"the replica saw a row {lag:.3f} s after the primary wrote it"
    refused = superuser_sql(replica, "INSERT INTO stamps VALUES (9, now())", check=False)
    assert "read-only transaction" in refused.stderr

    # Away for a while: the slot kept the WAL it missed, and a new start
    # writes its password file again.
    docker("stop", replica)
    superuser_sql(primary, "INSERT INTO stamps VALUES (3, clock_timestamp())")
    docker("start", replica)
    wait_ready(replica)
    replay_lag(replica, 3)
    assert superuser_sql(replica, "SELECT pg_is_in_recovery()").stdout.strip() == "t"

    # The password is in the password file on /run, nowhere the server shows.
    conninfo = superuser_sql(replica, "SHOW primary_conninfo").stdout
    assert "passfile=/run/postgresql/replication.pgpass" in conninfo
    assert REPLICATION_PASSWORD not in conninfo
    auto_conf = docker(
        "exec", replica, "cat", "/var/lib/postgresql/data/postgresql.auto.conf"
    ).stdout
    assert REPLICATION_PASSWORD not in auto_conf
    passfile = docker(
        "exec", replica, "stat", "-c", "%U %a", "/run/postgresql/replication.pgpass"
    ).stdout
    assert passfile.split() == ["postgres", "600"]
    for name in (primary, replica):
        assert_no_secret_logged(name, {"POSTGRES_REPLICATION_PASSWORD": REPLICATION_PASSWORD})

    # The primary is lost; the replica is promoted and takes writes.
    docker("stop", primary)
    docker("exec", "--user", "postgres", replica, "pg_ctl", "promote")
    assert superuser_sql(replica, "SELECT pg_is_in_recovery()").stdout.strip() == "f"
    superuser_sql(replica, "INSERT INTO stamps VALUES (4, clock_timestamp())")
    # With the same variables it restarts as a primary, with every row.
    docker("restart", replica)
    wait_ready(replica)
    assert superuser_sql(replica, "SELECT pg_is_in_recovery()").stdout.strip() == "f"
    assert (
        superuser_sql(
            replica, "SELECT string_agg(id::text, ',' ORDER BY id) FROM stamps"
        ).stdout.strip()
        == "1,2,3,4"
    )


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            ("POSTGRES_PASSWORD=x", "POSTGRES_REPLICATION_USER=replicator"),
            "POSTGRES_REPLICATION_PASSWORD",
        ),
        (
            (
                "POSTGRES_PRIMARY_HOST=10.0.0.1",
                "POSTGRES_REPLICATION_USER=r",
                "POSTGRES_REPLICATION_PASSWORD_FILE=/run/secrets/repl",
            ),
            "POSTGRES_REPLICATION_SLOT",
        ),
        (
            (
                "POSTGRES_PRIMARY_HOST=10.0.0.1",
                "POSTGRES_REPLICATION_SLOT=s",
                "POSTGRES_REPLICATION_PASSWORD_FILE=/run/secrets/repl",
            ),
            "POSTGRES_REPLICATION_USER",
        ),
        (
            (
                "POSTGRES_PRIMARY_HOST=db; rm",
                "POSTGRES_REPLICATION_USER=r",
                "POSTGRES_REPLICATION_SLOT=s",
            ),
            "POSTGRES_PRIMARY_HOST",
        ),
        (
            (
                "POSTGRES_PRIMARY_HOST=db",
                "POSTGRES_PRIMARY_PORT=99999",
                "POSTGRES_REPLICATION_USER=r",
                "POSTGRES_REPLICATION_SLOT=s",
            ),
            "POSTGRES_PRIMARY_PORT",
        ),
        (
            (
                "POSTGRES_PRIMARY_HOST=db",
                "POSTGRES_REPLICATION_USER=r",
                "POSTGRES_REPLICATION_SLOT=s",
            ),
            "POSTGRES_REPLICATION_PASSWORD",
        ),
    ],
)
def test_a_replication_setting_that_cannot_work_stops_the_start_naming_it(
    run_container: RunContainer, tmp_path: Path, variables: tuple[str, ...], named: str
) -> None:
    secret = tmp_path / "replication"
    secret.write_text("r-Secret-6\n")
    env = [arg for pair in variables for arg in ("--env", pair)]
    name = run_container(*env, "--volume", f"{secret}:/run/secrets/repl:ro")
    assert wait_exited(name) == 1
    output = logs(name)
    assert named in output, output
    assert "started postgres " not in output
    # Refused before initdb, which would leave a directory later starts refuse.
    assert "Initializing database files" not in output
