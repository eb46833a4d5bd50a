"""Verify the converged LAMP container and the image's runtime contract.

What is checked, against the molecule instance unless a test starts its own
container of the same image:
- the supervisor (shipyard-init, root, under tini) runs MariaDB as mysql,
  PHP-FPM as a root master with www-data workers and Apache as a root parent
  with www-data children; none of the three holds a MariaDB password;
- the converged PHP page reads its row from MariaDB as the application user
  and serves it over HTTP; Apache announces itself as "Apache" only;
- the application user reaches its own database and nothing else; root logs in
  over the unix socket only;
- the HEALTHCHECK reports healthy; no secret is in the image;
- without a root password the container refuses to start and names the
  variables; odd database and user names are created verbatim, and the
  /docker-entrypoint-initdb.d/ files run once;
- `docker stop` exits 0 well inside Docker's 10 s, and after `docker start`
  the data is there and MariaDB reports no crash recovery;
- the official images' conventions: any other command runs without the
  supervisor, server flags (first, or after `mariadbd`) reach MariaDB, a
  compose file's MYSQL_* environment works, MARIADB_ROOT_HOST lets root in
  over TCP, MARIADB_AUTO_UPGRADE upgrades a data directory from an older
  server, and an arbitrary uid (`--user 12345:0`) on an empty volume and a
  read-only root with tmpfs /run and /tmp each initialise, serve, stop
  cleanly and start again; without those tmpfs mounts the start fails,
  naming the path, and a bad server flag fails with MariaDB's own message;
- no password shows in `docker logs` or in a log file under /var/log;
  MariaDB's death stops the container with its status;
- the modes: SHIPYARD_INIT_PROFILES=db runs MariaDB alone and =web Apache
  and PHP-FPM alone, with no MariaDB variable, serving a page from the
  other container's MariaDB; an unknown mode stops the start, naming it.
"""

from __future__ import annotations

import base64
import gzip
import subprocess
import time
import urllib.request
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

IMAGE = "shipyard/lamp:latest"
PAGE = "/shipyard-test.php"
EXPECTED_ROW = "hello from shipyard"
PASSWORD_VARIABLES = (
    "MARIADB_ROOT_PASSWORD",
    "MARIADB_ROOT_PASSWORD_FILE",
    "MARIADB_RANDOM_ROOT_PASSWORD",
)
MARIADB_LOG = "/var/log/mysql/error.log"
# MariaDB logs these on start-up only when the previous run did not shut down cleanly.
UNCLEAN_SIGNS = ("crash recovery", "Recovering after a crash", "was not shut down normally")


def http_get(container: str, path: str) -> tuple[str, dict[str, str]]:
    url = f"http://{address(container)}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode(), dict(response.headers)


def sql(
    container: str, query: str, *, user: str | None = None, password: str = "", database: str = ""
) -> str:
    """Run a query in the container: as the OS root over the socket, or as USER over TCP."""
    argv = ["exec"]
    if user is not None:
        argv += ["--env", f"MYSQL_PWD={password}"]
    argv += [container, "mariadb", "--batch", "--raw", "--skip-column-names"]
    argv += [f"--database={database}"] if database else []
    argv += ["--protocol=socket"] if user is None else ["--host=127.0.0.1", f"--user={user}"]
    proc = docker(*argv, f"--execute={query}", check=False)
    if proc.returncode != 0:
        raise PermissionError(proc.stderr.strip())
    return proc.stdout


@pytest.fixture(scope="module")
def instance(host: Host) -> str:
    name = host.backend.host
    wait_ready(name)
    return name


@pytest.fixture(scope="module")
def env(host: Host) -> dict[str, str]:
    return host.environment()


RunContainer = Callable[..., "str | subprocess.CompletedProcess"]


