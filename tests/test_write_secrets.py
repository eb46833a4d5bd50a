"""dev_environment's write_secrets.py: every secret of a start in one run,
0400 for its reader, replaced whole, and no content ever printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

SCRIPT = ROOT / "roles/dev_environment/files/write_secrets.py"


def write(entries: list[dict[str, object]]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)],
        input=json.dumps(entries),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for entry in entries:
        assert str(entry["content"]) not in proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_a_secret_is_written_for_its_reader_alone_and_left_alone_when_current(
    tmp_path: Path,
) -> None:
    uid, gid = os.getuid(), os.getgid()
    first = {"path": str(tmp_path / "a"), "uid": uid, "gid": gid, "content": "s3cr3t-one"}
    second = {"path": str(tmp_path / "b"), "uid": uid, "gid": gid, "content": "s3cr3t-two"}
    assert write([first, second]) == [first["path"], second["path"]]
    stat = (tmp_path / "a").stat()
    assert (stat.st_mode & 0o777, stat.st_uid, stat.st_gid) == (0o400, uid, gid)
    assert (tmp_path / "a").read_text() == "s3cr3t-one"
    inode = stat.st_ino

    assert write([first, second]) == []
    assert (tmp_path / "a").stat().st_ino == inode

    # A new value replaces the file by rename: no reader sees half of one.
    assert write([{**first, "content": "s3cr3t-new"}, second]) == [first["path"]]
    assert (tmp_path / "a").read_text() == "s3cr3t-new"
    assert (tmp_path / "a").stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_wrong_mode_is_put_right(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_text("s3cr3t")
    path.chmod(0o644)
    entry = {"path": str(path), "uid": os.getuid(), "gid": os.getgid(), "content": "s3cr3t"}
    assert write([entry]) == [str(path)]
    assert path.stat().st_mode & 0o777 == 0o400
