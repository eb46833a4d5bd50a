"""What the provision scenario's tests share: the containers, their secrets,
one role run against a container, and the servers' statement logs.

The secrets are the files secrets.yml generated for this run; a test that
needs one of its own asks new_secret(), which remembers it for the scan at
the end (test_secrets.py). Every role run keeps its output in the scenario's
Ansible logs, and its captured output in RUNS, for the same scan.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

PG = "shipyard-molecule-provision-pg"
LAMP = "shipyard-molecule-provision-lamp"
PG_LOGIN = "shipyard"
ODD_USER = 'we\'ird; "user"'
ODD_DB = "app; drop"
SCENARIO = Path(__file__).resolve().parent.parent
PROJECT = SCENARIO.parent.parent
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SECRETS = EPHEMERAL / "secrets"
LOGS = EPHEMERAL / "logs"
PASSWORDS = {
    user: (SECRETS / name).read_text().strip()
    for user, name in [("app", "app"), (ODD_USER, "odd"), ("reader", "reader"), ("gone", "gone")]
}
GENERATED: dict[str, str] = {}  # label -> secret, for the scan
RUNS: list[tuple[str, str]] = []  # (what, output) of every role run


def new_secret(label: str) -> str:
    """A random secret no file or fixture holds, remembered for the scan."""
    secret = f"{label}-{uuid.uuid4().hex}"
    GENERATED[label] = secret
    return secret


def docker(
    *args: str, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def psql(sql: str, user: str = PG_LOGIN) -> subprocess.CompletedProcess:
    """A statement as the superuser over the socket (peer authentication)."""
    host = ["-h", "/run/postgresql", "-U", user, "-d", "postgres"]
    return docker("exec", "-u", "postgres", PG, "psql", "-X", "-qAt", *host, "-c", sql)


def mariadb(sql: str) -> subprocess.CompletedProcess:
    """Statements as root over the socket."""
    return docker("exec", LAMP, "mariadb", "--protocol=socket", "-Nse", sql)


def pg_login(user: str, db: str, password: str | None = None) -> subprocess.CompletedProcess:
    """psql over TCP as user, with its password (the declared one by default)."""
    secret = PASSWORDS[user] if password is None else password
    return docker(
        "exec",
        "-e",
        f"PGPASSWORD={secret}",
        PG,
        "psql",
        "-X",
        "-h",
        "127.0.0.1",
        "-U",
        user,
        "-d",
        db,
        "-Atc",
        "SELECT current_user",
    )


def maria_login(user: str, db: str, password: str | None = None) -> subprocess.CompletedProcess:
    """mariadb over TCP as user, with its password (the declared one by default)."""
    secret = PASSWORDS[user] if password is None else password
    return docker(
        "exec",
        "-e",
        f"MYSQL_PWD={secret}",
        LAMP,
        "mariadb",
        "-h",
        "127.0.0.1",
        "-u",
        user,
        "-D",
        db,
        "-Nse",
        "SELECT current_user()",
    )


def run_role(
    container: str,
    role: str,
    extra: dict[str, object],
    verbose: bool = True,
    tasks_from: str = "main",
) -> subprocess.CompletedProcess:
    """Run one role (or one of its task files) against a molecule container with extra vars."""
    remote_user = "postgres" if container == PG else "root"
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
        ANSIBLE_LOG_PATH=str(LOGS / "ansible.log"),
        SHIPYARD_RESULTS_LOG=str(LOGS / "results.jsonl"),
        # Molecule forces colour; the tests read the plain text.
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
    )
    cmd = [
        str(PROJECT / ".venv/bin/ansible-playbook"),
        *(["-v"] if verbose else []),
        "-i",
        f"{container},",
        "-c",
        "community.docker.docker",
        "-u",
        remote_user,
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        f"provision_test_role={role}",
        "-e",
        f"provision_test_tasks_from={tasks_from}",
        "-e",
        json.dumps(extra),
        str(SCENARIO / "bad_input.yml"),
    ]
    for _attempt in range(3):
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=300, check=False
        )
        # `docker exec` can fail to start under load; that is no answer about the role.
        if "UNREACHABLE!" not in proc.stdout:
            break
        time.sleep(2)
    RUNS.append(
        (f"{role} ({tasks_from}) on {container} with {sorted(extra)}", proc.stdout + proc.stderr)
    )
    return proc


def changed(proc: subprocess.CompletedProcess) -> int:
    """The changed count of the run's one host, from its recap."""
    recap = [line for line in proc.stdout.splitlines() if " changed=" in line]
    assert len(recap) == 1, proc.stdout[-3000:]
    return int(recap[0].split(" changed=")[1].split()[0])


class ServerLog:
    """The lines a server logged since the object was made (its files only grow here)."""

    def __init__(self, container: str, pattern: str) -> None:
        self.container, self.pattern = container, pattern
        self.offsets = self._sizes()

    def _sizes(self) -> dict[str, int]:
        script = f'for f in {self.pattern}; do [ -f "$f" ] && wc -c < "$f" && echo "$f"; done'
        out = docker("exec", self.container, "sh", "-c", script).stdout.split()
        return {out[i + 1]: int(out[i]) for i in range(0, len(out) - 1, 2)}

    def new(self) -> str:
        time.sleep(0.5)  # the PostgreSQL logging collector writes asynchronously
        text = []
        for path in self._sizes():
            start = self.offsets.get(path, 0)
            text.append(docker("exec", self.container, "tail", "-c", f"+{start + 1}", path).stdout)
        return "".join(text)


def postgresql_log() -> ServerLog:
    return ServerLog(PG, "/var/log/postgresql/*.json")


def mariadb_general_log() -> ServerLog:
    return ServerLog(LAMP, "/var/log/mysql/general.log")
