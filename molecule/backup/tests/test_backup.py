"""Backups and point-in-time recovery, end to end, against the real images.

The tests run in file order and share the scenario's containers: each leaves
them serving. Restores go through the playbooks `make restore` and
`make backup` run; faults are real (SIGKILL, a deleted volume, a cut network,
a flipped byte in the bucket).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import secret_scan
from container_checks import address, docker, inspect, logs

SCENARIO = Path(__file__).resolve().parent.parent
PROJECT = SCENARIO.parent.parent
STATE = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "state"
NETWORK = "shipyard-molecule-backup"
S3 = "shipyard-molecule-backup-s3"
PG = "shipyard-molecule-backup-pg"
LAMP = "shipyard-molecule-backup-lamp"
ARCHIVE_TIMEOUT = 10
# What the images' HEALTHCHECK tests: present while every service is ready and well.
READY_MARKER = "/run/shipyard/ready"
CHECK_INTERVAL = 5
HOST_VARS = {
    "backup_state_dir": str(STATE),
    "backup_s3_container": S3,
    "backup_postgresql_container": PG,
    "backup_mariadb_container": LAMP,
    "backup_archive_timeout": ARCHIVE_TIMEOUT,
    "backup_check_interval": CHECK_INTERVAL,
}


# ------------------------------------------------------------------ helpers


# The secrets the scenario's containers get, as files (converge.yml).
SECRET_NAMES = (
    "backup-encryption-key",
    "backup-s3-access-key-id",
    "backup-s3-secret-access-key",
    "postgresql-superuser",
    "mariadb-root",
)


def secret(name: str) -> str:
    return (STATE / "secrets" / name).read_text().strip()


def secrets() -> list[str]:
    return [secret(n) for n in SECRET_NAMES]


# What every playbook run printed, for the secret scan at the end.
OUTPUTS: list[tuple[str, str]] = []


def playbook(name: str, **extra: object) -> subprocess.CompletedProcess[str]:
    """Run a playbook; whatever it does, no secret may appear in its output."""
    run = _playbook(name, **extra)
    OUTPUTS.append((Path(name).name, run.stdout + run.stderr))
    for secret in secrets():
        assert secret not in run.stdout + run.stderr, f"a secret is in the output of {name}"
    return run


def _playbook(name: str, **extra: object) -> subprocess.CompletedProcess[str]:
    inventory = {
        "all": {
            "children": {
                "docker_hosts": {
                    "hosts": {
                        "backup_host": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            **HOST_VARS,
                        }
                    }
                }
            }
        }
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(inventory, handle)
    env = os.environ | {
        "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
    }
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            handle.name,
            str(PROJECT / "playbooks" / name) if "/" not in name else name,
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
        cwd=PROJECT,
    )


def psql(sql: str, db: str = "shipyard", container: str = PG) -> str:
    proc = docker(
        "exec", "-u", "postgres", container, "psql", "-U", "shipyard", "-d", db, "-Atqc", sql
    )
    return proc.stdout.strip()


def maria(sql: str, container: str = LAMP) -> str:
    return docker("exec", container, "mariadb", "app", "-Ne", sql).stdout.strip()


def status(container: str) -> tuple[int, str]:
    proc = docker("exec", container, "shipyard-init", "status", check=False)
    return proc.returncode, proc.stdout.strip()


def has_ready_marker(container: str) -> bool:
    return docker("exec", container, "test", "-e", READY_MARKER, check=False).returncode == 0


def wait_status(container: str, want: int, timeout: float, contains: str = "") -> str:
    deadline = time.monotonic() + timeout
    while True:
        code, text = status(container)
        if code == want and contains in text:
            return text
        if time.monotonic() > deadline:
            pytest.fail(
                f"{container}: status stayed {code} {text!r} for {timeout:g} s\n"
                f"{logs(container)[-3000:]}"
            )
        time.sleep(1)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def flush_archives() -> None:
    """Close the current WAL segment and binary log, and wait until both are in S3."""
    psql("SELECT pg_switch_wal()")
    maria("FLUSH BINARY LOGS")
    time.sleep(ARCHIVE_TIMEOUT)


def in_lamp_python(code: str) -> str:
    """Run Python in the LAMP container with the repository's bucket as `bucket`."""
    prelude = (
        "import sys; sys.path.insert(0, '/usr/local/lib/shipyard')\n"
        "from shipyard_backup.config import load\nfrom shipyard_backup.s3 import Bucket\n"
        "bucket = Bucket(load()); s3 = bucket.client; name = bucket.name\n"
    )
    return docker("exec", LAMP, "python3", "-c", prelude + code).stdout


