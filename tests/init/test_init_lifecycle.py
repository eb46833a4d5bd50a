"""Start order, readiness, stop order, exit codes and restarts, observed on real processes."""

import os
import pwd
import signal
import time
import uuid
from pathlib import Path

import pytest
from helpers import free_port
from init_harness import InitRunner, is_alive


def oneshot(init: InitRunner, name: str, *args: object, **keys: object) -> dict[str, object]:
    return {"name": name, "type": "oneshot", "command": init.stub(name, *args), **keys}


def stops(init: InitRunner) -> list[tuple[str, str]]:
    return [(event.name, event.details[0]) for event in init.events("stop")]


# ------------------------------------------------------------------ order


def test_start_in_order_and_stop_in_exact_reverse(init: InitRunner) -> None:
    init.write_config(
        [
            init.service("web", order=20, stop_signal="QUIT", stop_timeout=2.0),
            init.service("db", order=10, stop_signal="INT", stop_timeout=2.0),
            oneshot(init, "setup", "--exit-after", 0, order=10),
            init.service("agent", stop_timeout=2.0),
            init.service("cache", order=20, stop_signal="HUP", stop_timeout=2.0),
        ]
    )
    init.start()
    init.wait_running()
    code, _ = init.stop()
    assert code == 0, init.diagnostics()
    assert init.names("start") == ["agent", "db", "setup", "web", "cache"]
    assert init.names("exit") == ["setup"]
    assert stops(init) == [
        ("cache", "SIGHUP"),
        ("web", "SIGQUIT"),
        ("db", "SIGINT"),
        ("agent", "SIGTERM"),
    ]
    assert "SIGKILL" not in init.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_requested_stop_exits_zero_with_small_overhead(
    init: InitRunner, sig: signal.Signals
) -> None:
    init.write_config([init.service("a", stop_timeout=3.0), init.service("b", stop_timeout=3.0)])
    init.start()
    init.wait_running()
    code, elapsed = init.stop(sig)
    assert code == 0, init.diagnostics()
    assert stops(init) == [("b", "SIGTERM"), ("a", "SIGTERM")]
    # The services exit at once: the stop waits out no stop_timeout. How
    # long the supervisor's own part takes is bench/init_stop.py's to say.
    assert elapsed < 3.0, init.diagnostics()


def test_stop_requested_while_starting(init: InitRunner) -> None:
    never = init.dir / "never"
    init.write_config(
        [
            init.service("a", stop_timeout=2.0),
            init.service("b", ready={"file": str(never)}, start_timeout=30.0, stop_timeout=2.0),
            init.service("c", stop_timeout=2.0),
        ]
    )
    init.start()
    init.wait_event("start", "b")
    time.sleep(0.2)
    code, elapsed = init.stop()
    assert code == 0, init.diagnostics()
    # b is stopped at once: neither its start_timeout nor a stop_timeout runs out.
    assert elapsed < 2.0
    assert init.names("start") == ["a", "b"]
    assert init.names("stop") == ["b", "a"]


def test_a_stop_never_waits_on_probes_still_running(tmp_path: Path) -> None:
    """Probes that answer at once and are retried at once stand in for load.

    Non-critical services that missed their start_timeout keep being probed,
    so the stop cancels eight probe loops, each mostly inside an attempt.
    A cancellation lost in one (as asyncio.wait_for loses one that lands
    just as the attempt ends, on Python 3.11) used to leave the supervisor
    running for good, in about 7 of 10 runs of this set-up.
    """
    for attempt in range(5):
        init = InitRunner(tmp_path / str(attempt), uuid.uuid4().hex)
        init.dir.mkdir()
        never = init.dir / "never"
        probing = [
            init.service(
                f"p{n}",
                ready={"file": str(never)},
                ready_interval=0.0001,
                start_timeout=0.05,
                critical=False,
                stop_timeout=0.5,
            )
            for n in range(8)
        ]
        try:
            init.write_config([*probing, init.service("last", stop_timeout=1.0)])
            init.start()
            init.wait_event("start", "last")
            time.sleep(0.05)
            code, _ = init.stop()
            assert code == 0, init.diagnostics()
        finally:
            init.cleanup()


