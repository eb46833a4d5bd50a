"""Grep everything a stack wrote for its secrets, and say where each one was found.

A scan takes needles (each secret, with a name that says whose it is, and
the forms derived from it that are as good as the secret: a SCRAM verifier's
keys, a mysql_native_password hash) and sources (Ansible's logs, `docker
logs`, `docker inspect` and `docker history`, files copied out of containers,
`/proc/*/environ` of every process in a container, S3 objects). It reads each
source once and reports every hit with its place and a little context, the
secret itself masked, so a failing scan never prints what it found.

Used by the provision scenario (its own containers, statement logging on)
and by tests/secrets/scan_secrets.py (the dev environment, after everything
`make test` ran).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

Source = Callable[[], Iterator[tuple[str, bytes]]]
CONTEXT = 60  # bytes shown either side of a hit
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Needle:
    """One secret form to look for; name says whose secret and which form."""

    name: str
    value: bytes
    ignore_case: bool = False


@dataclass(frozen=True)
class Hit:
    needle: str
    where: str
    context: str


@dataclass
class Scan:
    needles: list[Needle] = field(default_factory=list)
    sources: list[tuple[str, Source]] = field(default_factory=list)
    read: dict[str, int] = field(default_factory=dict)  # source -> bytes read

    def secret(self, name: str, value: str) -> None:
        """Look for value as it is; too short a value would match by chance."""
        if len(value) < 12:
            raise ValueError(f"secret {name} is too short to scan for ({len(value)} characters)")
        self.needles.append(Needle(name, value.encode()))

    def scram_verifier(self, name: str, verifier: str) -> None:
        """A PostgreSQL verifier's StoredKey and ServerKey: each alone is as good as it."""
        match = re.fullmatch(r"SCRAM-SHA-256\$\d+:[^$]+\$([^:]+):(.+)", verifier)
        if not match:
            raise ValueError(f"{name}: not a SCRAM-SHA-256 verifier")
        self.needles.append(Needle(f"{name} (SCRAM StoredKey)", match[1].encode()))
        self.needles.append(Needle(f"{name} (SCRAM ServerKey)", match[2].encode()))

    def native_hash(self, name: str, password: str) -> None:
        """The mysql_native_password hash of password, in any case."""
        digest = hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest()  # noqa: S324
        self.needles.append(Needle(f"{name} (mysql_native_password hash)", digest.encode(), True))

    def add(self, where: str, source: Source) -> None:
        self.sources.append((where, source))

    def run(self) -> list[Hit]:
        if not self.needles:
            raise ValueError("nothing to scan for")
        hits: list[Hit] = []
        for label, source in self.sources:
            for where, data in source():
                self.read[label] = self.read.get(label, 0) + len(data)
                hits.extend(find(self.needles, where, data))
        return hits


def find(needles: Iterable[Needle], where: str, data: bytes) -> Iterator[Hit]:
    """Every occurrence of every needle in data (gzip members decompressed first).

    The context around a hit has every byte of every needle's occurrences
    masked, so no report shows a secret, nor a part of one cut at its edge.
    """
    if data.startswith(GZIP_MAGIC):
        # Not gzip after all: scan the bytes as they are.
        with contextlib.suppress(OSError, EOFError):
            data = gzip.decompress(data)
    found: list[tuple[int, int, Needle]] = []
    for needle in needles:
        flags = re.IGNORECASE if needle.ignore_case else 0
        found += [
            (m.start(), m.end(), needle) for m in re.finditer(re.escape(needle.value), data, flags)
        ]
    if not found:
        return
    masked = bytearray(data)
    for start, end, _ in found:
        masked[start:end] = b"*" * (end - start)
    for start, end, needle in found:
        before = masked[max(0, start - CONTEXT) : start].decode("utf-8", "replace")
        after = masked[end : end + CONTEXT].decode("utf-8", "replace")
        line = data.count(b"\n", 0, start) + 1
        yield Hit(needle.name, f"{where}, line {line}", f"{before}<{needle.name}>{after}")


