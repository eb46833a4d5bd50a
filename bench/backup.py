"""Backup and restore of both databases, against pg_dump | gzip and mariadb-dump | gzip.

For each size (GB, --sizes, default 1 and 5): a pgbench database and a
generated MariaDB table set, each backed up in full to the S3 image and
restored into a new container (measured until the supervisor reports it
ready), then the naive baseline of the same run: a dump piped through gzip
into the same bucket, and restored through gunzip into a fresh server. Then
the RPO: rows committed every 0.2 s, the server killed with SIGKILL (at a
random moment, and at the worst one: just before its next segment switch),
the latest backup and archive restored, and the gap between the last commit
and the last row restored measured, with archive_timeout = 60. Backup CPU is
the container's CPU time (cgroup v2 cpu.stat, or v1 cpuacct.usage) over the
backup's wall time, the server's own work included.

    .venv/bin/python bench/backup.py [--sizes 1,5] [--keep]

Not part of `make test`; run it on a quiet machine (nothing building).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import sh

ROOT = Path(__file__).resolve().parent.parent
NETWORK = "shipyard-bench-backup"
S3, PG, LAMP = (f"shipyard-bench-backup-{n}" for n in ("s3", "pg", "lamp"))
ARCHIVE_TIMEOUT = 60
GOALS = {"restore_1gb": 60.0, "rpo": 60.0, "cpu": 1.0}
PGBENCH_SCALE_PER_GB = 68  # pgbench_accounts ~ 15 MB per scale unit


def docker(*args: str, check: bool = True, timeout: float = 7200) -> str:
    return sh("docker", *args, check=check, timeout=timeout).stdout


def setup(state: Path) -> None:
    inventory = {
        "all": {
            "children": {
                "docker_hosts": {
                    "hosts": {
                        "bench": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            "backup_state_dir": str(state),
                            "backup_test_network": NETWORK,
                            "backup_s3_container": S3,
                            "backup_postgresql_container": PG,
                            "backup_mariadb_container": LAMP,
                            "backup_archive_timeout": ARCHIVE_TIMEOUT,
                            "backup_schedule": {"full": "0 1 1 1 *", "differential": "off"},
                        }
                    }
                }
            }
        }
    }
    path = state / "inventory.json"
    state.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(inventory))
    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-i",
            str(path),
            # The scenario's own layout: its network, then its containers.
            str(ROOT / "molecule" / "backup" / "create.yml"),
            str(ROOT / "molecule" / "backup" / "converge.yml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=1800,
        env={
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "PATH": f"{bin_dir}:/usr/bin:/bin",
        },
    )
    if proc.returncode != 0:
        sys.exit(f"setting up the containers failed:\n{proc.stdout[-4000:]}")


def teardown() -> None:
    for name in (S3, PG, LAMP, f"{PG}-r", f"{LAMP}-r", f"{PG}-base", f"{LAMP}-base"):
        docker("rm", "-f", "-v", name, check=False)
    for volume in (f"{PG}-data", f"{LAMP}-data"):
        docker("volume", "rm", volume, check=False)
    docker("network", "rm", NETWORK, check=False)


def cpu_seconds(container: str) -> float:
    """The container's CPU time: cgroup v2's cpu.stat, else v1's cpuacct.usage."""
    text = docker("exec", container, "cat", "/sys/fs/cgroup/cpu.stat", check=False)
    for line in text.splitlines():
        if line.startswith("usage_usec"):
            return int(line.split()[1]) / 1e6
    text = docker("exec", container, "cat", "/sys/fs/cgroup/cpuacct/cpuacct.usage", check=False)
    if text.strip().isdigit():
        return int(text) / 1e9
    sys.exit(f"no CPU accounting in {container}: neither cgroup v2 cpu.stat nor v1 cpuacct.usage")


def wait_ready(container: str, timeout: float = 7200) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if sh("docker", "exec", container, "shipyard-init", "status", check=False).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    sys.exit(f"{container} not ready after {timeout} s")