def test_a_profile_runs_its_services_and_those_of_none_in_order(init: InitRunner) -> None:
    init.write_config(
        [
            oneshot(init, "prepare", "--exit-after", 0),
            init.service("db", profiles=["db"], stop_timeout=1.0),
            init.service("web", profiles=["web"], stop_timeout=1.0),
            init.service("agent", stop_timeout=1.0),
        ]
    )
    init.start(env={"SHIPYARD_INIT_PROFILES": "web"})
    init.wait_running()
    status = init.status_document()
    assert status is not None
    assert [service["name"] for service in status["services"]] == ["prepare", "web", "agent"]
    code, _ = init.stop()
    assert code == 0, init.diagnostics()
    assert init.names("start") == ["prepare", "web", "agent"]
    assert stops(init) == [("agent", "SIGTERM"), ("web", "SIGTERM")]


# ------------------------------------------------------------------ readiness


def probe_case(kind: str, directory: Path) -> tuple[list[object], dict[str, object]]:
    """Stub arguments that make the resource appear, and the matching probe."""
    flag, sock, port = directory / "a.ready", directory / "a.sock", free_port()
    cases: dict[str, tuple[list[object], dict[str, object]]] = {
        "command": (["--ready-file", flag], {"command": ["/bin/sh", "-c", f"test -e '{flag}'"]}),
        "tcp": (["--tcp", port], {"tcp": f"127.0.0.1:{port}"}),
        "unix": (["--unix", sock], {"unix": str(sock)}),
        "file": (["--ready-file", flag], {"file": str(flag)}),
        # The stub answers 503 until it is ready and 302 afterwards, so this
        # checks both that 5xx is refused and that 3xx is accepted.
        "http": (["--http", port], {"http": f"http://127.0.0.1:{port}/health"}),
    }
    return cases[kind]


@pytest.mark.parametrize("kind", ["command", "tcp", "unix", "file", "http"])
def test_next_service_waits_for_readiness_probe(init: InitRunner, kind: str) -> None:
    stub_args, probe = probe_case(kind, init.dir)
    init.write_config(
        [
            init.service("a", "--ready-after", 0.6, *stub_args, ready=probe, ready_interval=0.05),
            init.service("b", stop_timeout=2.0),
        ],
        stop_budget=9.0,
    )
    init.start()
    init.wait_running()
    a_start, a_ready, b_start = (
        init.event("start", "a"),
        init.event("ready", "a"),
        init.event("start", "b"),
    )
    assert a_ready.time - a_start.time >= 0.55
    assert b_start.time >= a_ready.time, init.diagnostics()
    # Includes b's interpreter start-up; the probe itself polls every 50 ms.
    assert b_start.time - a_ready.time < 1.0, "probe noticed readiness late"
    code, _ = init.stop()
    assert code == 0


def test_probe_not_passing_within_start_timeout(init: InitRunner) -> None:
    never = init.dir / "never"
    init.write_config(
        [
            init.service("a", stop_timeout=2.0),
            init.service("b", ready={"file": str(never)}, start_timeout=0.5, stop_timeout=2.0),
            init.service("c", stop_timeout=2.0),
        ]
    )
    began = time.monotonic()
    code = init.run_to_exit()
    elapsed = time.monotonic() - began
    assert code == 1, init.diagnostics()
    assert 0.5 <= elapsed < 3.0
    assert init.names("start") == ["a", "b"]
    assert init.names("stop") == ["b", "a"]
    assert "b was not ready within start_timeout = 0.5 s" in init.stderr
    assert f"file {never}: does not exist" in init.stderr


def test_oneshot_not_finishing_within_start_timeout(init: InitRunner) -> None:
    init.write_config(
        [
            init.service("a", stop_timeout=2.0),
            oneshot(init, "slow", "--ready-after", 30, start_timeout=0.5, stop_timeout=2.0),
        ]
    )
    assert init.run_to_exit() == 1
    assert "one-shot slow did not finish within start_timeout = 0.5 s" in init.stderr
    assert init.names("stop") == ["slow", "a"]


