"""shipyard-log-rotate on real files, with a real writer, agent and collector."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from logs_harness import COMMON, PYTHON, Program, toml, wait_for
from shipyard_logs.agent.positions import Position, render_positions
from shipyard_logs.config import ConfigError
from shipyard_logs.rotate import Rotator, load_config, parse_size, rotate_file
from test_logs_agent import Agent, shipped_ids

WRITER = Path(__file__).with_name("log_writer.py")
ID = re.compile(rb"id=(\d+)")


class Writer:
    """tests/logs/log_writer.py as a subprocess: appends numbered lines, reopens on USR1."""

    def __init__(self, path: Path, count: int, rate: int = 0) -> None:
        self.pid_file = path.with_name("writer.pid")
        args = [PYTHON, str(WRITER), str(path), str(self.pid_file), str(count)]
        # The script imports the harness, and the harness tests/helpers.py:
        # it gets the path pytest's `pythonpath` gave the tests.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [*args, *([str(rate)] if rate else [])], stdout=subprocess.PIPE, text=True, env=env
        )
        wait_for(self.pid_file.exists, 10, "the writer's pid file")

    def wait_done(self) -> None:
        """Block until the writer has written every line (it exits early only on a crash)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "done", f"writer said {line!r}"

    def open_inodes(self) -> set[int]:
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        return {fd.stat().st_ino for fd in fd_dir.iterdir()}


class RotateProgram(Program):
    def __init__(self, workdir: Path, settings: dict[str, object]) -> None:
        path = workdir / "rotate.toml"
        path.write_text(toml(settings))
        super().__init__("rotate", path, workdir / "rotate.log")


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    started: list[Writer] = []
    try:
        yield started
    finally:
        for writer in started:
            writer.proc.kill()
            writer.proc.wait(10)


def ids_in(paths: list[Path]) -> list[int]:
    return [int(m) for p in paths for m in ID.findall(p.read_bytes())]


def rotated(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.2*"), key=lambda p: p.stat().st_mtime)


def config_file(tmp_path: Path, **settings: object) -> Path:
    path = tmp_path / "rotate.toml"
    path.write_text(toml(settings))
    return path


def test_rotation_under_load_loses_no_line(tmp_path, collector_factory, writers):
    """20,000 lines through ~20 rotations; the agent ships each exactly once."""
    collector = collector_factory().start()
    agent = Agent(tmp_path, collector)
    access = agent.logdir / "access.log"
    access.touch()
    rotate = RotateProgram(
        tmp_path,
        {
            "interval": 0.1,
            "size": "64k",
            "keep": 2,
            "pos_dir": str(agent.pos_dir),
            "files": [
                {
                    "path": str(access),
                    "reopen_signal": "USR1",
                    "reopen_pid_file": str(access.with_name("writer.pid")),
                }
            ],
        },
    )
    agent.start()
    count = 20_000
    writer = Writer(access, count, rate=5000)
    writers.append(writer)
    rotate.start()
    try:
        writer.wait_done()
        ids = wait_for(
            lambda: (i := shipped_ids(collector)) and len(i) >= count and i,
            60,
            "every line at the collector",
        )
        time.sleep(1)  # anything more would be a duplicate
        ids = shipped_ids(collector)
    finally:
        rotate.stop()
        agent.stop()
    assert sorted(ids) == list(range(count))
    assert set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1][:10]
    rotations = rotate.output().count("rotated ")
    assert rotations >= 10, rotate.output()
    assert len(rotated(access)) <= 2 + 1  # keep, plus one the agent may still read


def test_writer_follows_and_old_generations_are_pruned(tmp_path, writers):
    """Without an agent: rotations keep `keep` generations; what is kept has no gap."""
    access = tmp_path / "access.log"
    access.touch()
    access.chmod(0o640)
    rotate = RotateProgram(
        tmp_path,
        {
            "interval": 0.1,
            "size": "16k",
            "keep": 3,
            "pos_dir": "",
            "files": [
                {
                    "path": str(access),
                    "reopen_signal": "USR1",
                    "reopen_pid_file": str(tmp_path / "writer.pid"),
                }
            ],
        },
    )
    writer = Writer(access, 4000, rate=4000)
    writers.append(writer)
    rotate.start()
    try:
        writer.wait_done()
        time.sleep(0.5)
        # The writer ends up on the file the path names: it reopened each time.
        wait_for(lambda: access.stat().st_ino in writer.open_inodes(), 5, "the writer to reopen")
    finally:
        rotate.stop()
    kept = rotated(access)
    assert len(kept) == 3, rotate.output()
    ids = ids_in([*kept, access])
    assert ids == list(range(ids[0], 4000)), "a gap or a duplicate in the kept files"
    assert ids[0] > 0, "nothing was ever pruned"
    assert all(p.stat().st_mode & 0o777 == 0o640 for p in [*kept, access])


