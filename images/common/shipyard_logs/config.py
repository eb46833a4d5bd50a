"""Configuration files (TOML or JSON) and environment overrides, shared by the programs."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


class Rule:
    """A check on a setting's value: None when it holds, else the rule in words."""

    def __call__(self, value: Any) -> str | None:  # noqa: ANN401 - any setting's value
        raise NotImplementedError


@dataclass(frozen=True)
class Between(Rule):
    """A number within [minimum, maximum], and finite."""

    minimum: float
    maximum: float

    def __call__(self, value: Any) -> str | None:  # noqa: ANN401
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            return f"must be between {_number(self.minimum)} and {_number(self.maximum)}"
        return None


@dataclass(frozen=True)
class OneOf(Rule):
    """One of a few words; `fold` compares them case-insensitively."""

    choices: tuple[str, ...]
    fold: bool = False

    def __call__(self, value: Any) -> str | None:  # noqa: ANN401
        given = value.upper() if self.fold else value
        if given not in self.choices:
            *rest, last = self.choices
            return f"must be {', '.join(rest)} or {last}" if rest else f"must be {last}"
        return None


@dataclass(frozen=True)
class Matches(Rule):
    """A string the regex matches as a whole; `what` says the rule in words."""

    regex: str
    what: str
    max_length: int = 255

    def __call__(self, value: Any) -> str | None:  # noqa: ANN401
        if len(value) > self.max_length or not re.fullmatch(self.regex, value):
            return f"must be {self.what}, at most {self.max_length} characters"
        return None


@dataclass(frozen=True)
class Setting:
    """One key of a table: its default, the rule its values follow, and whether it
    holds a secret (then no message ever shows the value, only the key and the rule)."""

    default: Any
    rule: Rule | None = None
    secret: bool = False


# Rules several tables share.
PORT = Between(1, 65535)
LOG_LEVEL = OneOf(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), fold=True)
ABSOLUTE_PATH = Matches(r"/[^\0\n]*", "an absolute path", 4096)
OPTIONAL_PATH = Matches(r"(/[^\0\n]*)?", "empty or an absolute path", 4096)
# A tag becomes part of a file name (the agent's position file, the collector's
# slices are named by host): dot-separated words, as fluentd writes tags, so no
# `/`, no `..`, no leading or trailing dot and nothing a shell would mangle.
TAG = Matches(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", "dot-separated words of A-Za-z0-9_-", 128)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _show(value: object, secret: bool) -> str:
    """A value for an error message: secrets by type only."""
    if not secret:
        return repr(value)
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} (value not shown)"


def coerce(key: str, raw: str, like: object, secret: bool = False) -> object:
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
        shown = "the value given" if secret else repr(raw)
        raise ConfigError(f"{key}: cannot use {shown} as {type(like).__name__}") from exc
    return raw


def merge(
    defaults: Mapping[str, Any],
    given: Mapping[str, Any],
    env_prefix: str,
    where: str,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """defaults <- file values <- PREFIX_KEY environment variables, unknown keys refused.

    A default may be a plain value or a Setting; a Setting's rule is checked on
    the final value, wherever it came from, and the error names the key (and
    the variable, when one set it).
    """
    env = os.environ if env is None else env
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    merged: dict[str, Any] = {}
    for key, spec in defaults.items():
        setting = spec if isinstance(spec, Setting) else Setting(spec)
        default = setting.default
        value = given.get(key, default)
        if default is not None and value is not None and not _same_kind(value, default):
            raise ConfigError(
                f"{where}.{key}: expected {type(default).__name__}, "
                f"got {_show(value, setting.secret)}"
            )
        name = f"{where}.{key}"
        env_key = f"{env_prefix}{key.upper()}"
        if env_key in env:
            like = "" if default is None else default
            value = coerce(env_key, env[env_key], like, setting.secret)
            name = f"{name} (from {env_key})"
        if setting.rule is not None and value is not None:
            broken = setting.rule(value)
            if broken is not None:
                shown = "" if setting.secret else f", not {value!r}"
                raise ConfigError(f"{name} {broken}{shown}")
        merged[key] = value
    return merged


def values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults alone, e.g. for a template or a test."""
    return {k: v.default if isinstance(v, Setting) else v for k, v in settings.items()}


def _same_kind(value: object, default: object) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default)) and not (
        isinstance(value, bool) and not isinstance(default, bool)
    )