def spec(container: str) -> tuple[list[str], list[str], str]:
    info = json.loads(docker("inspect", container))[0]
    env = [e for e in info["Config"]["Env"] if not e.startswith("PATH=")]
    binds = [f"{m['Source']}:{m['Destination']}:ro" for m in info["Mounts"] if m["Type"] == "bind"]
    return env, binds, info["Config"]["Image"]


def run_like(container: str, name: str, extra_env: list[str]) -> None:
    env, binds, image = spec(container)
    with tempfile.NamedTemporaryFile("w", delete=False) as handle:
        handle.write("\n".join(env + extra_env) + "\n")
    docker("rm", "-f", "-v", name, check=False)
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        NETWORK,
        "--env-file",
        handle.name,
        *[a for b in binds for a in ("-v", b)],
        image,
    )


def psql(sql: str, container: str = PG) -> str:
    return docker(
        "exec",
        "-u",
        "postgres",
        container,
        "psql",
        "-U",
        "shipyard",
        "-d",
        "shipyard",
        "-Atqc",
        sql,
    ).strip()


def maria(sql: str, container: str = LAMP) -> str:
    return docker("exec", container, "mariadb", "app", "-Ne", sql).strip()


def fill(gb: float) -> tuple[int, int]:
    scale = max(1, round(gb * PGBENCH_SCALE_PER_GB))
    docker(
        "exec",
        "-u",
        "postgres",
        PG,
        "pgbench",
        "-i",
        "-q",
        "-s",
        str(scale),
        "-U",
        "shipyard",
        "shipyard",
    )
    docker("exec", LAMP, "mariadb", "-e", "CREATE DATABASE IF NOT EXISTS app")
    rows = int(gb * 1024 * 1024 * 1024 / 250 / 8)
    for table in range(8):
        maria(
            f"CREATE OR REPLACE TABLE t{table} (id BIGINT PRIMARY KEY, a CHAR(36), b VARCHAR(200),"
            " n DOUBLE) ENGINE=InnoDB"
        )
        maria(
            f"INSERT INTO t{table} SELECT seq, UUID(), REPEAT(MD5(seq), 1 + seq % 6), RAND()"  # noqa: S608
            f" FROM seq_1_to_{rows}"
        )
    pg_bytes = int(psql("SELECT pg_database_size('shipyard')"))
    maria_bytes = int(
        maria(
            "SELECT SUM(data_length + index_length) FROM information_schema.tables"
            " WHERE table_schema = 'app'"
        )
    )
    return pg_bytes, maria_bytes


def stored(container: str) -> int:
    listing = json.loads(docker("exec", container, "shipyard-backup", "list"))
    return int(listing["backups"][-1]["stored"])


def measure_backup(container: str) -> dict[str, float]:
    cpu, started = cpu_seconds(container), time.monotonic()
    docker("exec", container, "shipyard-backup", "backup", "--type", "full")
    wall = time.monotonic() - started
    return {
        "backup_s": wall,
        "cpu": (cpu_seconds(container) - cpu) / wall,
        "stored": stored(container),
    }


def measure_restore(container: str) -> float:
    name = f"{container}-r"
    started = time.monotonic()
    run_like(
        container, name, ["SHIPYARD_BACKUP_MODE=restore-only", "SHIPYARD_BACKUP_RESTORE=latest"]
    )
    wait_ready(name)
    took = time.monotonic() - started
    docker("rm", "-f", "-v", name)
    return took


UPLOAD = (
    "import sys; sys.path.insert(0, '/usr/local/lib/shipyard')\n"
    "from shipyard_backup.config import load\nfrom shipyard_backup.s3 import Bucket\n"
    "b = Bucket(load())\n"
    "s = b.put_stream(b.key('naive', sys.argv[1]), sys.stdin.buffer)\nprint(s.size)\n"
)
DOWNLOAD = (
    "import sys; sys.path.insert(0, '/usr/local/lib/shipyard')\n"
    "from shipyard_backup.config import load\nfrom shipyard_backup.s3 import Bucket\n"
    "b = Bucket(load())\n"
    "for c in b.chunks(b.key('naive', sys.argv[1])): sys.stdout.buffer.write(c)\n"
)


