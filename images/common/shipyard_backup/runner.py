"""Running the tools: as the database's user, on a bounded set of CPUs, with errors that say why."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("shipyard-backup")
# In the data directory while a restore into it is under way: a start that
# finds it refuses to go on with half a database.
RESTORE_MARKER = ".shipyard-restore-incomplete"
# What an error message quotes of a tool's output: enough to see the cause.
TAIL = 1500


class StepError(RuntimeError):
    """A step failed; the message says which and quotes the tool."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def account(name: str) -> Account | None:
    """The account to run as, or None when we already run unprivileged (any uid)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(name)
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def as_user(user: Account | None) -> dict[str, object]:
    if user is None:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


def limit_cpus(count: int) -> None:
    """Keep this process and its children on `count` CPUs (the backup's CPU budget)."""
    with contextlib.suppress(OSError, AttributeError):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) > count:
            os.sched_setaffinity(0, allowed[-count:])


def tail(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return text if len(text) <= TAIL else "..." + text[-TAIL:]


def run(
    argv: Sequence[str],
    *,
    user: Account | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    what: str | None = None,
    stdin: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a failure raises StepError quoting its stderr."""
    environment = dict(os.environ if env is None else env)
    if user is not None:
        environment.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            check=False,
            **as_user(user),  # type: ignore[arg-type]
        )
    except subprocess.TimeoutExpired:
        raise StepError(f"{what or argv[0]}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise StepError(f"{what or argv[0]}: cannot run {argv[0]}: {exc.strerror}") from None
    if check and proc.returncode != 0:
        raise StepError(
            f"{what or argv[0]} failed (exit {proc.returncode}): {tail(proc.stderr or proc.stdout)}"
        )
    return proc


def write_private(path: Path, text: str, owner: Account | None, mode: int = 0o600) -> None:
    """Write a file only its owner can read, replacing any old one whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    tmp.replace(path)


def make_dir(path: Path, owner: Account | None, mode: int = 0o700) -> None:
    """Make a directory for owner; as any other uid than root, for that uid.

    Under an arbitrary uid (docker run --user 12345:0) every service runs as
    that uid, so what it makes is already its own; one it did not make is
    left as the image made it.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        if path.stat().st_uid == os.geteuid():
            path.chmod(mode)
        return
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    path.chmod(mode)


def copy_secrets(settings: Settings, owner: Account | None) -> None:
    """Copies of the secret files and the CA for the service's user, on the state directory.

    The mounted files may be readable by root alone (the dev environment
    mounts every one 0400); the state directory is a tmpfs under /run.
    """
    from .config import SECRET_KEYS, ConfigError, env_name

    make_dir(settings.state_dir / "secrets", owner)
    for key in SECRET_KEYS:
        copy = settings.secret_copy(key)
        copy.unlink(missing_ok=True)
        if key == "encryption_key_file" and settings.encryption == "none":
            continue
        write_private(copy, settings.secret(key) + "\n", owner)
    ca = settings.secret_copy("s3_ca_file")
    ca.unlink(missing_ok=True)
    if settings.ca_file:
        try:
            text = Path(settings.ca_file).read_text(encoding="utf-8")
        except OSError as exc:
            where = f"s3_ca_file ({env_name('s3_ca_file')})"
            raise ConfigError(f"{where}: cannot read {settings.ca_file}: {exc.strerror}") from None
        write_private(ca, text, owner, 0o644)


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, default=str))