def recreate_with_restore(container: str) -> None:
    """Run a container again from its own spec, restoring `latest` into its empty volume."""
    spec = inspect(container)
    env = [e for e in spec["Config"]["Env"] if not e.startswith("PATH=")]
    env.append("SHIPYARD_BACKUP_RESTORE=latest")
    mounts = [
        f"{m['Name'] if m['Type'] == 'volume' else m['Source']}:{m['Destination']}"
        for m in spec["Mounts"]
        if m["Type"] in ("bind", "volume") and (m["Type"] == "bind" or m["Name"].endswith("-data"))
    ]
    data = next(
        m["Name"] for m in spec["Mounts"] if m["Type"] == "volume" and m["Name"].endswith("-data")
    )
    docker("rm", "-f", container)
    docker("volume", "rm", data)
    with tempfile.NamedTemporaryFile("w", delete=False) as handle:
        handle.write("\n".join(env) + "\n")
    docker(
        "run",
        "-d",
        "--name",
        container,
        "--network",
        NETWORK,
        "--env-file",
        handle.name,
        *[arg for m in mounts for arg in ("-v", m)],
        spec["Config"]["Image"],
    )


# ------------------------------------------------------------------ settings


def test_a_missing_credential_file_fails_naming_the_variable() -> None:
    run = playbook(
        str(SCENARIO / "converge.yml"), backup_s3_access_key_id_file="/nonexistent/key-id"
    )
    assert run.returncode != 0
    assert "backup_s3_access_key_id_file: /nonexistent/key-id does not exist" in run.stdout, (
        run.stdout[-3000:]
    )


def test_wrong_credentials_fail_early_naming_the_variable(tmp_path: Path) -> None:
    wrong = tmp_path / "secret"
    wrong.write_text("not-the-secret\n")
    wrong.chmod(0o644)
    spec = inspect(PG)
    env = [e for e in spec["Config"]["Env"] if not e.startswith("PATH=")]
    binds = [
        f"{m['Source']}:{m['Destination']}:ro"
        for m in spec["Mounts"]
        if m["Type"] == "bind" and not m["Destination"].endswith("s3-secret-access-key")
    ]
    binds.append(f"{wrong}:/run/secrets/shipyard-backup/s3-secret-access-key:ro")
    name = f"{PG}-wrong"
    env_file = tmp_path / "env"
    env_file.write_text("\n".join(env) + "\n")
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        NETWORK,
        "--env-file",
        str(env_file),
        *[a for b in binds for a in ("-v", b)],
        spec["Config"]["Image"],
    )
    try:
        wait_status(name, 1, 120, "degraded")
        run = playbook(
            str(SCENARIO / "main.yml"),
            backup_postgresql_container=name,
            backup_engines=["postgresql"],
        )
        assert run.returncode != 0
        assert "backup_s3_secret_access_key_file (postgresql, " in run.stdout, run.stdout[-3000:]
        assert "SignatureDoesNotMatch" in run.stdout
        assert "not-the-secret" not in run.stdout + logs(name)
    finally:
        docker("rm", "-f", "-v", name, check=False)


# ------------------------------------------------------------------ point in time


def test_restore_to_a_point_in_time_brings_back_exactly_its_rows() -> None:
    psql(
        "CREATE TABLE pitr (id int PRIMARY KEY); CREATE TABLE doomed (id int);"
        "INSERT INTO pitr SELECT generate_series(1, 500); INSERT INTO doomed VALUES (1)"
    )
    maria(
        "CREATE TABLE pitr (id int PRIMARY KEY); CREATE TABLE doomed (id int);"
        "INSERT INTO pitr SELECT seq FROM seq_1_to_500; INSERT INTO doomed VALUES (1)"
    )
    time.sleep(2)
    t1 = utc_now()
    time.sleep(2)
    psql("INSERT INTO pitr SELECT generate_series(501, 800); DROP TABLE doomed")
    maria("INSERT INTO pitr SELECT seq FROM seq_501_to_800; DROP TABLE doomed")
    flush_archives()
    for engine in ("postgresql", "mariadb"):
        run = playbook("restore.yml", backup_engines=[engine], backup_restore_at=t1)
        assert run.returncode == 0, run.stdout[-4000:]
    assert psql("SELECT count(*), max(id) FROM pitr") == "500|500"
    assert psql("SELECT count(*) FROM doomed") == "1"
    assert maria("SELECT count(*), max(id) FROM pitr") == "500\t500"
    assert maria("SELECT count(*) FROM doomed") == "1"
    # Writable and archived again, on the new timeline.
    psql("INSERT INTO pitr VALUES (501)")
    maria("INSERT INTO pitr VALUES (501)")
    wait_status(PG, 0, 120)
    wait_status(LAMP, 0, 120)