@pytest.fixture
def run_container() -> Iterator[RunContainer]:
    """Start containers of the image: `docker run` options, then the command.

    Each is removed afterwards with its volumes, named ones (`volume:NAME`
    in an option is replaced by a fresh volume) included.
    """
    names: list[str] = []
    volumes: list[str] = []

    def run(
        *args: str, command: tuple[str, ...] = (), detach: bool = True
    ) -> str | subprocess.CompletedProcess:
        name = f"shipyard-test-lamp-{uuid.uuid4().hex[:8]}"
        names.append(name)
        options = []
        for arg in args:
            if arg.startswith("volume:"):
                volume, _, target = arg.removeprefix("volume:").partition(":")
                volumes.append(f"{name}-{volume}")
                options += ["--volume", f"{name}-{volume}:{target}"]
            else:
                options.append(arg)
        if detach:
            docker("run", "--detach", "--name", name, *options, IMAGE, *command)
            return name
        return docker("run", "--name", name, *options, IMAGE, *command, check=False, timeout=120)

    yield run
    for name in names:
        docker("rm", "--force", "--volumes", name, check=False)
    for volume in volumes:
        docker("volume", "rm", "--force", volume, check=False)


def test_services_run_as_their_own_users(host: Host, instance: str) -> None:
    tini = host.process.get(pid=1)
    assert (tini.comm, tini.user) == ("tini", "root")
    (supervisor,) = host.process.filter(comm="shipyard-init", ppid=1)
    assert supervisor.user == "root"

    (mariadb,) = host.process.filter(comm="mariadbd")
    assert (mariadb.user, mariadb.ppid) == ("mysql", supervisor.pid)

    (fpm_master,) = host.process.filter(comm="php-fpm", ppid=supervisor.pid)
    assert fpm_master.user == "root"
    fpm_workers = host.process.filter(comm="php-fpm", ppid=fpm_master.pid)
    assert fpm_workers
    assert {w.user for w in fpm_workers} == {"www-data"}

    (apache,) = host.process.filter(comm="apache2", ppid=supervisor.pid)
    assert apache.user == "root"
    apache_children = host.process.filter(comm="apache2", ppid=apache.pid)
    assert apache_children
    assert {c.user for c in apache_children} == {"www-data"}


def test_services_hold_no_password(instance: str, env: dict[str, str]) -> None:
    """Read each process's environment on the host: its pids come from `docker top`."""
    passwords = {name: env[name] for name in ("MARIADB_ROOT_PASSWORD", "MARIADB_PASSWORD")}
    # Nor does any log: docker logs, MariaDB's, PHP's and Apache's files.
    assert_no_secret_logged(instance, passwords)
    secrets = [value.encode() for value in passwords.values()]
    holders: dict[str, bool] = {}
    for line in docker("top", instance, "-eo", "pid,comm").stdout.splitlines()[1:]:
        pid, comm = line.split(None, 1)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except PermissionError:
            pytest.fail("reading another process's environment needs root on the Docker host")
        except FileNotFoundError:
            continue  # a process that has just exited
        holds = any(secret in environ for secret in secrets)
        holders[comm.strip()] = holders.get(comm.strip(), False) or holds
    # tini and the supervisor hold what Docker gave the container (the first
    # run needed it); no service it starts does.
    assert {"mariadbd", "php-fpm", "apache2", "shipyard-logs", "shipyard-log-ro"} <= set(holders)
    assert {comm for comm, holds in holders.items() if holds} == {"tini", "shipyard-init"}


def test_php_page_reads_the_row_over_http(instance: str) -> None:
    body, headers = http_get(instance, PAGE)
    assert body.strip() == EXPECTED_ROW
    assert headers["Server"] == "Apache"
    assert "X-Powered-By" not in headers


def test_healthcheck_follows_the_supervisor(host: Host, instance: str) -> None:
    assert host.check_output("shipyard-init status") == "ready"
    # Docker's first check comes one 30 s interval after the start.
    wait_healthy(instance, timeout=120)
    health = inspect(IMAGE)["Config"]["Healthcheck"]
    assert health["Test"] == ["CMD", "/usr/bin/test", "-e", "/run/shipyard/ready"]


def test_app_user_reaches_only_its_database(instance: str, env: dict[str, str]) -> None:
    user, password = env["MARIADB_USER"], env["MARIADB_PASSWORD"]
    assert sql(instance, "SHOW DATABASES", user=user, password=password).split() == [
        env["MARIADB_DATABASE"],
        "information_schema",
    ]
    database = env["MARIADB_DATABASE"]
    own = sql(
        instance, "SELECT body FROM greetings", user=user, password=password, database=database
    )
    assert own.strip() == EXPECTED_ROW
    assert sql(instance, "SELECT body FROM other.secrets").strip() == "not for the app user"
    with pytest.raises(PermissionError, match="denied"):
        sql(instance, "SELECT body FROM other.secrets", user=user, password=password)


