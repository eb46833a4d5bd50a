"""`status --wait` and the ready marker the images' HEALTHCHECK tests for."""

import signal
import subprocess
import time

from init_harness import InitRunner


def gated(init: InitRunner, name: str, **keys: object) -> tuple[dict[str, object], object]:
    """A service that turns ready when the test creates its gate file."""
    gate = init.dir / f"{name}.gate"
    service = init.service(name, ready={"file": str(gate)}, ready_interval=0.02, **keys)
    return service, gate


def timed_status(init: InitRunner, *args: str, timeout: float = 30) -> tuple[int, float, str]:
    began = time.monotonic()
    proc = init.cli("status", *args, timeout=timeout)
    return proc.returncode, time.monotonic() - began, proc.stdout


def test_status_wait_returns_as_soon_as_every_service_is_ready(init: InitRunner) -> None:
    db, gate = gated(init, "db", stop_timeout=2.0)
    init.write_config([db])
    init.start()
    init.wait_event("start", "db")
    waiter = subprocess.Popen(
        init.argv("status", "--wait", "30"), stdout=subprocess.PIPE, text=True, env=init.env
    )
    time.sleep(1.0)
    assert waiter.poll() is None, "status --wait returned before the service was ready"
    gate.touch()
    began = time.monotonic()
    out, _ = waiter.communicate(timeout=10)
    assert waiter.returncode == 0
    assert out.strip() == "ready"
    assert time.monotonic() - began < 2.0


def test_status_wait_gives_up_naming_what_is_not_ready(init: InitRunner) -> None:
    db, _ = gated(init, "db", stop_timeout=2.0)
    web, _ = gated(init, "web", stop_timeout=2.0)
    init.write_config([db, web])
    init.start()
    init.wait_event("start", "db")
    code, took, out = timed_status(init, "--wait", "1.5")
    assert code == 1
    assert 1.4 <= took < 5, took
    assert (
        out.strip() == "not ready after 1.5 s: supervisor is starting, db (starting), web (pending)"
    )


def test_status_wait_waits_for_a_supervisor_that_has_not_started(init: InitRunner) -> None:
    init.write_config([init.service("db", stop_timeout=2.0)])
    waiter = subprocess.Popen(
        init.argv("status", "--wait", "30"), stdout=subprocess.PIPE, text=True, env=init.env
    )
    time.sleep(0.5)
    assert waiter.poll() is None
    init.start()
    out, _ = waiter.communicate(timeout=20)
    assert (waiter.returncode, out.strip()) == (0, "ready")


def test_status_wait_does_not_wait_for_a_supervisor_that_is_stopping(init: InitRunner) -> None:
    init.write_config([init.service("stubborn", "--ignore-stop", stop_timeout=4.0)])
    init.start()
    init.wait_running()
    assert init.proc is not None
    init.proc.send_signal(signal.SIGTERM)
    init.wait_for(lambda: init.supervisor_state() == "stopping", "the stop to begin")
    code, took, out = timed_status(init, "--wait", "30")
    assert code == 1
    assert took < 3, took
    assert "supervisor is stopping" in out
    init.wait(10)


def test_status_without_wait_answers_at_once(init: InitRunner) -> None:
    db, _ = gated(init, "db", stop_timeout=2.0)
    init.write_config([db])
    init.start()
    init.wait_event("start", "db")
    code, took, out = timed_status(init)
    assert code == 1
    assert out.startswith("not ready: ")
    assert took < 3


def test_ready_marker_exists_exactly_while_every_service_is_ready(init: InitRunner) -> None:
    db, gate = gated(init, "db", stop_timeout=2.0)
    flaky = init.service(
        "flaky", "--wait-for", init.dir / "crash", "--exit-after", 0, "--exit-code", 3
    )
    flaky.update(critical=False, stop_timeout=2.0)
    # A marker a killed supervisor left behind must not count for the next one.
    init.ready_file.write_text("stale\n")
    init.write_config([db, flaky])
    init.start()
    init.wait_event("start", "db")
    assert not init.ready_file.exists()

    gate.touch()
    init.wait_for(init.ready_file.exists, "the marker")
    assert init.cli("status").returncode == 0
    assert init.ready_file.read_text().strip() == str(init.proc.pid)

    # A non-critical service in back-off: not healthy until it is back.
    (init.dir / "crash").touch()
    init.wait_event("exit", "flaky")
    init.wait_for(lambda: not init.ready_file.exists(), "the marker to go")
    (init.dir / "crash").unlink()
    init.wait_for(init.ready_file.exists, "the marker after the restart", timeout=10)

    code, _ = init.stop()
    assert code == 0
    assert not init.ready_file.exists()
    assert init.status_file.exists()