# ------------------------------------------------------------------ encryption


def test_the_repository_is_unreadable_without_the_key() -> None:
    marker = "plaintext-marker-7c1f"
    psql(f"CREATE TABLE secret_rows AS SELECT '{marker}'::text AS v FROM generate_series(1, 50)")  # noqa: S608
    maria(f"CREATE TABLE secret_rows AS SELECT '{marker}' AS v FROM seq_1_to_50")  # noqa: S608
    docker("exec", PG, "shipyard-backup", "backup", "--type", "full")
    docker("exec", LAMP, "shipyard-backup", "backup", "--type", "full")
    flush_archives()
    found = in_lamp_python(
        f"marker = b'{marker}'\nhits, keys = [], 0\n"
        "for page in s3.get_paginator('list_objects_v2').paginate(Bucket=name):\n"
        "    for o in page.get('Contents', []):\n"
        "        body = s3.get_object(Bucket=name, Key=o['Key'])['Body'].read()\n"
        "        keys += 1\n"
        "        if marker in body: hits.append(o['Key'])\n"
        "        if '/mariadb/' in o['Key'] and o['Key'].endswith('.enc'):\n"
        "            assert body.startswith(b'Salted__'), o['Key']\n"
        "print(keys, hits)\n"
    )
    count, hits = found.split(" ", 1)
    assert int(count) > 10 and hits.strip() == "[]", found
    # pgBackRest without the key cannot even read the backup list.
    # Its answer quotes the undecryptable bytes: read it as bytes, not text.
    no_key = subprocess.run(
        [
            "docker",
            "exec",
            "-u",
            "postgres",
            PG,
            "sh",
            "-c",
            "grep -v cipher /run/postgresql/shipyard-backup/pgbackrest.conf > /tmp/nokey.conf"
            " && pgbackrest --config=/tmp/nokey.conf --stanza=main info",
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )
    answer = no_key.stdout + no_key.stderr
    assert no_key.returncode != 0 or b"status: error" in answer, answer[-2000:]
    assert b"full backup:" not in answer, "pgBackRest listed backups without the key"
    # openssl with another key cannot decrypt a MariaDB stream.
    wrong = in_lamp_python(
        "import subprocess\n"
        "key = next(o['Key'] for o in s3.list_objects_v2(Bucket=name)['Contents']"
        " if o['Key'].endswith('data.mbstream.zst.enc'))\n"
        "body = s3.get_object(Bucket=name, Key=key)['Body'].read()\n"
        "p = subprocess.run(['openssl', 'enc', '-d', '-aes-256-cbc', '-pbkdf2', '-iter', '100000',"
        " '-pass', 'pass:wrong-key'], input=body, capture_output=True)\n"
        "print(p.returncode)\n"
    )
    assert wrong.strip() != "0"
    key = secret("backup-encryption-key")
    for container in (PG, LAMP, S3):
        assert key not in logs(container), f"the repository key is in {container}'s log"


# ------------------------------------------------------------------ crashes


def _kill_server_once_running(container: str, tool: str, timeout: float = 120) -> None:
    """Start a full backup and SIGKILL the server as soon as the backup's tool runs.

    The watch polls inside the container every 20 ms: a small database's
    backup can be over before a `docker exec` from outside looks twice. The
    tool's pattern starts with a bracket expression, so the watch's own
    command line, which holds the pattern, never matches it.
    """
    until_running = f'until pgrep -f "{tool}" >/dev/null; do sleep 0.02; done'
    watch = subprocess.Popen(
        ["docker", "exec", container, "sh", "-c", f"{until_running}; {KILL_SERVER[container]}"]
    )
    time.sleep(1)  # the watch is polling before the backup starts
    backup = subprocess.Popen(
        ["docker", "exec", container, "shipyard-backup", "backup", "--type", "full"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        watch.wait(timeout)
    except subprocess.TimeoutExpired:
        watch.kill()
        backup.kill()
        said = backup.communicate()[0]
        pytest.fail(f"{tool} never ran in {container}; the backup said:\n{said}")
    # It fails with its server gone; what it says is not under test here.
    backup.communicate()


# SIGKILL to the server's main process: the postmaster's pid is the first
# line of postmaster.pid; mariadbd is the one process of its name.
KILL_SERVER = {
    PG: 'kill -KILL "$(head -n 1 "$PGDATA/postmaster.pid")"',
    LAMP: "pkill -KILL -x mariadbd",
}


@pytest.mark.parametrize(
    ("container", "tool"),
    [(PG, "[p]gbackrest .*--type=[a-z]+ backup"), (LAMP, "[m]ariadb-backup --backup")],
)
def test_a_server_killed_during_a_backup_costs_nothing(container: str, tool: str) -> None:
    before = utc_now()
    time.sleep(1)
    _kill_server_once_running(container, tool)
    # The supervisor stops the container when its critical server dies.
    deadline = time.monotonic() + 60
    while inspect(container)["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.5)
    docker("start", container)
    wait_status(container, 0, 300)
    engine = "postgresql" if container == PG else "mariadb"
    run = playbook("backup.yml", backup_engines=[engine], backup_type="full")
    assert run.returncode == 0, run.stdout[-4000:]
    assert "restored and matches the source" in run.stdout
    # The backups from before the crash still restore (to a time they cover).
    run = playbook(
        "restore.yml",
        backup_engines=[engine],
        backup_restore_at=before,
        backup_restore_target="new",
    )
    assert run.returncode == 0, run.stdout[-4000:]
    docker("rm", "-f", "-v", f"{container}-restored")


# ------------------------------------------------------------------ lost volume


@pytest.mark.parametrize("container", [PG, LAMP])
def test_a_lost_data_volume_costs_at_most_archive_timeout(container: str) -> None:
    is_pg = container == PG
    if is_pg:
        psql("CREATE TABLE ticks (id serial PRIMARY KEY, at timestamptz NOT NULL)")
    else:
        maria("CREATE TABLE ticks (id int AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL)")
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
            ok = (
                docker(
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
                    check=False,
                )
                if is_pg
                else docker("exec", LAMP, "mariadb", "app", "-e", sql, check=False)
            )
            if ok.returncode == 0:
                last.append(stamp)
            time.sleep(0.2)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(ARCHIVE_TIMEOUT * 3)
    docker("kill", "-s", "KILL", container)
    stop.set()
    writer.join()
    recreate_with_restore(container)
    wait_status(container, 0, 600)
    restored = float(
        psql("SELECT extract(epoch FROM max(at)) FROM ticks")
        if is_pg
        else maria("SELECT UNIX_TIMESTAMP(max(at)) FROM ticks")
    )
    lost = max(last) - restored
    assert lost <= ARCHIVE_TIMEOUT, f"lost {lost:.1f} s of commits, more than archive_timeout"


# ------------------------------------------------------------------ S3 outage


def _wait_until_gone(container: str, pattern: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while docker("exec", container, "pgrep", "-f", pattern, check=False).returncode == 0:
        if time.monotonic() > deadline:
            pytest.fail(f"{pattern} still runs in {container} after {timeout:g} s")
        time.sleep(1)


def test_unreachable_s3_shows_in_health_while_the_databases_serve() -> None:
    wait_status(PG, 0, 300)
    wait_status(LAMP, 0, 300)
    # A restored data directory takes its first full backup at once; a backup
    # the outage cut off would rightly stay in health until its retry.
    _wait_until_gone(PG, "pgbackrest .*--type=[a-z]+ backup")
    _wait_until_gone(LAMP, "mariadb-backup --backup")
    docker("network", "disconnect", NETWORK, S3)
    try:
        started = time.monotonic()
        for container in (PG, LAMP):
            text = wait_status(container, 1, 2 * CHECK_INTERVAL + 30, "S3 does not answer")
            assert "backup (degraded" in text
        # One interval to the next check, one for its probe to give up; the
        # rest is docker exec on a loaded machine.
        assert time.monotonic() - started <= 2 * CHECK_INTERVAL + 30
        # The HEALTHCHECK tests the supervisor's ready marker: it goes as well,
        # at the supervisor's next reading of the health file (every second).
        for container in (PG, LAMP):
            deadline = time.monotonic() + 10
            while has_ready_marker(container):
                assert time.monotonic() < deadline, f"{container} still has its ready marker"
                time.sleep(0.5)
        psql("INSERT INTO pitr VALUES (9001)")
        maria("INSERT INTO pitr VALUES (9001)")
        assert psql("SELECT count(*) FROM pitr WHERE id = 9001") == "1"
        assert maria("SELECT count(*) FROM pitr WHERE id = 9001") == "1"
        # A segment and a binary log that cannot be archived: health names the
        # archive, and the log says so (WAL stays in pg_wal, bounded by
        # archive_queue_max, rather than stopping the server).
        psql("SELECT pg_switch_wal()")
        maria("FLUSH BINARY LOGS")
        # The push gives up after 20 s of silence (io-timeout), then the next check sees it.
        wait_status(PG, 1, 180, "WAL archiving fails since")
        wait_status(LAMP, 1, 180, "binary log archiving fails")
        assert "backups are degraded: " in logs(PG) and "WAL archiving fails" in logs(PG)
        assert "binary log archiving fails" in logs(LAMP)
    finally:
        docker("network", "connect", "--alias", "s3", NETWORK, S3)
    wait_status(PG, 0, 120)
    wait_status(LAMP, 0, 120)


# ------------------------------------------------------------------ corruption


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_verify_catches_a_corrupted_backup_object(engine: str) -> None:
    container = PG if engine == "postgresql" else LAMP
    full = json.loads(
        docker("exec", container, "shipyard-backup", "backup", "--type", "full").stdout
    )
    label = full["id"]
    where = (
        f"backups/postgresql/backup/main/{label}/"
        if engine == "postgresql"
        else f"backups/mariadb/backups/{label}/"
    )
    # The largest data object of the full backup every later restore starts from.
    flipped = in_lamp_python(
        f"objs = [o for p in s3.get_paginator('list_objects_v2').paginate(Bucket=name,"
        f" Prefix='{where}') for o in p.get('Contents', [])]\n"
        "objs = [o for o in objs if 'manifest' not in o['Key']]\n"
        "o = max(objs, key=lambda o: o['Size'])\n"
        "body = bytearray(s3.get_object(Bucket=name, Key=o['Key'])['Body'].read())\n"
        "open('/tmp/original', 'wb').write(body)\n"
        "mid = len(body) // 2\nbody[mid:mid + 16] = bytes(b ^ 0xFF for b in body[mid:mid + 16])\n"
        "s3.put_object(Bucket=name, Key=o['Key'], Body=bytes(body))\nprint(o['Key'])\n"
    ).strip()
    try:
        run = playbook("backup.yml", backup_engines=[engine], backup_type="differential")
        assert run.returncode != 0, f"verify passed with {flipped} corrupted"
        assert "backup_verify: " in run.stdout, run.stdout[-4000:]
    finally:
        restore = "Body=open('/tmp/original', 'rb').read()"
        in_lamp_python(f"s3.put_object(Bucket=name, Key='{flipped}', {restore})\n")


# ------------------------------------------------------------------ secrets


def test_nothing_the_backups_wrote_holds_a_secret() -> None:
    """Every secret the scenario's containers got, grepped for in all they and the runs wrote."""
    scan = secret_scan.Scan()
    for name in SECRET_NAMES:
        scan.secret(name, secret(name))
    # The private keys of the dev CA and of the endpoint, by their base64 body.
    for name in ("backup-ca.key", "backup-s3-tls.key"):
        pem = (STATE / "secrets" / name).read_text().splitlines()
        scan.secret(name, "".join(line for line in pem if not line.startswith("-----")))
    for what, output in OUTPUTS:
        scan.add("playbook runs", secret_scan.text(f"output of {what}", output))
    ansible_log = PROJECT / ".shipyard" / "logs" / "ansible.log"
    if ansible_log.exists():
        scan.add("ansible logs", secret_scan.files(ansible_log))
    containers = [S3, PG, LAMP]
    images = sorted({inspect(c)["Image"] for c in containers})
    scan.add("docker logs", secret_scan.docker_logs(*containers))
    scan.add("docker inspect", secret_scan.docker_inspect(*containers, *images))
    scan.add("docker history", secret_scan.docker_history(*images))
    for c in (PG, LAMP):
        scan.add("container /var/log", secret_scan.container_files(c, "/var/log"))
        scan.add("environ", secret_scan.container_environ(c))
    endpoint = f"http://{address(S3)}:5000"
    keys = secret("backup-s3-access-key-id"), secret("backup-s3-secret-access-key")
    scan.add("s3", secret_scan.s3_objects(endpoint, *keys))
    hits = scan.run()
    assert not hits, secret_scan.report(hits, scan.read)
    for label in ("playbook runs", "docker logs", "container /var/log", "environ", "s3"):
        assert scan.read.get(label, 0) > 0, secret_scan.report(hits, scan.read)
