"""shipyard-backup VERB: the backup service and the steps Ansible runs in the containers.

    start                prepare, then bootstrap: the image's one-shot before the server,
                         every start, in one process
    prepare              write the engine's backup configuration
    bootstrap            on an empty data directory with `restore` set: restore first
    schedule             the supervised service: scheduled backups, archiving, health
    check-settings       try the bucket and the credentials; say which setting is wrong
    backup [--type T]    an on-demand full or differential backup
    list                 the backups, their sizes and the restorable time range
    restore [--at T]     restore into the data directory (the server must be stopped)
    verify-point         a restore point and the check query's result at it
    check                the check query on the running server
    record --backup ID   record a verification's outcome with the backup

Output is JSON on stdout. Exit codes: 0 done, 1 a step failed (the message says
which), 2 a setting is wrong (the message names it), 78 the configuration
does not parse.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import re
import sys
from typing import Any

from . import engine as engines
from .config import ConfigError, Settings, env_name, load
from .engine import Engine
from .runner import RESTORE_MARKER, StepError, limit_cpus, print_json
from .timeparse import parse_target

EX_STEP = 1
EX_SETTING = 2
EX_CONFIG = 78

# pgBackRest's words for a bad setting -> the setting.
PGBACKREST_BLAME = (
    (re.compile(r"InvalidAccessKeyId"), "s3_access_key_id_file"),
    (re.compile(r"SignatureDoesNotMatch"), "s3_secret_access_key_file"),
    (re.compile(r"NoSuchBucket|bucket .* does not exist", re.I), "s3_bucket"),
    (re.compile(r"certificate|TLS|SSL", re.I), "s3_ca_file"),
    (re.compile(r"unable to get address|unable to connect|timeout|refused", re.I), "s3_endpoint"),
    (re.compile(r"cipher|decrypt|encrypt|crypto", re.I), "encryption_key_file"),
    (re.compile(r"AccessDenied|403"), "s3_access_key_id_file"),
)


def blame(settings: Settings, message: str) -> tuple[str, str]:
    """The setting pgBackRest's error points at, and the words that say so."""
    for pattern, key in PGBACKREST_BLAME:
        if match := pattern.search(message):
            return key, match.group(0)
    return "s3_endpoint", ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shipyard-backup", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="settings file (default $SHIPYARD_BACKUP_CONFIG)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name in ("start", "prepare", "bootstrap", "schedule", "check-settings", "list"):
        verbs.add_parser(name)
    backup = verbs.add_parser("backup")
    backup.add_argument("--type", choices=("full", "differential"), default="differential")
    restore = verbs.add_parser("restore")
    restore.add_argument("--at", default="latest", help="latest, or a time with its offset")
    restore.add_argument("--point", help="a verify point's JSON (restores exactly to it)")
    restore.add_argument(
        "--register",
        choices=("auto", "yes", "no"),
        default="auto",
        help="start a new timeline (MariaDB): auto = when archiving",
    )
    for name in ("verify-point", "check"):
        verbs.add_parser(name).add_argument("--query", help="the check query (default: counts)")
    record = verbs.add_parser("record")
    record.add_argument("--backup", required=True)
    record.add_argument("--note", required=True, help="JSON object of strings")
    return parser


def _require(settings: Settings) -> None:
    if not settings.enabled:
        raise ConfigError(f"s3_bucket ({env_name('s3_bucket')}): is not set: backups are off")


def _restore(settings: Settings, engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    _require(settings)
    engine.prepare()
    point = json.loads(args.point) if args.point else None
    if point is not None and settings.engine == "postgresql":
        point = point["point"] if isinstance(point, dict) else point
    elif point is not None:
        point = point.get("point", point)
    register = settings.archiving if args.register == "auto" else args.register == "yes"
    if getattr(args, "mark", False) and settings.engine == "postgresql":
        return engine.restore_marked(parse_target(args.at), point)
    return engine.restore(parse_target(args.at), point, register=register)


# Verbs that need root: they read the mounted secrets and hand files to the
# database's user. Every other one runs as that user, as the server's peer.
ROOT_VERBS = ("start", "prepare", "bootstrap", "restore")
ENGINE_USERS = {"postgresql": "postgres", "mariadb": "mysql"}


def become_engine_user(settings: Settings) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(ENGINE_USERS[settings.engine])
    os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)


