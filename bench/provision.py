#!/usr/bin/env python3
"""Database provisioning: the provision roles against a naive loop.

For each engine, in fresh containers of shipyard/postgresql:17 and
shipyard/lamp:latest, over the community.docker.docker connection:
  role first     postgresql_provision / mariadb_provision creating COUNT users
                 and COUNT databases, each user granted on its own database
  role again     the same run once more, which changes nothing
  naive first    the same COUNT + COUNT with one module call per item
                 (postgresql_user, postgresql_db, postgresql_privs;
                 mysql_db, mysql_user with priv), on other names
  naive again    the naive playbook once more
Each figure is the wall time of the whole ansible-playbook run, start-up
included; "ratio" is naive / role. The containers are removed at the end.

Usage: bench/provision.py [--count 100] [--engines postgresql,mariadb]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchlib import sh

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / ".venv/bin/ansible-playbook"
# The superuser password of the throwaway containers, given as a file (*_FILE),
# never as a value in their environment.
SUPERUSER_FILE = "/run/secrets/superuser"
ENGINES = {
    "postgresql": {
        "image": "shipyard/postgresql:17",
        "env": ["-e", f"POSTGRES_PASSWORD_FILE={SUPERUSER_FILE}", "-e", "POSTGRES_USER=shipyard"],
        "user": "postgres",
    },
    "mariadb": {
        "image": "shipyard/lamp:latest",
        "env": ["-e", f"MARIADB_ROOT_PASSWORD_FILE={SUPERUSER_FILE}"],
        "user": "root",
    },
}

ROLE_PLAY = """- name: Provision with the role
  hosts: all
  gather_facts: false
  roles:
    - role: {role}
"""

NAIVE_PG = """- name: Provision one item per task
  hosts: all
  gather_facts: false
  module_defaults:
    group/community.postgresql.all:
      login_unix_socket: /run/postgresql
      login_user: shipyard
  tasks:
    - name: Create the users
      community.postgresql.postgresql_user:
        name: "{{ item.name }}"
        password: "{{ item.password }}"
      loop: "{{ naive_users }}"
      no_log: true
    - name: Create the databases
      community.postgresql.postgresql_db:
        name: "{{ item.name }}"
        owner: shipyard
      loop: "{{ naive_databases }}"
    - name: Grant the privileges
      community.postgresql.postgresql_privs:
        db: postgres
        type: database
        obj: "{{ item.db }}"
        privs: ALL
        roles: "{{ item.name }}"
      loop: "{{ naive_users }}"
      no_log: true
"""

NAIVE_MARIADB = """- name: Provision one item per task
  hosts: all
  gather_facts: false
  tasks:
    - name: Create the databases
      community.mysql.mysql_db:
        name: "{{ item.name }}"
        login_unix_socket: /run/mysqld/mysqld.sock
        login_user: root
      loop: "{{ naive_databases }}"
    - name: Create the users with their grants
      community.mysql.mysql_user:
        name: "{{ item.name }}"
        host: "%"
        password: "{{ item.password }}"
        priv: "{{ item.db }}.*:ALL"
        login_unix_socket: /run/mysqld/mysqld.sock
        login_user: root
      loop: "{{ naive_users }}"
      no_log: true
