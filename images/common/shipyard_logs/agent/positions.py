"""Position files: where the agent has shipped each watched file up to.

One line per file, as fluentd's in_tail writes its pos_file:
`path<TAB>offset<TAB>inode`, both numbers as 16 hex digits. `Position` keeps
the same order, so the tuple in memory reads like the line on disk. The agent
writes these files; the rotation helper reads them to know what is shipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple


class Position(NamedTuple):
    """A watched file and the offset of its first line not yet committed."""

    path: str
    offset: int
    inode: int


def read_positions(path: Path) -> list[Position]:
    """The lines of a position file; a missing file holds none, a broken line is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        parts = line.rsplit("\t", 2)
        if len(parts) != 3:
            continue
        with contextlib.suppress(ValueError):
            found.append(Position(parts[0], int(parts[1], 16), int(parts[2], 16)))
    return found


def render_positions(positions: Iterable[Position]) -> bytes:
    return "".join(f"{p.path}\t{p.offset:016x}\t{p.inode:016x}\n" for p in positions).encode()
