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
  the data is there and MariaDB reports no crash recovery.
"""

from __future__ import annotations

import gzip
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from container_checks import address, docker, inspect, logs, wait_healthy
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
    wait_healthy(name)
    return name


@pytest.fixture(scope="module")
def env(host: Host) -> dict[str, str]:
    return host.environment()


RunContainer = Callable[..., "str | subprocess.CompletedProcess"]


@pytest.fixture
def run_container() -> Iterator[RunContainer]:
    """Start containers of the image; each is removed with its volumes afterwards."""
    names: list[str] = []

    def run(*args: str, detach: bool = True) -> str | subprocess.CompletedProcess:
        name = f"shipyard-test-lamp-{uuid.uuid4().hex[:8]}"
        names.append(name)
        if detach:
            docker("run", "--detach", "--name", name, *args, IMAGE)
            return name
        return docker("run", "--name", name, *args, IMAGE, check=False, timeout=120)

    yield run
    for name in names:
        docker("rm", "--force", "--volumes", name, check=False)


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
    secrets = [env["MARIADB_ROOT_PASSWORD"].encode(), env["MARIADB_PASSWORD"].encode()]
    holders: dict[str, bool] = {}
    for line in docker("top", instance, "-eo", "pid,comm").stdout.splitlines()[1:]:
        pid, comm = line.split(None, 1)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except PermissionError:
            pytest.skip("reading another process's environment needs root on the Docker host")
        except FileNotFoundError:
            continue  # a health check that has finished
        holds = any(secret in environ for secret in secrets)
        holders[comm.strip()] = holders.get(comm.strip(), False) or holds
    # The supervisor has them (the first-run step needs them); the services must not.
    assert holders["shipyard-init"] is True
    assert {name: holders[name] for name in ("mariadbd", "php-fpm", "apache2")} == {
        "mariadbd": False,
        "php-fpm": False,
        "apache2": False,
    }


def test_php_page_reads_the_row_over_http(instance: str) -> None:
    body, headers = http_get(instance, PAGE)
    assert body.strip() == EXPECTED_ROW
    assert headers["Server"] == "Apache"
    assert "X-Powered-By" not in headers


def test_healthcheck_follows_the_supervisor(host: Host, instance: str) -> None:
    assert inspect(instance)["State"]["Health"]["Status"] == "healthy"
    assert host.check_output("shipyard-init status") == "ready"


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
    executed.write_text("#!/bin/bash\nmariadb --protocol=socket -e 'CREATE DATABASE exec_ran'\n")
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
    wait_healthy(name)
    quoted = "`" + database.replace("`", "``") + "`"
    seeded = f"SELECT id FROM {quoted}.seeded ORDER BY id"  # noqa: S608 - a quoted identifier
    databases = sql(name, "SHOW DATABASES").splitlines()
    assert database in databases
    assert "exec_ran" in databases
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
    wait_healthy(name)
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
    wait_healthy(instance)
    body, _ = http_get(instance, PAGE)
    assert body.strip() == EXPECTED_ROW
    restart_log = logs(instance, since=inspect(instance)["State"]["StartedAt"])
    assert "Database already initialized" in restart_log
    # The server itself logs to its file, which the log agent ships.
    server_log = docker("exec", instance, "tail", "-n", f"+{logged + 1}", MARIADB_LOG).stdout
    assert "ready for connections" in server_log
    for sign in UNCLEAN_SIGNS:
        assert sign not in server_log