def test_rotation_waits_for_the_agent_until_max_size(tmp_path):
    pos_dir = tmp_path / "pos"
    pos_dir.mkdir()
    log = tmp_path / "error.log"
    log.write_bytes(b"x" * 5000 + b"\n")
    config = load_config(
        str(
            config_file(
                tmp_path,
                size="4k",
                max_size="8k",
                keep=2,
                pos_dir=str(pos_dir),
                files=[{"path": str(log)}],
            )
        )
    )
    rotator = Rotator(config)
    first = log.stat().st_ino

    rotator.run_once()
    assert log.stat().st_ino == first, "rotated before the agent knew the file"

    (pos_dir / "error.pos").write_bytes(
        render_positions([Position(str(log), offset=10, inode=first)])
    )
    rotator.run_once()
    assert log.stat().st_ino != first
    assert [p.stat().st_ino for p in rotated(log)] == [first]

    second = log.stat().st_ino
    log.write_bytes(b"y" * 9000 + b"\n")  # past max_size, still unknown to the agent
    rotator.run_once()
    assert log.stat().st_ino != second, "max_size must win over the agent"


def test_a_generation_the_agent_has_not_read_is_kept(tmp_path):
    pos_dir = tmp_path / "pos"
    pos_dir.mkdir()
    log = tmp_path / "error.log"
    generations = []
    for n in range(4):
        log.write_bytes(f"generation {n}\n".encode() * 10)
        generations.append(rotate_file(log))
        time.sleep(0.01)  # distinct modification times order them
    pending = generations[0]
    size = pending.stat().st_size
    pos = pos_dir / "error.pos"
    pos.write_bytes(
        render_positions([Position(str(log), offset=size - 1, inode=pending.stat().st_ino)])
    )
    config = load_config(
        str(
            config_file(
                tmp_path,
                size="1M",
                keep=2,
                pos_dir=str(pos_dir),
                files=[{"path": str(log)}],
            )
        )
    )
    rotator = Rotator(config)

    rotator.run_once()
    assert [p.exists() for p in generations] == [True, False, True, True]

    pos.write_bytes(
        render_positions([Position(str(log), offset=size, inode=pending.stat().st_ino)])
    )
    rotator.run_once()
    assert [p.exists() for p in generations] == [False, False, True, True]


def test_files_their_writer_rotates_are_only_pruned(tmp_path):
    """PostgreSQL's jsonlog files: the newest is the live one; `keep` older ones stay."""
    names = [f"postgresql-2026-11-23_10000{n}.json" for n in range(6)]
    for n, name in enumerate(names):
        (tmp_path / name).write_text(f'{{"n": {n}}}\n')
        os.utime(tmp_path / name, (1_000_000 + n, 1_000_000 + n))
    pos_dir = tmp_path / "pos"
    pos_dir.mkdir()
    config = load_config(
        str(
            config_file(
                tmp_path,
                size="1",
                keep=2,
                pos_dir=str(pos_dir),
                files=[{"path": str(tmp_path / "*.json"), "rotate": False}],
            )
        )
    )
    rotator = Rotator(config)
    # names[0] is past 2 x keep and goes anyway; the agent has not found the rest yet.
    rotator.run_once()
    assert sorted(p.name for p in tmp_path.glob("*.json")) == names[1:]

    read = [
        Position(str(tmp_path / n), offset=9, inode=(tmp_path / n).stat().st_ino)
        for n in names[1:3]
    ]
    (pos_dir / "postgresql.pos").write_bytes(render_positions(read))
    rotator.run_once()
    assert sorted(p.name for p in tmp_path.glob("*.json")) == names[3:]


def test_one_reopen_per_round_for_files_that_share_it(tmp_path):
    marker = tmp_path / "reopened"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    for log in logs:
        log.write_bytes(b"z" * 2048)
    config = load_config(
        str(
            config_file(
                tmp_path,
                size="1k",
                keep=1,
                pos_dir="",
                files=[{"path": str(log), "reopen_command": command} for log in logs],
            )
        )
    )
    Rotator(config).run_once()
    assert marker.read_text() == "x"
    assert all(log.stat().st_size == 0 and len(rotated(log)) == 1 for log in logs)


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"size": "ten"}, "rotate.size"),
        ({"keep": 0}, "rotate.keep"),
        ({"size": "8M", "max_size": "4M"}, "rotate.max_size"),
        ({"files": [{"path": "/x.log", "reopen_signal": "USR1"}]}, "reopen_pid_file"),
        (
            {"files": [{"path": "/x.log", "reopen_signal": "NOPE", "reopen_pid_file": "/p"}]},
            "reopen_signal",
        ),
        ({"files": [{"path": "x.log"}]}, "files[0].path"),
        ({"files": [{"path": "/x.log", "colour": "red"}]}, "colour"),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(tmp_path, settings, names):
    config = {"files": [{"path": "/x.log"}], **settings}
    with pytest.raises(ConfigError, match=re.escape(names)):
        load_config(str(config_file(tmp_path, **config)), env={})


def test_environment_overrides_and_check_config(tmp_path):
    path = config_file(tmp_path, size="10M", files=[{"path": "/x.log"}])
    config = load_config(str(path), env={"SHIPYARD_ROTATE_SIZE": "2M", "SHIPYARD_ROTATE_KEEP": "7"})
    assert (config.size, config.keep, config.max_size) == (2 << 20, 7, 8 << 20)
    assert parse_size("512k") == 512 * 1024

    env = {**os.environ, "PYTHONPATH": str(COMMON), "SHIPYARD_ROTATE_SIZE": "huge"}
    proc = subprocess.run(
        [PYTHON, "-m", "shipyard_logs.rotate", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 78
    assert "rotate.size" in proc.stderr
