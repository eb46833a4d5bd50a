"""Backup settings: the image's TOML file, then SHIPYARD_BACKUP_<KEY> variables.

Every value is checked here, where it is read, and an error names the key the
way the user set it (the file key and its environment variable), so a wrong
value fails before anything touches the database or the bucket.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .cron import Cron, CronError

DEFAULT_CONFIG = "/etc/shipyard/backup.toml"
ENV_PREFIX = "SHIPYARD_BACKUP_"
ENGINES = ("postgresql", "mariadb")
MODES = ("archive", "restore-only")
ENCRYPTIONS = ("aes-256-cbc", "none")
URI_STYLES = ("path", "host")
SECRET_KEYS = ("s3_access_key_id_file", "s3_secret_access_key_file", "encryption_key_file")
SIZE_RE = re.compile(r"(\d+)\s*([KMGT]i?B?)?", re.IGNORECASE)
PREFIX_RE = re.compile(r"[A-Za-z0-9!_.*'()/-]*")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

# Key -> default. The type of the default is the type a value must have.
DEFAULTS: dict[str, object] = {
    "engine": "",
    "s3_bucket": "",
    "s3_endpoint": "https://s3.amazonaws.com",
    "s3_region": "us-east-1",
    "s3_prefix": "",
    "s3_uri_style": "path",
    "s3_ca_file": "",
    "s3_access_key_id_file": "",
    "s3_secret_access_key_file": "",
    "encryption": "aes-256-cbc",
    "encryption_key_file": "",
    "schedule_full": "0 1 * * 0",
    "schedule_differential": "0 1 * * 1-6",
    "retention_full": 2,
    "archive_timeout": 60,
    "archive_queue_max": "1GiB",
    "check_interval": 60,
    "cpus": 1,
    "mode": "archive",
    "restore": "",
    "state_dir": "",
    "data_dir": "",
    "socket_dir": "",
    "db_user": "",
}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


def env_name(key: str) -> str:
    return f"{ENV_PREFIX}{key.upper()}"


def _where(key: str) -> str:
    return f"{key} ({env_name(key)})"


def parse_size(key: str, raw: str) -> int:
    match = SIZE_RE.fullmatch(raw.strip())
    if not match:
        raise ConfigError(f"{_where(key)}: expected a size such as 512MiB or 2GiB, got {raw!r}")
    unit = (match.group(2) or "").upper().rstrip("B").rstrip("I")
    return int(match.group(1)) * 1024 ** " KMGT".index(unit or " ")


@dataclass(frozen=True)
class Settings:
    engine: str
    bucket: str
    endpoint: str
    endpoint_host: str
    endpoint_port: int
    region: str
    prefix: str
    uri_style: str
    ca_file: str
    access_key_id_file: str
    secret_access_key_file: str
    encryption: str
    encryption_key_file: str
    schedule_full: Cron
    schedule_differential: Cron | None
    retention_full: int
    archive_timeout: int
    archive_queue_max: int
    check_interval: int
    cpus: int
    mode: str
    restore: str
    state_dir: Path
    data_dir: Path
    socket_dir: Path
    db_user: str
    health_path: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)

    @property
    def archiving(self) -> bool:
        return self.enabled and self.mode == "archive"

    @property
    def health_file(self) -> Path:
        """Where shipyard-init reads the service's health (its health_file setting)."""
        return Path(self.health_path) if self.health_path else self.state_dir / "health.json"

    @property
    def ca_path(self) -> str:
        """The CA file the service's user reads: prepare's copy (the mounted one may be root's)."""
        if not self.ca_file:
            return ""
        copy = self.secret_copy("s3_ca_file")
        return str(copy) if os.access(copy, os.R_OK) else self.ca_file

    def secret_copy(self, key: str) -> Path:
        """A copy prepare leaves for the service's user (the mounted file may be root's)."""
        return self.state_dir / "secrets" / key

    def secret(self, key: str) -> str:
        """The content of a *_file setting (its key, e.g. s3_access_key_id_file), read now."""
        copy = self.secret_copy(key)
        if os.access(copy, os.R_OK):
            return copy.read_text(encoding="utf-8").strip()
        path = {
            "s3_access_key_id_file": self.access_key_id_file,
            "s3_secret_access_key_file": self.secret_access_key_file,
            "encryption_key_file": self.encryption_key_file,
        }[key]
        if not path:
            raise ConfigError(f"{_where(key)}: is not set")
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{_where(key)}: cannot read {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{_where(key)}: {path} is empty")
        return value


def _merge(given: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object]:
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (known: {', '.join(DEFAULTS)})")
    merged: dict[str, object] = {}
    for key, default in DEFAULTS.items():
        value = given.get(key, default)
        raw = env.get(env_name(key))
        if raw is not None:
            if isinstance(default, int):
                if not raw.strip().isdigit():
                    raise ConfigError(f"{_where(key)}: expected a whole number, got {raw!r}")
                value = int(raw)
            else:
                value = raw
        if type(value) is not type(default):
            raise ConfigError(
                f"{_where(key)}: expected {type(default).__name__}, got {type(value).__name__}"
            )
        merged[key] = value
    return merged


def _choice(values: Mapping[str, object], key: str, choices: tuple[str, ...]) -> str:
    value = str(values[key])
    if value not in choices:
        raise ConfigError(f"{_where(key)}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _positive(values: Mapping[str, object], key: str, low: int, high: int) -> int:
    value = int(values[key])  # type: ignore[call-overload]
    if not low <= value <= high:
        raise ConfigError(f"{_where(key)}: expected {low} to {high}, got {value}")
    return value


def _path(values: Mapping[str, object], key: str, *, required: bool = False) -> str:
    value = str(values[key])
    if required and not value:
        raise ConfigError(f"{_where(key)}: is required when s3_bucket is set")
    if value and not value.startswith("/"):
        raise ConfigError(f"{_where(key)}: expected an absolute path, got {value!r}")
    return value


def _cron(values: Mapping[str, object], key: str) -> Cron | None:
    value = str(values[key]).strip()
    if value in ("", "off"):
        return None
    try:
        return Cron.parse(value)
    except CronError as exc:
        raise ConfigError(f"{_where(key)}: {exc}") from None


def _endpoint(values: Mapping[str, object]) -> tuple[str, int]:
    raw = str(values["s3_endpoint"])
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"{_where('s3_endpoint')}: expected https://host[:port] (pgBackRest speaks only TLS "
            f"to S3), got {raw!r}"
        )
    try:
        port = parts.port or 443
    except ValueError:
        raise ConfigError(f"{_where('s3_endpoint')}: bad port in {raw!r}") from None
    return parts.hostname, port


def settings_from(values: Mapping[str, object], env: Mapping[str, str] | None = None) -> Settings:
    env = {} if env is None else env
    engine = _choice(values, "engine", ENGINES)
    bucket = str(values["s3_bucket"])
    if bucket and not BUCKET_RE.fullmatch(bucket):
        raise ConfigError(f"{_where('s3_bucket')}: {bucket!r} is not an S3 bucket name")
    prefix = str(values["s3_prefix"]).strip("/")
    if not PREFIX_RE.fullmatch(prefix) or "//" in prefix or ".." in prefix.split("/"):
        raise ConfigError(f"{_where('s3_prefix')}: {prefix!r} is not a plain key prefix")
    host, port = _endpoint(values)
    encryption = _choice(values, "encryption", ENCRYPTIONS)
    full = _cron(values, "schedule_full")
    if full is None:
        raise ConfigError(f"{_where('schedule_full')}: a full backup schedule is required")
    for key in ("state_dir", "data_dir", "socket_dir"):
        if not values[key]:
            raise ConfigError(f"{_where(key)}: is required (the image's backup.toml sets it)")
    restore = str(values["restore"]).strip()
    if restore:
        from .timeparse import parse_target

        try:
            parse_target(restore)
        except ValueError as exc:
            raise ConfigError(f"{_where('restore')}: {exc}") from None
    return Settings(
        engine=engine,
        bucket=bucket,
        endpoint=str(values["s3_endpoint"]).rstrip("/"),
        endpoint_host=host,
        endpoint_port=port,
        region=str(values["s3_region"]) or "us-east-1",
        prefix=prefix or engine,
        uri_style=_choice(values, "s3_uri_style", URI_STYLES),
        ca_file=_path(values, "s3_ca_file"),
        access_key_id_file=_path(values, "s3_access_key_id_file", required=bool(bucket)),
        secret_access_key_file=_path(values, "s3_secret_access_key_file", required=bool(bucket)),
        encryption=encryption,
        encryption_key_file=_path(
            values, "encryption_key_file", required=bool(bucket) and encryption != "none"
        ),
        schedule_full=full,
        schedule_differential=_cron(values, "schedule_differential"),
        retention_full=_positive(values, "retention_full", 1, 9999999),
        archive_timeout=_positive(values, "archive_timeout", 5, 86400),
        archive_queue_max=parse_size("archive_queue_max", str(values["archive_queue_max"])),
        check_interval=_positive(values, "check_interval", 1, 86400),
        cpus=_positive(values, "cpus", 1, 1024),
        mode=_choice(values, "mode", MODES),
        restore=restore,
        state_dir=Path(str(values["state_dir"])),
        data_dir=Path(str(values["data_dir"])),
        socket_dir=Path(str(values["socket_dir"])),
        # PostgreSQL's superuser is whoever the image created on its first start.
        db_user=str(values["db_user"])
        or (env.get("POSTGRES_USER", "postgres") if engine == "postgresql" else "mysql"),
        health_path=env.get("SHIPYARD_HEALTH_FILE", ""),
    )


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    path = Path(path or env.get("SHIPYARD_BACKUP_CONFIG") or DEFAULT_CONFIG)
    try:
        given = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        given = {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return settings_from(_merge(given, env), env)