def report(hits: list[Hit], read: dict[str, int]) -> str:
    """Where each secret was found, a line per secret and place (hits on several lines counted)."""
    places: dict[tuple[str, str], list[Hit]] = {}
    for hit in hits:
        places.setdefault((hit.needle, hit.where.rsplit(", line ", 1)[0]), []).append(hit)
    lines = (
        [f"{len(hits)} hit(s) of a secret, in {len(places)} place(s):"]
        if hits
        else ["no secret found"]
    )
    for (needle, where), found in places.items():
        context = found[0].context.replace("\n", "\\n")
        times = f" ({len(found)} times)" if len(found) > 1 else ""
        lines.append(f"  {needle} in {where}{times}: ...{context}...")
    lines.append("read: " + ", ".join(f"{k} {v} bytes" for k, v in read.items()))
    return "\n".join(lines)


# Sources ---------------------------------------------------------------------


def _docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], capture_output=True, timeout=timeout, check=False)


def _checked(*args: str) -> bytes:
    proc = _docker(*args)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def files(*paths: Path) -> Source:
    """Files on this machine; a directory is read whole; a path that does not exist is an error."""

    def read() -> Iterator[tuple[str, bytes]]:
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(
                    f"{path}: nothing to scan (did the runs that write it run?)"
                )
            for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if f.is_file():
                    yield str(f), f.read_bytes()

    return read


def results_log(path: Path) -> Source:
    """The results_log callback's file, a record at a time, each named by its run and task."""

    def read() -> Iterator[tuple[str, bytes]]:
        if not path.exists():
            raise FileNotFoundError(f"{path}: nothing to scan (did the runs that write it run?)")
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    r = json.loads(line)
                    name = f"{r['playbook']}: {r['task']!r} on {r['host']}"
                except (ValueError, KeyError):
                    name = "a record that is no JSON"
                yield f"{path} record {number} ({name})", line

    return read


def text(where: str, data: str) -> Source:
    """Output already in hand, such as a run's captured stdout."""
    return lambda: iter([(where, data.encode())])


def docker_logs(*containers: str) -> Source:
    def read() -> Iterator[tuple[str, bytes]]:
        for c in containers:
            proc = _docker("logs", c)
            yield f"docker logs {c}", proc.stdout + proc.stderr

    return read


def docker_inspect(*objects: str) -> Source:
    """Containers or images, by name or id."""

    def read() -> Iterator[tuple[str, bytes]]:
        for o in objects:
            yield f"docker inspect {o}", _checked("inspect", o)

    return read


def docker_history(*images: str) -> Source:
    def read() -> Iterator[tuple[str, bytes]]:
        for i in images:
            yield f"docker history {i}", _checked("history", "--no-trunc", i)

    return read


def container_files(container: str, *paths: str) -> Source:
    """Every regular file under paths in the container (a running or stopped one), via docker cp."""

    def read() -> Iterator[tuple[str, bytes]]:
        for path in paths:
            tar = _checked("cp", f"{container}:{path}", "-")
            with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as archive:
                for member in archive:
                    handle = archive.extractfile(member) if member.isfile() else None
                    if handle is not None:
                        yield f"{container}:{Path(path).parent / member.name}", handle.read()

    return read


# Prints, for each process but the one reading, its pid, its command line and
# its environment, as one JSON object per line.
_ENVIRON = r"""
import json, os
me = str(os.getpid())
for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
    if pid == me:
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").strip().decode(errors="replace")
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        continue  # gone since the listing
    print(json.dumps({"pid": int(pid), "cmd": cmd, "environ": env.decode(errors="replace")}))
"""


def container_environ(container: str, allowed: Callable[[int, str], bool] | None = None) -> Source:
    """/proc/*/environ of every process in the container but the reader and allowed(pid, cmd)."""

    def read() -> Iterator[tuple[str, bytes]]:
        out = _checked("exec", container, "python3", "-c", _ENVIRON)
        for line in out.decode().splitlines():
            proc = json.loads(line)
            if allowed and allowed(proc["pid"], proc["cmd"]):
                continue
            yield (
                f"{container} /proc/{proc['pid']}/environ ({proc['cmd'][:80]})",
                proc["environ"].encode(),
            )

    return read


def s3_objects(endpoint: str, key_id: str, secret_key: str) -> Source:
    """Every object of every bucket at an S3 endpoint."""

    def read() -> Iterator[tuple[str, bytes]]:
        import boto3  # only the scans that read S3 need it

        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
        )
        for bucket in s3.list_buckets()["Buckets"]:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
                for obj in page.get("Contents", []):
                    body = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                    yield f"s3://{bucket['Name']}/{obj['Key']}", body

    return read