def test_root_logs_in_over_the_socket_only(host: Host, instance: str, env: dict[str, str]) -> None:
    assert sql(instance, "SELECT CURRENT_USER()").strip() == "root@localhost"
    hosts = sql(instance, "SELECT host FROM mysql.global_priv WHERE user = 'root'").split()
    assert hosts == ["localhost"]
    with pytest.raises(PermissionError, match=r"Access denied for user 'root'@'127\.0\.0\.1'"):
        sql(instance, "SELECT 1", user="root", password=env["MARIADB_ROOT_PASSWORD"])
    # Other OS users need the password on the socket too.
    as_www = host.run("su -s /bin/sh www-data -c %s", "mariadb --user=root --execute='SELECT 1'")
    assert as_www.rc != 0
    assert "Access denied" in as_www.stderr


def test_image_holds_no_secret_and_no_database() -> None:
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE).stdout
    config = inspect(IMAGE)["Config"]
    assert "PASSWORD=" not in history
    assert not [e for e in config["Env"] if e.startswith("MARIADB_")]
    datadir = docker("run", "--rm", "--entrypoint", "ls", IMAGE, "-A", "/var/lib/mysql").stdout
    assert datadir == ""


def test_start_without_password_fails_and_names_the_variables(run_container: RunContainer) -> None:
    proc = run_container("--env", "MARIADB_DATABASE=app", detach=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    for variable in PASSWORD_VARIABLES:
        assert variable in output
    assert "no default password" in output


def test_odd_names_and_init_files(run_container: RunContainer, tmp_path: Path) -> None:
    database, user, password = "we`ird; db", "o'brien\\", "p'w\"$`x\\"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "root").write_text("root pw from a file\n")
    initdb = tmp_path / "initdb"
    initdb.mkdir()
    (initdb / "10-table.sql").write_text("CREATE TABLE seeded (id INT PRIMARY KEY);\n")
    with gzip.open(initdb / "20-row.sql.gz", "wt") as dump:
        dump.write("INSERT INTO seeded VALUES (1);\n")
    sourced = "docker_process_sql <<<'INSERT INTO seeded VALUES (2);'\n"
    (initdb / "30-sourced.sh").write_text(sourced)
    executed = initdb / "40-executed.sh"
    executed.write_text(
        '#!/bin/bash\nmariadb --protocol=socket -e "CREATE DATABASE exec_ran_as_$(id -un)"\n'
    )
    executed.chmod(0o755)
    name = run_container(
        "--env",
        "MARIADB_ROOT_PASSWORD_FILE=/run/secrets/root",
        "--env",
        f"MARIADB_DATABASE={database}",
        "--env",
        f"MARIADB_USER={user}",
        "--env",
        f"MARIADB_PASSWORD={password}",
        "--volume",
        f"{secrets}:/run/secrets:ro",
        "--volume",
        f"{initdb}:/docker-entrypoint-initdb.d:ro",
    )
    wait_ready(name)
    quoted = "`" + database.replace("`", "``") + "`"
    seeded = f"SELECT id FROM {quoted}.seeded ORDER BY id"  # noqa: S608 - a quoted identifier
    databases = sql(name, "SHOW DATABASES").splitlines()
    assert database in databases
    # As in the official image, the scripts run as the database's OS user.
    assert "exec_ran_as_mysql" in databases
    assert sql(name, seeded).split() == ["1", "2"]
    assert sql(name, "SELECT CURRENT_USER()", user=user, password=password).strip() == (f"{user}@%")
    # The root password came from the file: root with it over the socket, as another OS user.
    as_www = docker(
        "exec",
        "--user",
        "www-data",
        "--env",
        "MYSQL_PWD=root pw from a file",
        name,
        "mariadb",
        "--protocol=socket",
        "--user=root",
        "--execute=SELECT 1",
        check=False,
    )
    assert as_www.returncode == 0, as_www.stderr

    docker("restart", name)
    wait_ready(name)
    assert sql(name, seeded).split() == ["1", "2"]
    started = inspect(name)["State"]["StartedAt"]
    assert "skipping the first-run steps" in logs(name, since=started)


def mariadb_log_lines(container: str) -> int:
    return int(docker("exec", container, "wc", "-l", MARIADB_LOG).stdout.split()[0])


