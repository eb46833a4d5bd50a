"""Naming the first bad line of a day's slices, when an engine refuses them.

The engines stop at a corrupt slice with their own wording, which rarely says
which file; this reads the same files the plain way and says where it broke.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

MAX_SHOWN = 120


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:  # type: ignore[operator]
        yield from handle


def first_problem(path: Path) -> str | None:
    """`line N: what is wrong`, or None when every line is a slice line."""
    number = 0
    try:
        for number, raw in enumerate(_lines(path), 1):
            problem = _check(raw)
            if problem:
                shown = raw[:MAX_SHOWN].decode("utf-8", "backslashreplace").rstrip("\n")
                return f"line {number}: {problem}: {shown!r}"
    except (OSError, EOFError, zlib.error) as exc:
        return f"after line {number}: not a readable gzip file ({exc})"
    return None


def _check(raw: bytes) -> str | None:
    if not raw.endswith(b"\n"):
        return "unterminated last line"
    try:
        text = raw[:-1].decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    parts = text.split("\t")
    if len(parts) != 3:
        return f"{len(parts)} tab-separated fields, not 3 (time, tag, json)"
    stamp, tag, record = parts
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return "the time is not ISO 8601"
    if when.tzinfo is None:
        return "the time has no zone"
    if not tag:
        return "empty tag"
    try:
        value = json.loads(record)
    except ValueError:
        return "the record is not JSON"
    if not isinstance(value, dict):
        return "the record is not a JSON object"
    return None


def find(paths: list[tuple[str, Path]]) -> str | None:
    """`name line N: ...` for the first bad file among (name, local path), else None."""
    for name, path in paths:
        problem = first_problem(path)
        if problem:
            return f"{name} {problem}"
    return None
