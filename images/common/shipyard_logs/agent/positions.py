"""Position files: where the agent has shipped each watched file up to.

One line per file, as fluentd's in_tail writes its pos_file:
`path<TAB>offset<TAB>inode`, both numbers as 16 hex digits. The agent writes
these files; the rotation helper reads them to know what is shipped.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

Position = tuple[str, int, int]  # path, inode, offset


def read_positions(path: Path) -> list[Position]:
    """fluentd's pos_file lines: `path<TAB>offset(16 hex)<TAB>inode(16 hex)`."""
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
            found.append((parts[0], int(parts[2], 16), int(parts[1], 16)))
    return found


def render_positions(positions: list[Position]) -> bytes:
    return "".join(f"{p}\t{off:016x}\t{ino:016x}\n" for p, ino, off in positions).encode()