def test_stop_is_clean_and_fast_and_data_survives(instance: str) -> None:
    logged = mariadb_log_lines(instance)
    began = time.monotonic()
    docker("stop", instance)
    took = time.monotonic() - began
    assert inspect(instance)["State"]["ExitCode"] == 0
    assert took < 5.0, f"docker stop took {took:.1f} s"

    docker("start", instance)
    wait_ready(instance)
    body, _ = http_get(instance, PAGE)
    assert body.strip() == EXPECTED_ROW
    restart_log = logs(instance, since=inspect(instance)["State"]["StartedAt"])
    assert "Database already initialized" in restart_log
    # The server itself logs to its file, which the log agent ships.
    server_log = docker("exec", instance, "tail", "-n", f"+{logged + 1}", MARIADB_LOG).stdout
    assert "ready for connections" in server_log
    for sign in UNCLEAN_SIGNS:
        assert sign not in server_log


# ---------------------------------------------------- the official images' conventions


def run_once(*args: str) -> subprocess.CompletedProcess:
    """`docker run --rm IMAGE ARGS`: a command that is not the server."""
    return docker("run", "--rm", IMAGE, *args, check=False, timeout=120)


def site(tmp_path: Path, user: str, password: str, database: str, host: str = "127.0.0.1") -> Path:
    """A document root whose index.php logs in to MariaDB at HOST over TCP as USER."""
    root = tmp_path / "html"
    root.mkdir(mode=0o755)
    encoded = [base64.b64encode(v.encode()).decode() for v in (user, password, database)]
    (root / "index.php").write_text(
        "<?php\n"
        "mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);\n"
        f"$db = new mysqli('{host}', base64_decode('{encoded[0]}'),"
        f" base64_decode('{encoded[1]}'), base64_decode('{encoded[2]}'));\n"
        "echo $db->query('SELECT CURRENT_USER()')->fetch_row()[0], \"\\n\";\n"
    )
    (root / "index.php").chmod(0o644)
    return root


def error_log_since(container: str, lines: int) -> str:
    return docker("exec", container, "tail", "-n", f"+{lines + 1}", MARIADB_LOG).stdout


def assert_stops_cleanly_and_starts_again(container: str) -> None:
    logged = mariadb_log_lines(container)
    began = time.monotonic()
    docker("stop", container)
    assert inspect(container)["State"]["ExitCode"] == 0, logs(container)[-3000:]
    assert time.monotonic() - began < 10
    docker("start", container)
    wait_ready(container)
    server_log = error_log_since(container, logged)
    assert "ready for connections" in server_log
    assert not [sign for sign in UNCLEAN_SIGNS if sign in server_log]
    assert "Database already initialized" in logs(
        container, since=inspect(container)["State"]["StartedAt"]
    )


def test_a_command_that_is_not_the_server_runs_without_the_supervisor() -> None:
    hello = run_once("bash", "-c", "echo hi; ps -o comm= -p 1")
    assert hello.returncode == 0, hello.stderr
    # tini is PID 1 and bash its child: no shipyard-init in between.
    assert hello.stdout.split() == ["hi", "tini"]
    assert "shipyard-init" not in hello.stderr
    client = run_once("mariadb", "--version")
    assert client.returncode == 0, client.stderr
    assert "11.8" in client.stdout
    server = run_once("mariadbd", "--version")
    assert (server.returncode, server.stdout.split()[:1]) == (0, ["mariadbd"])
    assert run_once("false").returncode == 1


def test_compose_style_mysql_environment_flags_and_root_over_tcp(
    run_container: RunContainer,
) -> None:
    """A compose file written for mysql or mariadb, `command: --log-bin=... --server-id=...`."""
    root, password = f"root-{uuid.uuid4().hex}", f"app-{uuid.uuid4().hex}"
    name = run_container(
        *("--env", f"MYSQL_ROOT_PASSWORD={root}", "--env", "MYSQL_DATABASE=shop"),
        *("--env", "MYSQL_USER=shop", "--env", f"MYSQL_PASSWORD={password}"),
        *("--env", "MARIADB_ROOT_HOST=%"),
        command=("--log-bin=binlog", "--server-id=7"),
    )
    wait_ready(name)
    assert sql(name, "SHOW DATABASES", user="shop", password=password).split() == [
        "information_schema",
        "shop",
    ]
    # Root over TCP, as MARIADB_ROOT_HOST asked; and the flags reached the server.
    query = "SELECT @@log_bin, @@server_id, @@log_bin_basename"
    settings = sql(name, query, user="root", password=root)
    assert settings.split() == ["1", "7", "/var/lib/mysql/binlog"]
    hosts = sql(name, "SELECT host FROM mysql.global_priv WHERE user = 'root' ORDER BY host")
    assert hosts.split() == ["%", "localhost"]
    with pytest.raises(PermissionError, match="Access denied"):
        sql(name, "SELECT 1", user="root", password="not-the-password")  # noqa: S106
    assert_no_secret_logged(name, {"MYSQL_ROOT_PASSWORD": root, "MYSQL_PASSWORD": password})


