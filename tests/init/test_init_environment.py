"""What reaches a service's process: secrets by the one rule, and the container's arguments."""

import sys
from pathlib import Path

import pytest
from init_harness import InitRunner

SECRETS = {
    "APP_SECRET_KEY": "s3cr3t-value-one",
    "APP_SECRET_KEY_FILE": "/run/secrets/app",
    "DB_PASSWORD": "s3cr3t-value-two",
}
RULE = ["APP_SECRET*", "DB_PASSWORD"]


def environment(path: Path) -> dict[str, str]:
    """What the stub (or a probe) wrote with --env-file: its variables, then its arguments."""
    items = path.read_text().split("\0")
    variables = items[: items.index("argv")]
    return dict(item.split("=", 1) for item in variables)


def arguments(path: Path) -> list[str]:
    items = path.read_text().split("\0")
    return items[items.index("argv") + 1 :]


def dump_probe(path: Path, gate: Path) -> dict[str, object]:
    """A command probe that writes its own environment, and passes once `gate` exists."""
    code = (
        "import os, sys\n"
        "lines = [f'{k}={v}' for k, v in os.environ.items()] + ['argv']\n"
        "open(sys.argv[1], 'w').write(chr(0).join(lines))\n"
        "sys.exit(0 if os.path.exists(sys.argv[2]) else 1)\n"
    )
    return {"command": [sys.executable, "-S", "-c", code, str(path), str(gate)]}


def taker(init: InitRunner, name: str, env_file: Path, **keys: object) -> dict[str, object]:
    """A long-running stub whose command ends in `--`, so appended arguments stay arguments."""
    flag = init.dir / f"{name}.ready"
    command = init.stub(name, "--env-file", env_file, "--ready-file", flag, "--")
    ready = {"file": str(flag)}
    return {"name": name, "command": command, "ready": ready, "stop_timeout": 2.0, **keys}


def proc_environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def test_secrets_reach_only_the_services_that_ask_for_them_and_never_a_probe(
    init: InitRunner,
) -> None:
    first = init.dir / "first-run.env"
    server = init.dir / "server.env"
    probe = init.dir / "probe.env"
    keeper = init.dir / "keeper.env"
    keeper_probe = init.dir / "keeper-probe.env"
    init.write_config(
        [
            {
                "name": "first-run",
                "type": "oneshot",
                "secrets": True,
                "command": init.stub("first-run", "--env-file", first, "--exit-after", 0),
            },
            init.service(
                "server",
                *("--env-file", server, "--ready-file", init.dir / "server.up"),
                ready=dump_probe(probe, init.dir / "server.up"),
            ),
            init.service(
                "keeper",
                *("--env-file", keeper, "--ready-file", init.dir / "keeper.up"),
                secrets=True,
                ready=dump_probe(keeper_probe, init.dir / "keeper.up"),
            ),
        ],
        secret_variables=RULE,
        stop_budget=20.0,
    )
    init.start(env={**SECRETS, "PLAIN_SETTING": "visible"})
    init.wait_running()

    assert {k: environment(first).get(k) for k in SECRETS} == SECRETS
    assert {k: environment(keeper).get(k) for k in SECRETS} == SECRETS
    for path in (server, probe, keeper_probe):
        env = environment(path)
        assert env["PLAIN_SETTING"] == "visible", path
        assert not set(env) & set(SECRETS), path
    # What `cat /proc/PID/environ` shows of the running service, values included.
    pid = int(init.event("start", "server").details[0])
    held = proc_environ(pid)
    assert b"PLAIN_SETTING=visible" in held
    assert not [value for value in SECRETS.values() if value.encode() in held]
    keeper_pid = int(init.event("start", "keeper").details[0])
    assert SECRETS["DB_PASSWORD"].encode() in proc_environ(keeper_pid)


def test_without_a_rule_every_service_gets_the_whole_environment(init: InitRunner) -> None:
    server = init.dir / "server.env"
    init.write_config([init.service("server", "--env-file", server)])
    init.start(env=SECRETS)
    init.wait_running()
    assert {k: environment(server).get(k) for k in SECRETS} == SECRETS


def test_arguments_reach_the_services_that_take_them_verbatim(init: InitRunner) -> None:
    files = {name: init.dir / f"{name}.env" for name in ("prepare", "server", "other")}
    init.write_config(
        [
            {
                "name": "prepare",
                "type": "oneshot",
                "pass_arguments": True,
                "command": init.stub(
                    "prepare", "--env-file", files["prepare"], "--exit-after", 0, "--"
                ),
            },
            taker(init, "server", files["server"], pass_arguments=True),
            taker(init, "other", files["other"]),
        ]
    )
    given = ["-c", "shared_buffers=256MB", "--log-bin=binlog", "two words", ""]
    init.start("run", "--", *given)
    init.wait_running()
    assert arguments(files["prepare"]) == given
    assert arguments(files["server"]) == given
    assert arguments(files["other"]) == []


def test_arguments_without_a_service_to_take_them_are_refused(init: InitRunner) -> None:
    init.write_config([init.service("server")])
    init.start("run", "--", "-c", "x=1")
    assert init.wait() == 64
    assert "no service takes arguments" in init.stderr
    assert init.events("start") == []


@pytest.mark.parametrize("words", [["run"], ["run", "--"], []])
def test_run_without_arguments_supervises(init: InitRunner, words: list[str]) -> None:
    server = init.dir / "server.env"
    init.write_config([taker(init, "server", server, pass_arguments=True)])
    init.start(*words)
    init.wait_running()
    assert arguments(server) == []


@pytest.mark.parametrize("words", [["run", "--", "-c", "x=1"], ["run"], []])
def test_the_entrypoints_call_parses_nothing_and_imports_no_argparse(
    init: InitRunner, words: list[str]
) -> None:
    """Every container start calls `shipyard-init run -- ARGS`; it waits for the supervisor."""
    server = init.dir / "server.env"
    init.write_config([taker(init, "server", server, pass_arguments=True)])
    init.start(*words, config_from_env=True, env={"PYTHONPROFILEIMPORTTIME": "1"})
    init.wait_running()
    assert arguments(server) == words[2:]
    # The supervisor's own import log; its services' lines carry their prefix.
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in init.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "asyncio" in imported, init.diagnostics()
    assert "argparse" not in imported
