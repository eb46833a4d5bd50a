"""Orphaned grandchildren must not pile up as zombies."""

import os
import signal
import subprocess
import time

import pytest
from init_harness import TINI, InitRunner, is_alive, proc_table, zombies_under

ORPHANS = 1000


def test_zombie_scan_sees_a_zombie() -> None:
    """The check below is only worth something if it can find a zombie."""
    child = subprocess.Popen(["/bin/true"])
    try:
        deadline = time.monotonic() + 5
        while child.pid not in zombies_under(os.getpid()):
            assert time.monotonic() < deadline, "the zombie scan never saw an unreaped child"
            time.sleep(0.01)
    finally:
        child.wait()
    assert child.pid not in zombies_under(os.getpid())


@pytest.mark.parametrize("mode", ["tini", "subreaper"])
def test_orphaned_grandchildren_leave_no_zombies(init: InitRunner, mode: str) -> None:
    # The images run under tini; its absence here is a broken set-up, not a reason to skip.
    assert mode != "tini" or os.access(TINI, os.X_OK), (
        f"{TINI} is not installed (apt-get install tini)"
    )
    pids_file, flag = init.dir / "orphans.txt", init.dir / "probe.ok"
    init.write_config(
        [
            {"name": "prep", "type": "oneshot", "command": init.stub("prep", "--exit-after", 0)},
            # Many short-lived probe commands: the supervisor's own children.
            init.service(
                "probed",
                "--ready-after",
                0.3,
                "--ready-file",
                flag,
                ready={"command": ["/bin/sh", "-c", f"test -e '{flag}'"]},
                ready_interval=0.01,
                stop_timeout=2.0,
            ),
            init.service(
                "forker", "--fork-orphans", ORPHANS, "--orphan-pids", pids_file, stop_timeout=2.0
            ),
        ]
    )
    if mode == "tini":
        init.start(tini=True)
    else:
        init.start(env={"SHIPYARD_INIT_SUBREAPER": "1"})
    assert init.proc is not None
    reaper = init.proc.pid  # tini -s, or the supervisor itself as subreaper
    init.wait_event("forked", "forker", timeout=30.0)
    orphans = [int(pid) for pid in pids_file.read_text().split()]
    assert len(orphans) == ORPHANS

    table = proc_table()
    parents = {table[pid][1] for pid in orphans if pid in table}
    assert parents == {reaper}, "the grandchildren were not re-parented to the reaper"

    os.kill(int(init.event("start", "forker").details[0]), signal.SIGUSR1)
    init.wait_event("released", "forker")
    init.wait_for(
        lambda: not any(is_alive(pid) for pid in orphans), "orphans to exit", timeout=10.0
    )
    init.wait_for(lambda: not zombies_under(reaper), "zombies to be reaped", timeout=5.0)
    assert zombies_under(reaper) == []
    assert init.running, init.diagnostics()

    code, _ = init.stop()
    assert code == 0, init.diagnostics()
    assert init.names("stop") == ["forker", "probed"]