@pytest.mark.parametrize(("exit_code", "expected"), [(5, 5), (0, 1)])
def test_service_exiting_while_starting_aborts(
    init: InitRunner, exit_code: int, expected: int
) -> None:
    never = init.dir / "never"
    init.write_config(
        [
            init.service("a", stop_timeout=2.0),
            init.service(
                "b",
                "--exit-after",
                0.2,
                "--exit-code",
                exit_code,
                ready={"file": str(never)},
                stop_timeout=2.0,
            ),
            init.service("c", stop_timeout=2.0),
        ]
    )
    assert init.run_to_exit() == expected, init.diagnostics()
    assert f"b exited with code {exit_code} while starting; aborting start-up" in init.stderr
    assert init.names("start") == ["a", "b"]
    assert init.names("stop") == ["a"]


# ------------------------------------------------------------------ failures


def test_failing_oneshot_aborts_startup_with_its_code(init: InitRunner) -> None:
    failing = ("--stderr", "migration failed\\n", "--exit-after", 0, "--exit-code", 3)
    init.write_config(
        [
            init.service("a", stop_timeout=2.0),
            oneshot(init, "migrate", *failing),
            init.service("c", stop_timeout=2.0),
        ]
    )
    assert init.run_to_exit() == 3
    assert init.names("start") == ["a", "migrate"]
    assert init.names("stop") == ["a"]
    assert "one-shot migrate exited with code 3; aborting start-up" in init.stderr
    assert "migrate | migration failed\n" in init.stderr


@pytest.mark.parametrize(("program", "expected"), [("missing", 127), ("not-executable", 126)])
def test_command_that_cannot_be_executed(init: InitRunner, program: str, expected: int) -> None:
    path = init.dir / program
    if program == "not-executable":
        path.write_text("#!/bin/sh\n")
    init.write_config([init.service("a", stop_timeout=2.0), {"name": "b", "command": [str(path)]}])
    assert init.run_to_exit() == expected, init.diagnostics()
    assert "cannot start b: [Errno" in init.stderr
    assert str(path) in init.stderr
    assert init.names("stop") == ["a"]


CRASHES = [
    pytest.param(["--exit-code", 1], 1, "exited with code 1", id="exit-1"),
    pytest.param(["--exit-code", 3], 3, "exited with code 3", id="exit-3"),
    pytest.param(["--exit-code", 42], 42, "exited with code 42", id="exit-42"),
    pytest.param(["--kill-self", "SIGKILL"], 137, "was killed by SIGKILL", id="SIGKILL"),
    pytest.param(["--kill-self", "SIGSEGV"], 139, "was killed by SIGSEGV", id="SIGSEGV"),
    pytest.param(["--kill-self", "SIGTERM"], 143, "was killed by SIGTERM", id="SIGTERM"),
]


@pytest.mark.parametrize(("crash", "expected", "message"), CRASHES)
def test_critical_crash_stops_the_rest_and_propagates_status(
    init: InitRunner, crash: list[object], expected: int, message: str
) -> None:
    c_ready = init.dir / "c.ready"
    init.write_config(
        [
            init.service("a", stop_timeout=2.0),
            # b crashes only once c is up, so there is something on each side.
            init.service("b", "--wait-for", c_ready, "--exit-after", 0, *crash, stop_timeout=2.0),
            init.service("c", "--ready-file", c_ready, ready={"file": str(c_ready)}),
        ],
        stop_budget=9.0,
    )
    assert init.run_to_exit() == expected, init.diagnostics()
    assert init.names("start") == ["a", "b", "c"]
    assert init.names("stop") == ["c", "a"]
    assert f"critical service b {message}; stopping the other services" in init.stderr


def test_service_ignoring_its_stop_signal_is_killed_after_stop_timeout(
    init: InitRunner,
) -> None:
    init.write_config(
        [
            init.service("polite", stop_timeout=2.0),
            init.service("stubborn", "--ignore-stop", "--helper", stop_timeout=0.5),
        ]
    )
    # Under tini, so the killed helper does not linger as a zombie.
    init.start(tini=True)
    init.wait_running()
    main_pid = int(init.event("start", "stubborn").details[0])
    helper_pid = int(init.event("helper", "stubborn").details[0])
    assert is_alive(helper_pid)
    code, elapsed = init.stop()
    assert code == 0, init.diagnostics()
    # Not before stop_timeout, and short of it plus the 2 s post-SIGKILL grace.
    assert 0.5 <= elapsed < 2.5, init.diagnostics()
    assert [(e.name, e.details[0]) for e in init.events("ignored")] == [("stubborn", "SIGTERM")]
    assert init.names("stop") == ["polite"]
    assert not is_alive(main_pid)
    assert not is_alive(helper_pid), "SIGKILL must reach the whole process group"
    assert "stubborn did not stop within stop_timeout = 0.5 s" in init.stderr


