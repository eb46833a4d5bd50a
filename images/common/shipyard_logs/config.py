"""Configuration files (TOML or JSON) and environment overrides, shared by the programs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

EX_CONFIG = 78


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


class _Logged(Protocol):
    log_level: str


C = TypeVar("C", bound=_Logged)


def config_from_cli(
    prog: str,
    description: str,
    env_var: str,
    load: Callable[[str | None], C],
    argv: list[str] | None,
) -> C | int:
    """The programs' shared start: load --config, set up logging, answer --check-config.

    Returns the configuration to run with, or the exit code when there is nothing to run.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help=f"TOML or JSON file (default ${env_var})")
    parser.add_argument("--check-config", action="store_true", help="validate and exit")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EX_CONFIG
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.check_config:
        print("configuration ok")
        return 0
    return config


def load_file(path: str | Path | None) -> dict[str, Any]:
    """Read a .json file as JSON and anything else as TOML; no path means empty."""
    if not path:
        return {}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path} does not parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a table/object at the top")
    return data


def coerce(key: str, raw: str, like: object) -> object:
    """Turn an environment string into the type of the default it overrides."""
    try:
        if isinstance(like, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{key}: cannot use {raw!r} as {type(like).__name__}") from exc
    return raw


def merge(
    defaults: Mapping[str, Any],
    given: Mapping[str, Any],
    env_prefix: str,
    where: str,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """defaults <- file values <- PREFIX_KEY environment variables, unknown keys refused."""
    env = os.environ if env is None else env
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    merged: dict[str, Any] = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        if default is not None and value is not None and not _same_kind(value, default):
            raise ConfigError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
        env_key = f"{env_prefix}{key.upper()}"
        if env_key in env:
            value = coerce(env_key, env[env_key], default if default is not None else "")
        merged[key] = value
    return merged


def _same_kind(value: object, default: object) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default)) and not (
        isinstance(value, bool) and not isinstance(default, bool)
    )