def _bootstrap(settings: Settings, engine: Engine, args: argparse.Namespace) -> object:
    """On an empty data directory with `restore` set: the restore, instead of the first run.

    Anything else (a warm start, backups without `restore`) is a check of the
    marker an unfinished restore leaves, and nothing more.
    """
    marker = settings.data_dir / RESTORE_MARKER
    if settings.restore and marker.exists():
        raise StepError(
            f"a restore into {settings.data_dir} did not finish (its log is that start's); "
            "empty the data volume and start again"
        )
    if not settings.restore or not engine.data_dir_empty():
        return None
    logging.getLogger("shipyard-backup").info(
        "the data directory is empty and restore = %s: restoring", settings.restore
    )
    # A verify point (backup_verify) pins the restore exactly; else `restore` is the target.
    args.at, args.register = settings.restore, "auto"
    args.point = os.environ.get("SHIPYARD_BACKUP_RESTORE_POINT") or None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # pgBackRest restores only into an empty directory: it marks its own.
    if settings.engine == "mariadb":
        marker.touch()
    args.mark = True
    result = _restore(settings, engine, args)
    marker.unlink(missing_ok=True)
    return result


def dispatch(settings: Settings, args: argparse.Namespace) -> object:
    engine = engines.for_settings(settings)
    verb = args.verb
    if verb not in ROOT_VERBS:
        become_engine_user(settings)
    if verb in ("start", "prepare"):
        engine.prepare()
    if verb == "prepare":
        return None
    if verb in ("start", "bootstrap"):
        return _bootstrap(settings, engine, args)
    if verb == "schedule":
        from .scheduler import Scheduler

        sys.exit(Scheduler(settings).run())
    _require(settings)
    if verb == "check-settings":
        settings.secret("s3_access_key_id_file")
        settings.secret("s3_secret_access_key_file")
        if settings.encryption != "none":
            settings.secret("encryption_key_file")
        try:
            engine.check_settings()
        except StepError as exc:
            if settings.engine == "postgresql":
                # S3's code first: pgBackRest's message quotes the whole
                # request and response, so a shortened one would lose it.
                key, word = blame(settings, str(exc))
                reason = f"{word}: {exc}" if word else str(exc)
            else:
                key, reason = _maria_key(exc), str(exc)
            raise ConfigError(f"{key} ({env_name(key)}): {reason}") from None
        return {"ok": True}
    if verb == "backup":
        # On demand (`make backup`) within the same CPU budget as on schedule.
        limit_cpus(settings.cpus)
        return engine.backup(args.type)
    if verb == "list":
        return engine.listing()
    if verb == "restore":
        return _restore(settings, engine, args)
    if verb == "verify-point":
        return engine.verify_point(args.query)
    if verb == "check":
        return engine.check(args.query)
    if verb == "record":
        note = json.loads(args.note)
        engine.record(args.backup, {str(k): str(v) for k, v in note.items()})
        return None
    raise AssertionError(verb)


def _maria_key(exc: StepError) -> str:
    text = str(exc)
    match = re.search(r"\b(s3_[a-z_]+|encryption_key_file)\b", text)
    return match.group(1) if match else "s3_endpoint"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        settings = load(args.config, os.environ)
    except ConfigError as exc:
        print(f"shipyard-backup: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        result = dispatch(settings, args)
    except ConfigError as exc:
        print(f"shipyard-backup: {exc}", file=sys.stderr)
        return EX_SETTING
    except StepError as exc:
        print(f"shipyard-backup: {exc}", file=sys.stderr)
        return EX_STEP
    if result is not None:
        print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
