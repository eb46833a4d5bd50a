"""Write secret files on the Docker host: a JSON list on stdin of
{"path", "uid", "gid", "content"}, each written 0400 and owned as given.

One run for every secret of a start, instead of a copy task per file (a
second each). A file is replaced by rename, so a reader never sees half of
one; a file already holding the content, owner and mode is left alone.
Prints the paths it changed as a JSON list; never prints a content.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from pathlib import Path


def current(path: Path, content: bytes, uid: int, gid: int) -> bool:
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return False
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, 0o400):
            return False
        return path.read_bytes() == content
    except FileNotFoundError:
        return False


def write(path: Path, content: bytes, uid: int, gid: int) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".secret-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o400)
            os.fchown(f.fileno(), uid, gid)
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main() -> int:
    changed = []
    for entry in json.load(sys.stdin):
        path, uid, gid = Path(entry["path"]), int(entry["uid"]), int(entry["gid"])
        content = entry["content"].encode()
        if not current(path, content, uid, gid):
            write(path, content, uid, gid)
            changed.append(str(path))
    print(json.dumps(changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