def test_arbitrary_uid_on_an_empty_volume(run_container: RunContainer, tmp_path: Path) -> None:
    password = f"app-{uuid.uuid4().hex}"
    name = run_container(
        *("--user", "12345:0", "--env", "MARIADB_ROOT_PASSWORD=uid-root-Secret-10"),
        *("--env", "MARIADB_DATABASE=app", "--env", "MARIADB_USER=app"),
        *("--env", f"MARIADB_PASSWORD={password}", "volume:data:/var/lib/mysql"),
        "--volume",
        f"{site(tmp_path, 'app', password, 'app')}:/var/www/html:ro",
        command=("mariadbd", "--log-bin=uidlog"),
    )
    wait_ready(name)
    rows = docker("top", name, "-eo", "pid,uid").stdout.splitlines()[1:]
    uids = {row.split()[1] for row in rows}
    assert uids == {"12345"}
    assert http_get(name, "/")[0].strip() == "app@%"
    assert sql(name, "SELECT @@log_bin", user="app", password=password).strip() == "1"
    # The uid is named mysql for logins by socket credentials.
    socket_login = docker("exec", name, "mariadb", "--user=mysql", "-e", "SELECT CURRENT_USER()")
    assert "mysql@localhost" in socket_login.stdout
    assert_stops_cleanly_and_starts_again(name)
    assert http_get(name, "/")[0].strip() == "app@%"

    # Without MARIADB_AUTO_UPGRADE, an older data directory is only reported.
    docker("exec", name, "sh", "-c", "echo 10.11.6-MariaDB > /var/lib/mysql/mariadb_upgrade_info")
    docker("restart", name)
    wait_ready(name)
    assert "set MARIADB_AUTO_UPGRADE=1" in logs(name, since=inspect(name)["State"]["StartedAt"])
    info = docker("exec", name, "cat", "/var/lib/mysql/mariadb_upgrade_info").stdout
    assert info.strip() == "10.11.6-MariaDB"


def test_read_only_root_with_tmpfs_run_and_tmp(run_container: RunContainer, tmp_path: Path) -> None:
    password = f"app-{uuid.uuid4().hex}"
    name = run_container(
        *("--read-only", "--tmpfs", "/run", "--tmpfs", "/tmp"),  # noqa: S108
        *("--env", "MARIADB_ROOT_PASSWORD=ro-root-Secret-12", "--env", "MARIADB_DATABASE=app"),
        *("--env", "MARIADB_USER=app", "--env", f"MARIADB_PASSWORD={password}"),
        *("--env", "MARIADB_AUTO_UPGRADE=1", "volume:data:/var/lib/mysql"),
        "--volume",
        f"{site(tmp_path, 'app', password, 'app')}:/var/www/html:ro",
    )
    wait_ready(name)
    assert http_get(name, "/")[0].strip() == "app@%"
    # The services log to their files (a volume) for the agent, which runs on.
    access = docker("exec", name, "cat", "/var/log/apache2/access.log").stdout
    assert '"GET / HTTP/1.1" 200' in access
    assert "log-agent" in docker("exec", name, "ps", "-eo", "user=").stdout
    assert_stops_cleanly_and_starts_again(name)

    # MARIADB_AUTO_UPGRADE: a data directory an older server upgraded last.
    docker("exec", name, "sh", "-c", "echo 10.11.6-MariaDB > /var/lib/mysql/mariadb_upgrade_info")
    docker("restart", name)
    wait_ready(name)
    started = logs(name, since=inspect(name)["State"]["StartedAt"])
    assert "Upgrading the data directory from MariaDB 10.11.6-MariaDB" in started
    assert "Running mariadb-upgrade" in started
    info = docker("exec", name, "cat", "/var/lib/mysql/mariadb_upgrade_info").stdout
    assert info.startswith("11.8.")
    backup = "/var/lib/mysql/system_mysql_backup_10.11.6-MariaDB.sql.gz"
    dump = docker("exec", name, "sh", "-c", f"gunzip -c {backup} | grep -c 'INSERT INTO'")
    assert int(dump.stdout) > 0
    assert http_get(name, "/")[0].strip() == "app@%"