def test_noncritical_service_restarts_with_backoff(init: InitRunner) -> None:
    never = init.dir / "never"
    init.write_config(
        [
            init.service("a", stop_timeout=2.0),
            # Dies before its probe can pass: start-up must neither wait out
            # the 20 s start_timeout nor the back-off.
            init.service(
                "flaky",
                "--exit-after",
                0,
                "--exit-code",
                2,
                critical=False,
                ready={"file": str(never)},
                start_timeout=20.0,
                stop_timeout=2.0,
            ),
            init.service("c", stop_timeout=2.0),
        ]
    )
    init.start()

    def flaky_starts() -> list[float]:
        return [event.time for event in init.events("start") if event.name == "flaky"]

    init.wait_for(lambda: len(flaky_starts()) >= 3, "three starts of flaky", timeout=6.0)
    first, second, third = flaky_starts()[:3]
    assert init.event("start", "c").time < second, "back-off must not hold up the rest"
    assert 0.95 <= second - first < 1.6
    assert 1.95 <= third - second < 2.8
    assert init.running
    assert init.supervisor_state() == "running"
    assert init.events("stop") == []
    assert init.cli("status").returncode == 1, "a service in back-off is not ready"
    code, elapsed = init.stop()
    assert code == 0
    # The stop waits for neither the next retry nor a stop_timeout.
    assert elapsed < 2.0
    assert len(flaky_starts()) == 3
    assert init.names("stop") == ["c", "a"]
    assert "continuing start-up without non-critical flaky" in init.stderr
    for delay in (1, 2, 4):
        assert f"non-critical flaky exited with code 2; restarting in {delay} s" in init.stderr


def test_noncritical_probe_timeout_does_not_abort(init: InitRunner) -> None:
    never = init.dir / "never"
    init.write_config(
        [
            init.service("slow", critical=False, ready={"file": str(never)}, start_timeout=0.3),
            init.service("c", stop_timeout=2.0),
        ]
    )
    init.start()
    init.wait_running()
    assert "warning: non-critical slow is not ready after 0.3 s" in init.stderr
    status = init.cli("status")
    assert status.returncode == 1
    assert "slow (starting)" in status.stdout
    never.touch()
    init.wait_for(lambda: init.cli("status").returncode == 0, "slow to turn ready late")
    code, _ = init.stop()
    assert code == 0
    assert init.names("stop") == ["c", "slow"]


# ------------------------------------------------------------------ status


def test_status_follows_readiness(init: InitRunner) -> None:
    gate = init.dir / "gate"
    init.write_config(
        [
            oneshot(init, "prep", "--exit-after", 0),
            init.service("db", ready={"file": str(gate)}, ready_interval=0.05, stop_timeout=2.0),
        ]
    )
    before = init.cli("status")
    assert before.returncode == 1
    assert "has not started" in before.stdout

    init.start()
    init.wait_event("start", "db")
    starting = init.cli("status")
    assert starting.returncode == 1
    assert "db (starting)" in starting.stdout
    assert "prep" not in starting.stdout

    gate.touch()
    init.wait_for(lambda: init.cli("status").returncode == 0, "status to turn ready")
    code, _ = init.stop()
    assert code == 0
    after = init.cli("status")
    assert after.returncode == 1
    assert "is not running" in after.stdout


def test_status_after_supervisor_was_killed(init: InitRunner) -> None:
    init.write_config([init.service("a", stop_timeout=2.0)])
    init.start()
    init.wait_running()
    assert init.cli("status").returncode == 0
    assert init.proc is not None
    init.proc.kill()
    init.wait()
    # The file still says "running", but the recorded process is gone.
    assert init.supervisor_state() == "running"
    stale = init.cli("status")
    assert stale.returncode == 1
    assert "is not running" in stale.stdout


