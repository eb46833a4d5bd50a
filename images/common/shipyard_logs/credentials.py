"""Secrets in configurations: given inline, or read once from a file named by `<key>_file`.

Files are how the images take secrets (Docker secrets, `*_FILE`); an inline
value is for the environment or a file of mode 0600. Errors name the key and
the file, never the value.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from .config import ConfigError


def read_secret_file(name: str, where: str) -> str:
    """The file's text without surrounding whitespace; where names the key, e.g. agent.x_file."""
    try:
        value = Path(name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {name}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: {name} is not UTF-8 text") from exc
    if not value:
        raise ConfigError(f"{where}: {name} is empty")
    return value


def secret(values: MutableMapping[str, Any], key: str, where: str) -> str:
    """values[key], or the contents of values[key + '_file'] (removed from values)."""
    file_key = f"{key}_file"
    name = values.pop(file_key, "")
    if not name:
        return str(values[key])
    if values[key]:
        raise ConfigError(f"{where}: give {key} or {file_key}, not both")
    return read_secret_file(str(name), f"{where}.{file_key}")