def naive(engine: str) -> dict[str, float]:
    """dump | gzip | S3 (through the LAMP container's boto3), then S3 | gunzip | a new server."""
    dump = (
        f"docker exec -u postgres {PG} pg_dump -U shipyard shipyard"
        if engine == "pg"
        else f"docker exec {LAMP} mariadb-dump --single-transaction app"
    )
    started = time.monotonic()
    size = subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f'{dump} | gzip -6 | docker exec -i {LAMP} python3 -c "$UPLOAD" {engine}.sql.gz',
        ],
        capture_output=True,
        text=True,
        env={"UPLOAD": UPLOAD, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=7200,
    )
    backup_s = time.monotonic() - started
    base = f"{PG if engine == 'pg' else LAMP}-base"
    env = (
        ["POSTGRES_PASSWORD=bench-only-Secret-1", "POSTGRES_USER=shipyard"]
        if engine == "pg"
        else ["MARIADB_ROOT_PASSWORD=bench-only-Secret-1", "MARIADB_DATABASE=app"]
    )
    image = "shipyard/postgresql:17" if engine == "pg" else "shipyard/lamp:latest"
    docker("rm", "-f", "-v", base, check=False)
    with tempfile.NamedTemporaryFile("w", delete=False) as handle:
        handle.write("\n".join(env) + "\n")
    docker("run", "-d", "--name", base, "--network", NETWORK, "--env-file", handle.name, image)
    wait_ready(base)
    load = (
        f"docker exec -i -u postgres {base} psql -q -U shipyard -d shipyard"
        if engine == "pg"
        else f"docker exec -i {base} mariadb app"
    )
    started = time.monotonic()
    subprocess.run(
        [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f'docker exec {LAMP} python3 -c "$DOWNLOAD" {engine}.sql.gz | gunzip | {load}',
        ],
        capture_output=True,
        env={"DOWNLOAD": DOWNLOAD, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=7200,
    )
    restore_s = time.monotonic() - started
    docker("rm", "-f", "-v", base)
    return {"backup_s": backup_s, "restore_s": restore_s, "stored": int(size.stdout.strip())}


def current_segment(container: str) -> str:
    """The WAL segment or binary log the server writes now: it changes when archiving switches."""
    if container == PG:
        return psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
    return maria("SHOW BINARY LOGS").splitlines()[-1].split()[0]


def rpo(container: str, worst: bool) -> float:
    """Commits lost by a kill -9, then a restore of latest into a new container.

    At a random moment (`worst` false: 2.5 archive timeouts in), or at the
    worst one: a second and a half before the server switches to the next
    segment, which it does every archive_timeout less the 5 s upload margin.
    """
    is_pg = container == PG
    if is_pg:
        psql("CREATE TABLE IF NOT EXISTS ticks (id serial PRIMARY KEY, at timestamptz NOT NULL)")
    else:
        maria(
            "CREATE TABLE IF NOT EXISTS ticks (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))"
        )
    docker("exec", container, "shipyard-backup", "backup", "--type", "full")
    last: list[float] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            stamp = time.time()
            sql = (
                f"INSERT INTO ticks (at) VALUES (to_timestamp({stamp}))"  # noqa: S608 (a float)
                if is_pg
                else f"INSERT INTO ticks (at) VALUES (FROM_UNIXTIME({stamp}))"  # noqa: S608
            )
            argv = (
                [
                    "docker",
                    "exec",
                    "-u",
                    "postgres",
                    PG,
                    "psql",
                    "-U",
                    "shipyard",
                    "-d",
                    "shipyard",
                    "-qc",
                    sql,
                ]
                if is_pg
                else ["docker", "exec", LAMP, "mariadb", "app", "-e", sql]
            )
            if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
                last.append(stamp)
            time.sleep(0.2)

    writer = threading.Thread(target=write)
    writer.start()
    if worst:
        # Wait for a switch, then kill just before the next one is due.
        first = current_segment(container)
        deadline = time.monotonic() + ARCHIVE_TIMEOUT * 3
        while current_segment(container) == first:
            if time.monotonic() > deadline:
                sys.exit(f"{container} did not switch its segment within {ARCHIVE_TIMEOUT * 3} s")
            time.sleep(0.2)
        time.sleep(ARCHIVE_TIMEOUT - min(5, ARCHIVE_TIMEOUT // 4) - 1.5)
    else:
        time.sleep(ARCHIVE_TIMEOUT * 2.5)
    docker("kill", "-s", "KILL", container)
    stop.set()
    writer.join()
    name = f"{container}-r"
    run_like(
        container, name, ["SHIPYARD_BACKUP_MODE=restore-only", "SHIPYARD_BACKUP_RESTORE=latest"]
    )
    wait_ready(name)
    restored = float(
        psql("SELECT extract(epoch FROM max(at)) FROM ticks", name)
        if is_pg
        else maria("SELECT UNIX_TIMESTAMP(max(at)) FROM ticks", name)
    )
    docker("rm", "-f", "-v", name)
    docker("start", container)
    wait_ready(container)
    return max(last) - restored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,5", help="database sizes in GB, comma-separated")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    rows = []
    teardown()
    with tempfile.TemporaryDirectory() as state:
        try:
            setup(Path(state))
            wait_ready(PG)
            wait_ready(LAMP)
            for gb in sizes:
                pg_bytes, maria_bytes = fill(gb)
                for engine, container, size in (
                    ("postgresql", PG, pg_bytes),
                    ("mariadb", LAMP, maria_bytes),
                ):
                    ours = measure_backup(container)
                    ours["restore_s"] = measure_restore(container)
                    base = naive("pg" if engine == "postgresql" else "maria")
                    rows.append((gb, engine, size, ours, base))
            rpos = {
                (engine, worst): rpo(container, worst)
                for engine, container in (("postgresql", PG), ("mariadb", LAMP))
                for worst in (False, True)
            }
        finally:
            if not args.keep:
                teardown()
    print(
        f"{'size':>5} {'engine':<10} {'data MB':>8} {'backup s':>9} {'restore s':>10} "
        f"{'stored MB':>10} {'MB/s restore':>12} {'backup CPU':>10} | {'naive backup s':>14} "
        f"{'naive restore s':>15} {'naive MB':>8} {'restore ratio':>13}"
    )
    for gb, engine, size, ours, base in rows:
        print(
            f"{gb:>4g}G {engine:<10} {size / 1e6:>8.0f} {ours['backup_s']:>9.1f} "
            f"{ours['restore_s']:>10.1f} {ours['stored'] / 1e6:>10.1f} "
            f"{size / 1e6 / ours['restore_s']:>12.1f} {ours['cpu']:>10.2f} | "
            f"{base['backup_s']:>14.1f} {base['restore_s']:>15.1f} {base['stored'] / 1e6:>8.1f} "
            f"{base['restore_s'] / ours['restore_s']:>12.2f}x"
        )
    print()
    for (engine, worst), seconds in rpos.items():
        when = "just before a segment switch" if worst else "at a random moment"
        print(
            f"RPO after kill -9 {when}, {engine}: {seconds:.1f} s"
            f" (archive_timeout {ARCHIVE_TIMEOUT})"
        )
    print()
    one = [r for r in rows if r[0] == 1]
    if one:
        worst = max(r[3]["restore_s"] for r in one)
        print(
            f"goal restore of 1 GB <= 60 s: {worst:.1f} s, "
            f"{'met' if worst <= GOALS['restore_1gb'] else 'NOT met'}"
        )
    else:
        print("goal restore of 1 GB <= 60 s: not measured (no 1 GB size in --sizes)")
    worst_rpo = max(rpos.values())
    print(
        f"goal RPO <= 60 s: {worst_rpo:.1f} s, {'met' if worst_rpo <= GOALS['rpo'] else 'NOT met'}"
    )
    worst_cpu = max(r[3]["cpu"] for r in rows)
    print(
        f"goal backup CPU <= 1 core: {worst_cpu:.2f}, "
        f"{'met' if worst_cpu <= GOALS['cpu'] else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