"""


def start(engine: str, workdir: Path) -> str:
    spec = ENGINES[engine]
    name = f"shipyard-bench-{engine}-{uuid.uuid4().hex[:6]}"
    secret = workdir / f"superuser-{engine}"
    secret.write_text(f"bench-{uuid.uuid4().hex}")
    secret.chmod(0o444)  # the PostgreSQL image reads it as postgres
    volume = ["-v", f"{secret}:{SUPERUSER_FILE}:ro"]
    sh("docker", "run", "-d", "--name", name, *spec["env"], *volume, spec["image"])
    deadline = time.monotonic() + 180
    while (
        sh("docker", "exec", name, "/usr/local/bin/shipyard-init", "status", check=False).returncode
        != 0
    ):
        if time.monotonic() > deadline:
            sys.exit(f"{name} not ready after 180 s")
        time.sleep(1)
    return name


def items(prefix: str, count: int) -> tuple[list[dict], list[dict]]:
    users = [
        {
            "name": f"{prefix}_user_{i:03d}",
            "password": f"bench-{uuid.uuid4().hex}",
            "db": f"{prefix}_db_{i:03d}",
        }
        for i in range(count)
    ]
    return users, [{"name": u["db"]} for u in users]


def run(
    label: str, workdir: Path, container: str, user: str, play: str, extra: dict
) -> tuple[float, str]:
    playbook = workdir / f"play-{uuid.uuid4().hex[:6]}.yml"
    playbook.write_text("---\n" + play)
    varsfile = workdir / f"vars-{uuid.uuid4().hex[:6]}.json"
    varsfile.write_text(json.dumps(extra))
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles")
    )
    cmd = [
        str(PLAYBOOK),
        "-i",
        f"{container},",
        "-c",
        "community.docker.docker",
        "-u",
        user,
        "-e",
        "ansible_python_interpreter=/usr/bin/python3",
        "-e",
        f"@{varsfile}",
        str(playbook),
    ]
    began = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600, check=False)
    elapsed = time.monotonic() - began
    if proc.returncode != 0:
        sys.exit(f"ansible-playbook failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    recap = [line for line in proc.stdout.splitlines() if "changed=" in line]
    changed = recap[-1].split("changed=")[1].split()[0] if recap else "?"
    print(f"  {label}: {elapsed:.1f} s, changed={changed}", file=sys.stderr, flush=True)
    return elapsed, changed


def bench(engine: str, count: int, workdir: Path) -> dict:
    container = start(engine, workdir)
    user = ENGINES[engine]["user"]
    try:
        # The image has the driver; db_clients would only check it.
        users, databases = items("role", count)
        if engine == "postgresql":
            role = "postgresql_provision"
            extra = {
                "postgresql_provision_login_user": "shipyard",
                "postgresql_provision_users": users,
                "postgresql_provision_databases": databases,
            }
        else:
            role = "mariadb_provision"
            extra = {"mariadb_provision_users": users, "mariadb_provision_databases": databases}
        play = ROLE_PLAY.format(role=role)
        result = {"engine": engine}
        result["role first"] = run(f"{engine} role first", workdir, container, user, play, extra)
        result["role again"] = run(f"{engine} role again", workdir, container, user, play, extra)
        users, databases = items("naive", count)
        naive = NAIVE_PG if engine == "postgresql" else NAIVE_MARIADB
        extra = {"naive_users": users, "naive_databases": databases}
        result["naive first"] = run(f"{engine} naive first", workdir, container, user, naive, extra)
        result["naive again"] = run(f"{engine} naive again", workdir, container, user, naive, extra)
        return result
    finally:
        sh("docker", "rm", "-f", container, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--count", type=int, default=100, help="users and databases per engine (100)"
    )
    parser.add_argument(
        "--engines", default="postgresql,mariadb", help="comma-separated (postgresql,mariadb)"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        for engine in args.engines.split(","):
            results.append(bench(engine, args.count, Path(tmp)))
    count = args.count
    print(f"\n{count} users + {count} databases with grants: seconds [changed tasks]\n")
    print(f"{'engine':<11} {'run':<7} {'role':>13} {'naive loop':>13} {'ratio':>7}")
    for r in results:
        for run_name in ("first", "again"):
            role_s, role_c = r[f"role {run_name}"]
            naive_s, naive_c = r[f"naive {run_name}"]
            print(
                f"{r['engine']:<11} {run_name:<7} {role_s:>7.1f} [{role_c:>3}]"
                f" {naive_s:>7.1f} [{naive_c:>3}] {naive_s / role_s:>6.1f}x"
            )
    print("\ngoal: first run <= 20 s, no-change run <= 10 s (role)")


if __name__ == "__main__":
    main()