@pytest.mark.parametrize(
    ("tmpfs", "named"),
    [((), "/run/php is not writable"), (("--tmpfs", "/run"), "/tmp is not writable")],  # noqa: S108
    ids=["no-tmpfs", "no-tmp"],
)
def test_read_only_root_without_the_tmpfs_names_the_path(
    run_container: RunContainer, tmpfs: tuple[str, ...], named: str
) -> None:
    proc = run_container(
        "--read-only",
        *tmpfs,
        "--env",
        "MARIADB_ROOT_PASSWORD=x",
        "volume:data:/var/lib/mysql",
        detach=False,
    )
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert named in output
    assert "Mount a volume or a tmpfs there" in output


def test_a_bad_server_flag_fails_with_the_servers_message(run_container: RunContainer) -> None:
    # MariaDB says why in its error log; the first run repeats it in docker logs.
    proc = run_container(
        "--env", "MARIADB_ROOT_PASSWORD=x", command=("--no-such-option=1",), detach=False
    )
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert "unknown variable 'no-such-option=1'" in output
    assert "mariadb-install-db failed" in output


def test_mariadb_dying_stops_the_container_with_its_status(run_container: RunContainer) -> None:
    name = run_container("--env", f"MARIADB_ROOT_PASSWORD=root-{uuid.uuid4().hex}")
    wait_ready(name)
    docker("exec", name, "sh", "-c", "kill -KILL $(cat /run/mysqld/mysqld.pid)")
    assert wait_exited(name) == 137
    output = logs(name)
    assert "critical service mariadb was killed by SIGKILL" in output
    # The others were stopped in reverse order, each with its own signal.
    assert output.index("stopping apache") < output.index("stopping php-fpm")


# ---------------------------------------------------- modes


def commands(container: str) -> set[str]:
    rows = docker("top", container, "-eo", "pid,comm").stdout.splitlines()[1:]
    return {row.split(None, 1)[1].strip() for row in rows if row.strip()}


def test_the_web_and_db_modes_split_the_stack_over_two_containers(
    run_container: RunContainer, tmp_path: Path
) -> None:
    password = f"app-{uuid.uuid4().hex}"
    db = run_container(
        *("--env", "SHIPYARD_INIT_PROFILES=db", "--env", f"MARIADB_ROOT_PASSWORD=r-{password}"),
        *("--env", "MARIADB_DATABASE=shop", "--env", "MARIADB_USER=shop"),
        *("--env", f"MARIADB_PASSWORD={password}"),
    )
    wait_ready(db)
    assert supervised(db) == [
        "prepare",
        "backup-prepare",
        "mariadb-init",
        "log-agent",
        "mariadb",
        "log-rotate",
        "backup",
    ]
    assert "mariadbd" in commands(db)
    assert not {"apache2", "php-fpm8.4", "php-fpm"} & commands(db)

    # No MariaDB variable at all: the web mode reads no password.
    web = run_container(
        "--env",
        "SHIPYARD_INIT_PROFILES=web",
        "--volume",
        f"{site(tmp_path, 'shop', password, 'shop', host=address(db))}:/var/www/html:ro",
    )
    wait_ready(web)
    assert supervised(web) == ["prepare", "log-agent", "php-fpm", "apache", "log-rotate"]
    assert "mariadbd" not in commands(web)
    assert http_get(web, "/")[0].strip() == "shop@%"
    assert "apache2" in commands(web)
    began = time.monotonic()
    docker("stop", web)
    assert inspect(web)["State"]["ExitCode"] == 0, logs(web)[-3000:]
    assert time.monotonic() - began < 10


def test_an_unknown_mode_stops_the_start_naming_it(run_container: RunContainer) -> None:
    name = run_container("--env", "SHIPYARD_INIT_PROFILES=wbe")
    assert wait_exited(name) == 78
    assert "SHIPYARD_INIT_PROFILES: unknown profile 'wbe'" in logs(name)