# ------------------------------------------------------------------ credentials


@pytest.mark.parametrize("user", ["nobody", pwd.getpwnam("nobody").pw_uid])
def test_service_runs_as_configured_user(init: InitRunner, user: object) -> None:
    entry = pwd.getpwnam("nobody")
    report = (
        'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER '
        'logname=$LOGNAME cwd=$(pwd) greeting=$GREETING inherited=$SHIPYARD_INIT_TEST_RUN"'
    )
    init.write_config(
        [
            {
                "name": "who",
                "type": "oneshot",
                "user": user,
                "workdir": "/",
                "environment": {"GREETING": "hello"},
                "command": ["/bin/sh", "-c", report],
            }
        ]
    )
    assert init.run_to_exit() == 0, init.diagnostics()
    line = next(x for x in init.stdout.splitlines() if x.startswith("who | "))
    seen = dict(
        item.split("=", 1) for item in line.removeprefix("who | ").split(" ") if "=" in item
    )
    assert seen["uid"] == str(entry.pw_uid)
    assert seen["gid"] == str(entry.pw_gid)
    expected_groups = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    assert {int(g) for g in line.split("groups=")[1].split(" home=")[0].split()} == expected_groups
    assert seen["user"] == seen["logname"] == "nobody"
    assert seen["home"] == entry.pw_dir
    assert seen["cwd"] == "/"
    # The service's environment is merged over the supervisor's own.
    assert seen["greeting"] == "hello"
    assert seen["inherited"] == init.run_id


# ------------------------------------------------------------------ restart command


def service_entry(init: InitRunner, name: str) -> dict[str, object]:
    document = init.status_document()
    assert document is not None
    return next(s for s in document["services"] if s["name"] == name)  # type: ignore[index]


def test_restart_command_restarts_a_non_critical_service(init: InitRunner) -> None:
    init.write_config(
        [
            init.service("db", stop_timeout=2.0),
            init.service("agent", critical=False, stop_signal="INT", stop_timeout=2.0),
        ]
    )
    init.start()
    init.wait_for(lambda: init.cli("status").returncode == 0, "every service ready")
    before = service_entry(init, "agent")["pid"]
    db_pid = service_entry(init, "db")["pid"]

    proc = init.cli("restart", "agent", "--timeout", "20", timeout=30)
    assert proc.returncode == 0, proc.stderr + init.diagnostics()
    after = service_entry(init, "agent")
    assert after["pid"] not in (None, before)
    assert after["ready"] is True
    assert f"agent restarted (pid {after['pid']})" in proc.stdout
    # The service's own stop signal, and nothing else was touched.
    assert init.event("stop", "agent").details[:1] == ("SIGINT",)
    assert service_entry(init, "db")["pid"] == db_pid
    assert init.cli("status").returncode == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("db", "not a non-critical long-running service"),
        ("prep", "not a non-critical long-running service"),
        ("nosuch", "unknown"),
    ],
)
def test_restart_command_refuses_what_it_cannot_restart(
    init: InitRunner, name: str, message: str
) -> None:
    init.write_config([oneshot(init, "prep", "--exit-after", 0), init.service("db")])
    init.start()
    init.wait_running()
    db_pid = service_entry(init, "db")["pid"]
    proc = init.cli("restart", name)
    assert proc.returncode == 64
    assert f"cannot restart {name!r}: {message}" in proc.stderr
    assert init.running
    assert service_entry(init, "db")["pid"] == db_pid


def test_restart_command_without_a_running_supervisor_fails(init: InitRunner) -> None:
    init.write_config([init.service("agent", critical=False)])
    proc = init.cli("restart", "agent")
    assert proc.returncode == 1
    assert "supervisor has not started" in proc.stderr


def test_restart_needs_a_name_and_only_restart_takes_one(init: InitRunner) -> None:
    init.write_config([init.service("agent", critical=False)])
    assert init.cli("restart").returncode == 2
    assert init.cli("status", "agent").returncode == 2
